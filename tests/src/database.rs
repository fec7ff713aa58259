//! The database the engines of a test binary run on.
//!
//! The end-to-end modules are compiled twice: into `e2e` (every engine on a
//! SQLite file in its data directory) and into `e2e_postgres` (every engine
//! on a PostgreSQL database of its own, on the server that
//! `HOOKLINE_TEST_POSTGRES_URL` names). Each test begins with
//! [`on_backend!`](crate::on_backend), which records its binary's backend
//! and, on PostgreSQL without that variable, says the test is skipped and
//! returns.

use std::path::Path;
use std::sync::OnceLock;

use diesel::{Connection as _, PgConnection, RunQueryDsl as _};

/// The variable naming the PostgreSQL server for the tests: a URL that may
/// create databases, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "HOOKLINE_TEST_POSTGRES_URL";

/// The file in an engine's data directory that names its PostgreSQL
/// database, so a restart with the same directory finds the same data.
const DATABASE_FILE: &str = "test-database-url";

/// Where a test binary's engines keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Records the backend of this test binary; false when the test cannot run
/// on it (PostgreSQL without [`POSTGRES_URL_VAR`]), after saying so.
pub fn use_backend(backend: Backend, test: &str) -> bool {
    let set = *BACKEND.get_or_init(|| backend);
    assert_eq!(set, backend, "one backend per test binary");
    if backend == Backend::Postgres && postgres_admin_url().is_none() {
        // Written to the terminal, not through `eprintln!`: the test harness
        // hides what a passing test prints, and a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test} on PostgreSQL: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
        );
        return false;
    }
    true
}

/// The backend recorded by [`use_backend`] (SQLite when none was).
pub fn backend() -> Backend {
    BACKEND.get().copied().unwrap_or(Backend::Sqlite)
}

fn postgres_admin_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Starts a test on its binary's backend, or returns from it (skipped)
/// when that backend is not available here.
#[macro_export]
macro_rules! on_backend {
    ($backend:expr) => {
        if !$crate::database::use_backend($backend, module_path!()) {
            return;
        }
    };
}

/// The `--database-url` for an engine using `data_dir`: none on SQLite (the
/// engine's default file), a database of the data directory's own on
/// PostgreSQL, created the first time (then `.1` is true).
pub fn database_url_for(data_dir: &Path) -> Option<(String, bool)> {
    if backend() != Backend::Postgres {
        return None;
    }
    let file = data_dir.join(DATABASE_FILE);
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Some((url.trim().to_string(), false));
    }
    let admin = postgres_admin_url().expect("on_backend! checked the URL");
    let (url, _) = create_database(&admin);
    std::fs::write(&file, &url).unwrap();
    Some((url, true))
}

/// Creates a database of this test process's on the server `admin` names
/// (after dropping those of test processes that are gone); its URL and name.
fn create_database(admin: &str) -> (String, String) {
    let name = format!(
        "hookline_test_{}_{}",
        std::process::id(),
        rand::random::<u64>() % 1_000_000_000_000
    );
    let mut conn = PgConnection::establish(admin)
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
    drop_leftovers(&mut conn);
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let mut url = url::Url::parse(admin).expect("a valid PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

/// Makes an engine on `to` use the same PostgreSQL database as the one on
/// `from` (several processes on one database).
pub fn share(from: &Path, to: &Path) {
    assert_eq!(
        backend(),
        Backend::Postgres,
        "only a PostgreSQL database is shared by processes"
    );
    std::fs::copy(from.join(DATABASE_FILE), to.join(DATABASE_FILE))
        .expect("the first engine's database");
}

/// Drops the database an engine used when its data directory goes away.
pub fn drop_database_of(data_dir: &Path) {
    let Ok(url) = std::fs::read_to_string(data_dir.join(DATABASE_FILE)) else {
        return;
    };
    let (Some(admin), Ok(url)) = (postgres_admin_url(), url::Url::parse(url.trim())) else {
        return;
    };
    let name = url.path().trim_start_matches('/').to_string();
    if let Ok(mut conn) = PgConnection::establish(&admin) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn);
    }
}

/// Test databases whose test process is gone (a run that was killed, or an
/// engine whose data directory the test kept): dropped once per process.
fn drop_leftovers(conn: &mut PgConnection) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            datname: String,
        }
        let names: Vec<Name> = diesel::sql_query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'hookline\\_test\\_%'",
        )
        .load(conn)
        .unwrap_or_default();
        for Name { datname } in names {
            let pid = datname
                .split('_')
                .nth(2)
                .and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                        .execute(conn);
            }
        }
    });
}

/// A PostgreSQL database of a test's own on the server of
/// [`POSTGRES_URL_VAR`], dropped with the value; for a test of a SQLite
/// engine that also needs PostgreSQL (moving a store).
pub struct ScratchDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl ScratchDatabase {
    /// A new empty database, or `None` (after saying the test is skipped)
    /// when [`POSTGRES_URL_VAR`] is not set.
    pub fn create(test: &str) -> Option<ScratchDatabase> {
        let Some(admin) = postgres_admin_url() else {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: it needs PostgreSQL; set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run it"
            );
            return None;
        };
        let (url, name) = create_database(&admin);
        Some(ScratchDatabase { url, name, admin })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}
