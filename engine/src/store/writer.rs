//! The single writer: one thread owns the write connection and commits every
//! job that is waiting in one transaction (group commit). SQLite allows one
//! writer at a time anyway; doing it in one place avoids lock contention and
//! turns N fsyncs into one. On PostgreSQL each process has its own writer,
//! and the same grouping turns N commits (each a WAL flush) into one.
//!
//! Its queue is bounded. Internal writers (the dispatcher) wait for room;
//! ingest uses [`Writer::try_run`], which refuses at once when the queue is
//! full, so the API answers 503 with `Retry-After` instead of letting
//! requests pile up in memory.
//!
//! When the database goes away (a PostgreSQL server restarting, a network
//! cut), the group in progress fails as a whole and every caller hears
//! [`StoreError::Unavailable`] (503 with `Retry-After` at the API: nothing
//! was stored). The writer then reconnects, at most twice a second, failing
//! the jobs that arrive meanwhile at once, and carries on by itself when the
//! database is back.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use diesel::Connection as _;
use diesel::r2d2::R2D2Connection as _;

use super::connection::DatabaseUrl;
use super::{Conn, StoreError};

/// Why a group did not commit.
enum GroupFailure {
    /// The database refused the commit.
    Failed(String),
    /// The connection was lost or cannot be had.
    Unavailable(String),
}

/// A job runs inside the group transaction (not at all when there is no
/// connection) and returns what to do once the commit is known: `None`
/// committed, `Some(failure)` it did not.
type Job =
    Box<dyn FnOnce(Option<&mut Conn>) -> Box<dyn FnOnce(Option<&GroupFailure>) + Send> + Send>;

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
    pub(super) fn start(conn: Conn, url: DatabaseUrl) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("hookline-writer".into())
            .spawn(move || run(conn, url, rx))
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
        let job: Job = Box::new(move |conn: Option<&mut Conn>| {
            // A nested transaction is a savepoint: this job's failure rolls
            // back only its own work.
            let result = conn.map(|conn| conn.transaction(f));
            Box::new(move |failure: Option<&GroupFailure>| {
                let result = match failure {
                    None => result.unwrap_or_else(|| {
                        Err(StoreError::Unavailable(
                            "the database is unreachable".into(),
                        ))
                    }),
                    Some(GroupFailure::Failed(message)) => {
                        Err(StoreError::Commit(message.to_string()))
                    }
                    Some(GroupFailure::Unavailable(message)) => {
                        Err(StoreError::Unavailable(message.to_string()))
                    }
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

/// The write connection, or the state of getting it back.
struct Link {
    url: DatabaseUrl,
    conn: Option<Conn>,
    last_try: Option<Instant>,
    last_error: String,
}

/// How often a lost connection is tried again (jobs in between fail at once).
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

impl Link {
    /// The connection, reconnecting if it was lost and a try is due.
    fn get(&mut self) -> Result<&mut Conn, String> {
        if self.conn.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= RECONNECT_EVERY) {
            self.last_try = Some(Instant::now());
            match self.url.connect() {
                Ok(conn) => {
                    tracing::info!(database = %self.url, "store writer reconnected");
                    self.conn = Some(conn);
                }
                Err(e) => self.last_error = e.to_string(),
            }
        }
        self.conn.as_mut().ok_or_else(|| {
            format!(
                "the database is unreachable ({}); nothing was stored, try again shortly",
                self.last_error
            )
        })
    }

    /// After a failed group: was it the connection? Then drop it, so the
    /// next group reconnects. (A SQLite file's connection is never lost.)
    fn check(&mut self) -> bool {
        if !matches!(self.conn, Some(Conn::Postgres(_))) {
            return false;
        }
        let alive = self.conn.as_mut().is_some_and(|c| c.ping().is_ok());
        if !alive && self.conn.take().is_some() {
            self.last_try = None;
            tracing::warn!(database = %self.url, "store writer lost its database connection");
        }
        !alive
    }
}

fn run(conn: Conn, url: DatabaseUrl, mut rx: mpsc::Receiver<Message>) {
    let mut link = Link {
        url,
        conn: Some(conn),
        last_try: None,
        last_error: String::new(),
    };
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
            let started = Instant::now();
            let group_size = jobs.len();
            let mut finishers = Vec::with_capacity(jobs.len());
            let failure = match link.get() {
                Err(message) => {
                    // No connection: nothing runs; every caller hears so.
                    for job in jobs {
                        finishers.push(job(None));
                    }
                    Some(GroupFailure::Unavailable(message))
                }
                Ok(conn) => {
                    let outcome = super::connection::immediate_transaction::<
                        _,
                        diesel::result::Error,
                    >(conn, |conn| {
                        for job in jobs {
                            finishers.push(job(Some(&mut *conn)));
                        }
                        Ok(())
                    });
                    match outcome {
                        Ok(()) => None,
                        Err(e) if link.check() => Some(GroupFailure::Unavailable(format!(
                            "the database connection was lost ({e}); nothing was stored, try again shortly"
                        ))),
                        Err(e) => {
                            tracing::error!(error = %e, jobs = finishers.len(), "store group commit failed");
                            Some(GroupFailure::Failed(e.to_string()))
                        }
                    }
                }
            };
            let metrics = crate::metrics::global();
            metrics.store_commit_jobs.observe(group_size as f64);
            if failure.is_none() {
                metrics
                    .store_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else {
                metrics.store_commit_failures.inc();
            }
            for finish in finishers {
                finish(failure.as_ref());
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
