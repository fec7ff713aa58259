//! Recovering an endpoint: requeueing its dead letters in the background.
//!
//! A recovery is an operation row (`store::operations`) that records how far
//! it has got; it requeues failed deliveries in batches, each its own store
//! job, so ingest is never held behind a large recovery, and a restart
//! resumes it from its cursor. Requeued deliveries keep their ids, so
//! receivers see their original `webhook-id`.

use std::sync::Arc;

use serde::Deserialize;

use super::Handoff;
use crate::id::now_ms;
use crate::store::operations::{self, Operation};
use crate::store::{Store, deliveries};

/// Deliveries requeued per store job.
const BATCH: i64 = 500;

/// What a recovery was asked to do (the operation's `params`).
#[derive(Debug, Clone, Deserialize)]
pub struct RecoverParams {
    /// Requeue failed deliveries created at or after this time (ms).
    pub since: i64,
}

/// Runs a recovery operation to its end.
pub async fn run(store: Store, handoff: Arc<Handoff>, op: Operation) {
    let params: RecoverParams = match serde_json::from_str(&op.params) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(operation = %op.id, error = %e, "recovery parameters do not parse");
            return;
        }
    };
    let mut cursor = op.cursor.clone();
    loop {
        let (id, endpoint, since, from) = (
            op.id.clone(),
            op.target.clone(),
            params.since,
            cursor.clone(),
        );
        let step = store
            .write(move |c| {
                let now = now_ms();
                let (n, next) =
                    deliveries::requeue_failed(c, &endpoint, since, from.as_deref(), BATCH, now)?;
                operations::advance(c, &id, n as i32, next.as_deref(), next.is_none(), now)?;
                Ok(next)
            })
            .await;
        match step {
            Ok(next) => {
                handoff.wake.notify_one();
                match next {
                    Some(next) => cursor = Some(next),
                    None => {
                        tracing::info!(operation = %op.id, endpoint = %op.target, "recovery done");
                        return;
                    }
                }
            }
            Err(e) => {
                // Left running: the next start resumes it from its cursor.
                tracing::error!(operation = %op.id, error = %e, "recovery stopped");
                return;
            }
        }
    }
}

/// Resumes the recoveries a previous run left unfinished.
pub async fn resume(store: Store, handoff: Arc<Handoff>) {
    match store.read(operations::running).await {
        Ok(ops) => {
            for op in ops.into_iter().filter(|o| o.kind == "recover") {
                tracing::info!(operation = %op.id, "resuming recovery");
                tokio::spawn(run(store.clone(), handoff.clone(), op));
            }
        }
        Err(e) => tracing::error!(error = %e, "failed to read unfinished recoveries"),
    }
}
