//! Delivery decides *when* and *whether* to send, and records what happened;
//! it never renders payloads (plugins do) and never parses API input.
//!
//! - [`dispatcher`]: claims due deliveries under a lease, runs them with
//!   bounded concurrency, and batches their completions into the store.
//! - [`handoff`]: fresh deliveries from ingest, already leased, without a claim.
//! - [`sender`]: one signed HTTP request and the start of its answer.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`retry_policy`] and [`verdict`]: what a failure means and when to retry.
//! - [`lanes`]: per-endpoint concurrency, rate limits and pauses.
//! - [`net_guard`]: the SSRF guard on every outgoing connection.
//! - [`health`]: the circuit breaker, auto-disable and operational events.
//! - [`recovery`]: requeueing an endpoint's dead letters in the background.
//! - [`retention`]: pruning what is old enough.

pub mod dispatcher;
pub mod handoff;
pub mod health;
pub mod lanes;
pub mod net_guard;
pub mod recovery;
pub mod retention;
pub mod retry_policy;
pub mod sender;
pub mod signing;
pub mod verdict;

pub use dispatcher::{Dispatcher, DispatcherOptions};
pub use handoff::{Handoff, HandoffReceiver};
pub use health::HealthPolicy;
pub use retry_policy::{RetryPolicy, RetrySchedule};
