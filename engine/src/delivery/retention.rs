//! Retention: finished deliveries, their attempts and events nothing refers
//! to any more are pruned after a configurable age, in the background and in
//! small batches (each its own store job), so ingest never waits behind a
//! large delete. Failed deliveries (dead letters) are kept longer than
//! delivered ones: they are what an operator may still want to recover.

use std::time::Duration;

use tokio::sync::watch;

use crate::id::now_ms;
use crate::store::{Store, deliveries, events};

/// How long things are kept.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Delivered and skipped deliveries, and events without deliveries left.
    pub delivered: Duration,
    /// Failed deliveries.
    pub failed: Duration,
    /// How often to look.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            delivered: Duration::from_secs(30 * 24 * 3600),
            failed: Duration::from_secs(90 * 24 * 3600),
            interval: Duration::from_secs(3600),
        }
    }
}

/// Rows deleted per store job.
const BATCH: i64 = 1000;

/// Prunes on every interval until `shutdown`.
pub async fn run(store: Store, retention: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(retention.interval) => {}
        }
        match prune_once(&store, &retention, &shutdown).await {
            Ok((0, 0)) => {}
            Ok((d, e)) => tracing::info!(deliveries = d, events = e, "pruned by retention"),
            Err(e) => tracing::error!(error = %e, "retention pruning failed"),
        }
    }
}

/// One pass: deletes everything past retention, batch by batch. Returns the
/// deliveries and events deleted.
pub async fn prune_once(
    store: &Store,
    retention: &Retention,
    shutdown: &watch::Receiver<bool>,
) -> Result<(usize, usize), crate::store::StoreError> {
    let now = now_ms();
    let delivered_before = now - retention.delivered.as_millis() as i64;
    let failed_before = now - retention.failed.as_millis() as i64;
    let mut total = (0, 0);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let n = store
            .write(move |c| deliveries::prune(c, delivered_before, failed_before, BATCH))
            .await?;
        total.0 += n;
        if n < BATCH as usize {
            break;
        }
        // Let ingest's jobs in between.
        tokio::task::yield_now().await;
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        let n = store
            .write(move |c| events::prune_orphans(c, delivered_before, BATCH))
            .await?;
        total.1 += n;
        if n < BATCH as usize {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}
