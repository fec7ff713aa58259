//! Durable state: apps, endpoints, events, deliveries and attempts, in SQLite
//! (embedded, the default) or PostgreSQL (shared by many engine processes)
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
pub mod connection;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod flow;
pub mod notify;
pub mod operations;
pub mod schema;
pub mod sealed;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use diesel::RunQueryDsl as _;
use diesel::connection::SimpleConnection as _;
use diesel::r2d2::Pool;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use connection::{Backend, DatabaseUrl, DbConn};
use sealed::Sealer;

/// The connection type every query is written against.
pub type Conn = DbConn;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The PostgreSQL advisory lock held while migrating and re-sealing, so
/// processes that start together take turns ("hookline" in ASCII).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6c69_6e65;

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
    /// Whether trying the same work again may succeed: the database was
    /// away or busy, or it broke a deadlock or a serialization conflict
    /// between processes by failing this transaction.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Unavailable(_) | StoreError::Busy(_) | StoreError::Commit(_) => true,
            StoreError::Db(Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => {
                true
            }
            StoreError::Db(Error::DatabaseError(_, info)) => {
                let message = info.message();
                message.starts_with("deadlock detected") || message.contains("database is locked")
            }
            _ => false,
        }
    }

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
    /// Commit durability (SQLite; PostgreSQL commits are always durable).
    pub durability: Durability,
    /// Read connections in the pool.
    pub readers: u32,
    /// Seals endpoint credentials at rest (plain when it has no key).
    pub sealer: Arc<Sealer>,
    /// Apply pending migrations when opening; otherwise refuse to open a
    /// store that has some (`hookline migrate` applies them).
    pub migrate: bool,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: writer::Writer,
    readers: Pool<connection::Manager>,
    sealer: Arc<Sealer>,
    url: DatabaseUrl,
    /// Stops the listener for work other processes announce.
    stop_listening: Arc<AtomicBool>,
}

impl Store {
    /// Opens the store the URL names (creating a SQLite file if needed),
    /// applies pending migrations (unless told not to) and re-seals
    /// credentials to the current key.
    pub fn open(url: &DatabaseUrl, options: &StoreOptions) -> anyhow::Result<Store> {
        let mut conn = url
            .connect()
            .with_context(|| format!("failed to open database {url}"))?;
        let setup: connection::Setup = match &mut conn {
            DbConn::Sqlite(c) => {
                let synchronous = match options.durability {
                    Durability::Full => "FULL",
                    Durability::Normal => "NORMAL",
                };
                c.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                     PRAGMA temp_store = MEMORY;"
                ))
                .context("failed to configure SQLite")?;
                connection::sqlite_reader_setup
            }
            DbConn::Postgres(_) => connection::postgres_reader_setup,
        };
        prepare(&mut conn, options)?;

        let readers = Pool::builder()
            .max_size(options.readers.max(1))
            // Short: a read that cannot get a connection answers 503 soon
            // rather than hold the request while the database is away.
            .connection_timeout(Duration::from_secs(3))
            .build(connection::Manager::new(url.clone(), setup))
            .context("failed to open read connections")?;
        Ok(Store {
            url: url.clone(),
            stop_listening: Arc::new(AtomicBool::new(false)),
            writer: writer::Writer::start(conn, url.clone()),
            readers,
            sealer: options.sealer.clone(),
        })
    }

    /// Applies pending migrations and returns their names (`hookline
    /// migrate`). On PostgreSQL, processes doing this at once take turns.
    pub fn migrate(url: &DatabaseUrl) -> anyhow::Result<Vec<String>> {
        let mut conn = url
            .connect()
            .with_context(|| format!("failed to open database {url}"))?;
        with_migration_lock(&mut conn, apply_migrations)
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }

    /// Calls `wake` when another process announces claimable work
    /// ([`notify`]); does nothing on SQLite.
    pub fn listen_for_work(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        notify::listen(&self.url, self.stop_listening.clone(), wake);
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

    /// Runs `f` in a short read-write transaction of its own, beside the
    /// writer's group commit rather than in it: coordination between
    /// processes ([`flow`]) that one delivery waits on, and that must not
    /// wait for a group of ingests. On SQLite (one writer) it is a write.
    pub async fn coordinate<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    {
        if self.backend() == Backend::Sqlite {
            return self.write(f).await;
        }
        self.read(move |conn| {
            connection::immediate_transaction(conn, |conn| {
                // Pooled connections are read-only by default.
                diesel::sql_query("SET TRANSACTION READ WRITE").execute(conn)?;
                f(conn)
            })
        })
        .await
    }

    /// Waits until every write queued so far has committed and stops the writer.
    pub async fn close(&self) {
        self.stop_listening.store(true, Ordering::Relaxed);
        self.writer.close().await;
    }
}

