//! Which database the store talks to, and the one connection type every
//! query is written against.
//!
//! [`DbConn`] is diesel's `MultiConnection` over SQLite and PostgreSQL: a
//! query written once with diesel's DSL runs on either. Code matches on the
//! variant (through [`per_backend!`]) only where the dialects truly differ:
//! upserts, the claim's locking, transaction modes and start-up pragmas.

use std::fmt;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, R2D2Connection as _};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection as _, ConnectionResult};

/// A connection to either database.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    /// The embedded default: one file, one process.
    Sqlite(SqliteConnection),
    /// A server many engine processes share.
    Postgres(PgConnection),
}

/// Runs the same code on the inner connection of either backend, for the
/// few statements diesel's `MultiConnection` cannot express (upserts,
/// backend-specific SQL). `$c` is bound to `&mut SqliteConnection` in one
/// arm and `&mut PgConnection` in the other.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::connection::DbConn::Sqlite($c) => $body,
            $crate::store::connection::DbConn::Postgres($c) => $body,
        }
    };
}
pub(crate) use per_backend;

/// The two databases the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the store lives: a SQLite file or a PostgreSQL URL.
///
/// Its `Debug` and `Display` hide a password in the URL, so it can be
/// logged.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// Reads `--database-url`: `postgres://…` or `postgresql://…` is a
    /// PostgreSQL server; `sqlite://<path>` or a plain path is a SQLite file.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("--database-url is empty".into());
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            url::Url::parse(text)
                .map_err(|e| format!("--database-url is not a valid PostgreSQL URL: {e}"))?;
            return Ok(DatabaseUrl::Postgres(text.to_string()));
        }
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("--database-url sqlite:// names no file".into());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "--database-url scheme {scheme:?} is not supported: use a file path, sqlite://<path> or postgres://…"
            ));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(text)))
    }

    /// The default: `hookline.db` in the data directory.
    pub fn in_data_dir(data_dir: &Path) -> DatabaseUrl {
        DatabaseUrl::Sqlite(data_dir.join("hookline.db"))
    }

    /// The URL as given, password included (to hand to a child process;
    /// never for logs).
    pub fn expose(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
            DatabaseUrl::Postgres(text) => text.clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }

    /// Opens one connection of the right kind.
    pub fn connect(&self) -> ConnectionResult<DbConn> {
        match self {
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    diesel::ConnectionError::InvalidConnectionUrl(format!(
                        "database path {} is not valid UTF-8",
                        path.display()
                    ))
                })?;
                SqliteConnection::establish(path).map(DbConn::Sqlite)
            }
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(&with_timeouts(url)).map(DbConn::Postgres)
            }
        }
    }
}

/// The URL with the libpq options that keep a lost server from hanging a
/// thread, unless the operator set them: a connection attempt gives up after
/// 5 s (libpq waits forever by default), and an idle connection to a server
/// that vanished is noticed within about 25 s by TCP keep-alives.
pub(crate) fn with_timeouts(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return text.to_string();
    };
    let given: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    let mut pairs = url.query_pairs_mut();
    for (key, value) in [
        ("connect_timeout", "5"),
        ("keepalives_idle", "10"),
        ("keepalives_interval", "5"),
        ("keepalives_count", "3"),
    ] {
        if !given.iter().any(|g| g == key) {
            pairs.append_pair(key, value);
        }
    }
    drop(pairs);
    url.to_string()
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "{}", path.display()),
            DatabaseUrl::Postgres(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => f.write_str("postgres://(unparsable)"),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Runs `f` in a transaction that takes SQLite's write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`, so it never fails upgrading a read lock half-way), or
/// a plain transaction on PostgreSQL. Transactions `f` opens inside are
/// savepoints.
pub fn immediate_transaction<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConn::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <DbConn as TransactionManager<DbConn>>::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            // The error that matters is `f`'s; a failed rollback leaves the
            // connection marked broken, which the caller's next use reports.
            let _ = <DbConn as TransactionManager<DbConn>>::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// What every new pooled connection runs first (SQLite pragmas; nothing
/// for PostgreSQL).
pub type Setup = fn(&mut DbConn) -> diesel::QueryResult<()>;

/// An r2d2 manager that opens connections of the backend the URL names.
/// (diesel's own `ConnectionManager<DbConn>` would try each backend in turn,
/// and SQLite accepts any text as a file name.)
pub struct Manager {
    url: DatabaseUrl,
    setup: Setup,
}

impl Manager {
    pub fn new(url: DatabaseUrl, setup: Setup) -> Manager {
        Manager { url, setup }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        let mut conn = self.url.connect().map_err(r2d2::Error::ConnectionError)?;
        (self.setup)(&mut conn).map_err(r2d2::Error::QueryError)?;
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.is_broken()
    }
}

/// Read connections of a SQLite store: wait for the writer rather than fail,
/// and never write.
pub fn sqlite_reader_setup(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => c.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;"),
        DbConn::Postgres(_) => Ok(()),
    }
}

/// Read connections of a PostgreSQL store: read-only by default, so a bug
/// cannot write outside the writer's group commit.
pub fn postgres_reader_setup(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Postgres(c) => c.batch_execute("SET default_transaction_read_only = on"),
        DbConn::Sqlite(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            DatabaseUrl::parse("data/hookline.db").unwrap(),
            DatabaseUrl::Sqlite("data/hookline.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/hookline.db").unwrap(),
            DatabaseUrl::Sqlite("/var/lib/hookline.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u@127.0.0.1/db")
                .unwrap()
                .backend(),
            Backend::Postgres
        );
        let error = DatabaseUrl::parse("mysql://localhost/db").unwrap_err();
        assert!(error.contains("\"mysql\" is not supported"), "{error}");
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn timeouts_are_added_unless_given() {
        let url = with_timeouts("postgres://u@h/db?connect_timeout=2&sslmode=require");
        assert!(url.contains("connect_timeout=2"), "{url}");
        assert!(!url.contains("connect_timeout=5"), "{url}");
        assert!(url.contains("sslmode=require"), "{url}");
        assert!(url.contains("keepalives_idle=10"), "{url}");
    }

    #[test]
    fn a_password_never_shows() {
        let url = DatabaseUrl::parse("postgres://hook:s3cret@db.example/hookline").unwrap();
        assert!(!format!("{url}").contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(format!("{url}").contains("db.example/hookline"));
    }
}
