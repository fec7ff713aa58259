//! The single writer: one thread owns the write connection and commits every
//! job that is waiting in one transaction (group commit). SQLite allows one
//! writer at a time anyway; doing it in one place avoids lock contention and
//! turns N fsyncs into one.
//!
//! Its queue is bounded. Internal writers (the dispatcher) wait for room;
//! ingest uses [`Writer::try_run`], which refuses at once when the queue is
//! full, so the API answers 503 with `Retry-After` instead of letting
//! requests pile up in memory.

use tokio::sync::mpsc;

use diesel::Connection as _;

use super::{Conn, StoreError};

/// A job runs inside the group transaction and returns what to do once the
/// commit is known: `None` committed, `Some(message)` the commit failed.
type Job = Box<dyn FnOnce(&mut Conn) -> Box<dyn FnOnce(Option<&str>) + Send> + Send>;

enum Message {
    Job(Job),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// At most this many jobs share one transaction, so one commit never holds
/// every caller for long.
const MAX_GROUP: usize = 1024;

/// Jobs that may wait for the writer.
const QUEUE: usize = 4096;

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Message>,
}

impl Writer {
    pub(super) fn start(conn: Conn) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("hookline-writer".into())
            .spawn(move || run(conn, rx))
            .expect("failed to start the store writer thread");
        Writer { tx }
    }

    /// Runs `f` in a group transaction, waiting for room in the queue.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    /// Runs `f` in a group transaction, or refuses at once with
    /// [`StoreError::Busy`] when the queue is full.
    pub(super) async fn try_run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    async fn submit<T, F>(&self, f: F, refuse_when_full: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn: &mut Conn| {
            // A nested transaction is a savepoint: this job's failure rolls
            // back only its own work.
            let result = conn.transaction(f);
            Box::new(move |commit_error: Option<&str>| {
                let result = match commit_error {
                    None => result,
                    Some(message) => Err(StoreError::Commit(message.to_string())),
                };
                let _ = tx.send(result);
            })
        });
        let stopped = || StoreError::Unavailable("the store writer has stopped".into());
        if refuse_when_full {
            self.tx.try_send(Message::Job(job)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    StoreError::Busy(format!("{QUEUE} writes are waiting"))
                }
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })?;
        } else {
            self.tx
                .send(Message::Job(job))
                .await
                .map_err(|_| stopped())?;
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    pub(super) async fn close(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(mut conn: Conn, mut rx: mpsc::Receiver<Message>) {
    let mut closing = Vec::new();
    let (mut total_jobs, mut total_groups) = (0u64, 0u64);
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => jobs.push(job),
                Message::Close(done) => closing.push(done),
            }
            if jobs.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            total_jobs += jobs.len() as u64;
            total_groups += 1;
            let mut finishers = Vec::with_capacity(jobs.len());
            let outcome = conn.immediate_transaction::<_, diesel::result::Error, _>(|conn| {
                for job in jobs {
                    finishers.push(job(conn));
                }
                Ok(())
            });
            let error = outcome.err().map(|e| e.to_string());
            if let Some(e) = &error {
                tracing::error!(error = %e, jobs = finishers.len(), "store group commit failed");
            }
            for finish in finishers {
                finish(error.as_deref());
            }
        }
        if !closing.is_empty() {
            break;
        }
    }
    tracing::info!(
        jobs = total_jobs,
        transactions = total_groups,
        per_transaction = format!("{:.1}", total_jobs as f64 / total_groups.max(1) as f64),
        "store writer stopped"
    );
    for done in closing {
        let _ = done.send(());
    }
}
