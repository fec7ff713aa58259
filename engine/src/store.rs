//! Durable state: apps, endpoints, events, deliveries and attempts, in SQLite
//! through diesel. The database is the queue (a transactional outbox).
//!
//! All writes go through one writer thread ([`writer`]) that commits whatever
//! is waiting in one transaction (group commit) and answers each caller after
//! the commit; reads use a small pool of read-only connections. Each entity
//! module holds plain functions over a connection, so callers compose them
//! inside [`Store::write`] or [`Store::read`]. The store knows nothing of HTTP,
//! plugins or delivery policy.

pub mod api_keys;
pub mod apps;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod operations;
pub mod schema;
pub mod sealed;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use sealed::Sealer;

/// The connection type every query is written against.
pub type Conn = SqliteConnection;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row; the API answers 404.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A database error.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    /// The request conflicts with the row's state (409).
    #[error("{0}")]
    Conflict(String),
    /// A stored credential does not open: a key is missing, or the value
    /// was tampered with. Logged in full, a 500 to clients.
    #[error("sealed credential: {0}")]
    Sealed(String),
    /// The writer's queue is full: the engine cannot keep up (503 with
    /// `Retry-After`; nothing was stored).
    #[error("the store is busy: {0}")]
    Busy(String),
    /// The commit of a group failed after this caller's work succeeded.
    #[error("commit failed: {0}")]
    Commit(String),
    /// No connection could be had, or the writer is gone.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> StoreError {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// How durable a commit is (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives a process crash (kill -9), may lose the
    /// last commits on power loss.
    Normal,
}

/// Options for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Commit durability.
    pub durability: Durability,
    /// Read connections in the pool.
    pub readers: u32,
    /// Seals endpoint credentials at rest (plain when it has no key).
    pub sealer: Arc<Sealer>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: writer::Writer,
    readers: Pool<ConnectionManager<Conn>>,
    sealer: Arc<Sealer>,
}

#[derive(Debug)]
struct ReaderSetup;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite file and applies pending migrations.
    pub fn open_sqlite(path: &Path, options: &StoreOptions) -> anyhow::Result<Store> {
        use anyhow::Context as _;
        use diesel::Connection as _;

        let url = path.to_str().context("database path is not valid UTF-8")?;
        let mut conn = Conn::establish(url)
            .with_context(|| format!("failed to open database {}", path.display()))?;
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA temp_store = MEMORY;"
        ))
        .context("failed to configure SQLite")?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("failed to apply migrations: {e}"))?;
        // Before anything is served: every credential in the form the
        // current key (or its absence) writes. One transaction, so a
        // missing key leaves the store exactly as it was. `secure_delete`
        // zeroes the space the old forms occupied.
        conn.batch_execute("PRAGMA secure_delete = ON;")?;
        let resealed = conn
            .immediate_transaction(|c| endpoints::reseal_all(c, &options.sealer))
            .map_err(|e| anyhow::anyhow!("cannot open endpoint credentials: {e}"))?;
        conn.batch_execute("PRAGMA secure_delete = OFF;")?;
        if resealed.sealed_from_plain > 0 {
            // Credentials were in the clear until now: earlier versions of
            // them (changed or deleted rows) may still sit in free pages
            // and in the WAL. Rewrite the file without them, once.
            tracing::info!(
                endpoints = resealed.sealed_from_plain,
                "encryption at rest turned on: compacting the database so no clear-text credential remains in it"
            );
            conn.batch_execute("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .context("failed to compact the database after sealing credentials")?;
        }
        match options.sealer.current_key_id() {
            Some(key) => tracing::info!(
                key,
                endpoints = resealed.endpoints,
                resealed = resealed.rewritten,
                "endpoint credentials are encrypted at rest"
            ),
            None if resealed.rewritten > 0 => tracing::warn!(
                decrypted = resealed.rewritten,
                "no secret key set: endpoint credentials were decrypted and are stored in the clear"
            ),
            None => {}
        }

        let readers = Pool::builder()
            .max_size(options.readers.max(1))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(ReaderSetup))
            .build(ConnectionManager::<Conn>::new(url))
            .context("failed to open read connections")?;
        Ok(Store {
            writer: writer::Writer::start(conn),
            readers,
            sealer: options.sealer.clone(),
        })
    }

    /// What seals and opens endpoint credentials in this store.
    pub fn sealer(&self) -> Arc<Sealer> {
        self.sealer.clone()
    }

    /// Runs `f` in the writer's next group transaction (inside a savepoint of
    /// its own, so its failure does not affect the others) and returns once
    /// that transaction has committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Like [`Store::write`], but refuses at once with [`StoreError::Busy`]
    /// when the writer's queue is full (ingest: answer 503, keep nothing).
    pub async fn try_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.try_run(f).await
    }

    /// Runs `f` on a read connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    /// Waits until every write queued so far has committed and stops the writer.
    pub async fn close(&self) {
        self.writer.close().await;
    }
}