/// Migrations and re-sealing, before anything is served. On PostgreSQL both
/// run under an advisory lock, so processes starting together neither race
/// on the schema nor re-seal the same rows twice.
fn prepare(conn: &mut DbConn, options: &StoreOptions) -> anyhow::Result<()> {
    with_migration_lock(conn, |conn| {
        if options.migrate {
            let applied = apply_migrations(conn)?;
            if !applied.is_empty() {
                tracing::info!(migrations = ?applied, "database migrated");
            }
        } else {
            let pending = pending_migrations(conn)?;
            anyhow::ensure!(
                pending.is_empty(),
                "the database has {} pending migrations ({}): run `hookline migrate`, or start without --no-migrate",
                pending.len(),
                pending.join(", ")
            );
        }
        reseal(conn, &options.sealer)
    })
}

fn migrations_for(conn: &DbConn) -> EmbeddedMigrations {
    match conn {
        DbConn::Sqlite(_) => SQLITE_MIGRATIONS,
        DbConn::Postgres(_) => POSTGRES_MIGRATIONS,
    }
}

fn apply_migrations(conn: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let migrations = migrations_for(conn);
    let applied = conn
        .run_pending_migrations(migrations)
        .map_err(|e| anyhow::anyhow!("failed to apply migrations: {e}"))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}

fn pending_migrations(conn: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let migrations = migrations_for(conn);
    let pending = conn
        .pending_migrations(migrations)
        .map_err(|e| anyhow::anyhow!("failed to read the applied migrations: {e}"))?;
    Ok(pending.iter().map(|m| m.name().to_string()).collect())
}

/// Runs `f` holding the PostgreSQL migration lock (a session-level advisory
/// lock, released even when `f` fails). SQLite needs none: its writer is
/// alone on the file.
fn with_migration_lock<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if !matches!(conn, DbConn::Postgres(_)) {
        return f(conn);
    }
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(conn)
        .context("failed to take the migration lock")?;
    let result = f(conn);
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(conn)
        .context("failed to release the migration lock")?;
    result
}

/// Every credential in the form the current key (or its absence) writes,
/// in one transaction, so a missing key leaves the store exactly as it was.
fn reseal(conn: &mut DbConn, sealer: &Sealer) -> anyhow::Result<()> {
    let resealed = if matches!(conn, DbConn::Sqlite(_)) {
        // `secure_delete` zeroes the space the old forms occupied.
        conn.batch_execute("PRAGMA secure_delete = ON;")?;
        let resealed =
            connection::immediate_transaction(conn, |c| endpoints::reseal_all(c, sealer));
        conn.batch_execute("PRAGMA secure_delete = OFF;")?;
        resealed
    } else {
        use diesel::Connection as _;
        conn.transaction(|c| endpoints::reseal_all(c, sealer))
    }
    .map_err(|e| anyhow::anyhow!("cannot open endpoint credentials: {e}"))?;
    if resealed.sealed_from_plain > 0 {
        // Credentials were in the clear until now: earlier versions of them
        // (changed or deleted rows) may still sit in free pages and in the
        // WAL. Rewrite the file without them, once. (PostgreSQL's VACUUM
        // frees dead tuples but makes no such promise about their bytes;
        // docs/security.md says so.)
        if let DbConn::Sqlite(c) = conn {
            tracing::info!(
                endpoints = resealed.sealed_from_plain,
                "encryption at rest turned on: compacting the database so no clear-text credential remains in it"
            );
            c.batch_execute("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .context("failed to compact the database after sealing credentials")?;
        }
    }
    match sealer.current_key_id() {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The names of a backend's migration directories, sorted.
    fn migration_names(backend: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = migration_names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite,
            migration_names("postgres"),
            "every migration exists for SQLite and PostgreSQL under the same name"
        );
    }
}
