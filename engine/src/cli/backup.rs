//! `hookline backup --to FILE`: a consistent copy of the SQLite store, taken
//! while the engine runs.
//!
//! `VACUUM INTO` copies one read snapshot of the database into a new,
//! compacted file. In WAL mode a reader neither blocks the engine's writer
//! nor is blocked by it, so the engine keeps accepting and delivering while
//! the copy is made; the copy holds every transaction committed before it
//! began, and nothing half-written. Copying the database file with `cp`
//! instead could catch it between a commit and a checkpoint and miss the
//! `-wal` file's part. Restoring is putting the copy in place of the store
//! while the engine is stopped (docs/operations.md). Credentials sealed at
//! rest stay sealed in the copy: it opens with the same
//! `HOOKLINE_SECRET_KEY`. A PostgreSQL store is backed up with `pg_dump`.

use anyhow::{Context as _, bail, ensure};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;

use super::args::BackupArgs;
use crate::store::DatabaseUrl;
use crate::store::connection::DbConn;

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let url = args.database.resolve(&args.data_dir);
    let DatabaseUrl::Sqlite(source) = &url else {
        bail!(
            "the store is on PostgreSQL: back it up with pg_dump (see docs/operations.md), not hookline backup"
        );
    };
    ensure!(source.exists(), "no database at {}", source.display());
    ensure!(
        !args.to.exists(),
        "{} exists already: give a new file (a backup never overwrites)",
        args.to.display()
    );
    let target = args
        .to
        .to_str()
        .context("--to: the path must be UTF-8")?
        .to_string();

    let mut conn = url
        .connect()
        .with_context(|| format!("failed to open database {url}"))?;
    let DbConn::Sqlite(c) = &mut conn else {
        unreachable!("a SQLite URL opens a SQLite connection");
    };
    // Wait for a writer's checkpoint rather than fail.
    c.batch_execute("PRAGMA busy_timeout = 10000;")?;
    let started = std::time::Instant::now();
    diesel::sql_query(format!("VACUUM INTO '{}'", target.replace('\'', "''")))
        .execute(c)
        .with_context(|| format!("failed to write the backup to {target}"))?;
    let took = started.elapsed();

    // Check the copy as a restore would open it.
    let copy = DatabaseUrl::Sqlite(args.to.clone());
    let mut copy = copy.connect().context("failed to open the backup")?;
    let DbConn::Sqlite(copy) = &mut copy else {
        unreachable!("a SQLite URL opens a SQLite connection");
    };
    let check: Check = diesel::sql_query("PRAGMA integrity_check").get_result(copy)?;
    ensure!(
        check.integrity_check == "ok",
        "the backup at {target} fails its integrity check: {}",
        check.integrity_check
    );
    let count = |table: &str, copy: &mut diesel::SqliteConnection| -> anyhow::Result<i64> {
        let c: Count =
            diesel::sql_query(format!("SELECT count(*) AS n FROM {table}")).get_result(copy)?;
        Ok(c.n)
    };
    let (events, deliveries) = (count("events", copy)?, count("deliveries", copy)?);
    let bytes = std::fs::metadata(&args.to)?.len();
    println!(
        "backed up {} to {target} in {} ms: {bytes} bytes, {events} events, {deliveries} deliveries, integrity ok",
        source.display(),
        took.as_millis()
    );
    Ok(())
}
