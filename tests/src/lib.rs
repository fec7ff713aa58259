//! # End-to-end test harness for Hookline
//!
//! - [`Engine`]: the real `hookline` binary on a temporary SQLite file (or
//!   a PostgreSQL database of its own, see [`database`]) and a free port; it waits for the `hookline listening on …` line instead of
//!   sleeping, and stops the process (SIGTERM) when dropped.
//! - [`Receiver`]: a real HTTP receiver on 127.0.0.1 that records every
//!   request and answers from a script.
//! - [`verify_signature`]: Standard Webhooks verification written from the
//!   specification, independent of the engine's signer.
//! - [`eventually`]: waits for a condition observable through the API, with a
//!   timeout.
//! - [`guests`]: purpose-built plugin components (one that loops, one that
//!   hogs memory, one of another world …), built from source by `build.rs`.

pub mod database;
mod engine;
mod faults;
mod receiver;
mod signature;
mod tcp_proxy;

/// Paths of the test guests built from `tests/guests/` (`MISCHIEF`, `SWAP_V1`, …).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

pub use database::Backend;
pub use engine::{Engine, EngineOptions, client, hookline_bin};
pub use faults::{Fault, FaultReceiver};
pub use receiver::{Received, Receiver};
pub use signature::verify_signature;
pub use tcp_proxy::TcpProxy;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}
