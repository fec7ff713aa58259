//! `hookline copy-store --from <SQLite> --to postgres://…`: moves a store
//! from SQLite to PostgreSQL, when one machine is no longer enough.
//!
//! Everything that makes up the engine's state is copied row for row: apps,
//! endpoints (credentials still sealed: the PostgreSQL engines need the same
//! `HOOKLINE_SECRET_KEY`), events, deliveries with their schedules and
//! attempts, operations and API keys (so the same keys keep working). The
//! source is read in one transaction, a consistent snapshot; the target is
//! written in one transaction, so a failed copy leaves it empty. Leases are
//! dropped: they belonged to processes of the old store, and the new
//! engines claim those deliveries at once. Per-endpoint rate schedules and
//! slots are transient and start afresh. Stop the SQLite engine first:
//! what it accepts after the snapshot would not be in the copy.

use anyhow::{Context as _, bail, ensure};
use diesel::prelude::*;

use super::args::CopyStoreArgs;
use crate::store::connection::DbConn;
use crate::store::schema::{api_keys, apps, attempts, deliveries, endpoints, events, operations};
use crate::store::{DatabaseUrl, Store};

/// Rows read and written per statement (PostgreSQL takes at most 65,535
/// parameters; the widest table has 31 columns).
const CHUNK: i64 = 1000;

/// A whole row of `table`, read from one backend and written to another.
macro_rules! row {
    ($name:ident, $table:ident { $($column:ident : $ty:ty),* $(,)? }) => {
        #[derive(Queryable, Selectable, Insertable)]
        #[diesel(table_name = $table)]
        struct $name {
            $($column: $ty,)*
        }
    };
}

row!(
    AppRow,
    apps {
        id: String,
        name: String,
        created_at: i64
    }
);
row!(EndpointRow, endpoints {
    id: String, app_id: String, url: String, description: String, plugin: String,
    plugin_config: String, filter_types: String, secret: String, enabled: bool,
    disabled_reason: Option<String>, created_at: i64, updated_at: i64, deleted_at: Option<i64>,
    retry_schedule: Option<String>, max_in_flight: Option<i32>, rate_limit: Option<String>,
    ordered: bool, breaker_state: i16, breaker_trips: i32, breaker_opened_at: Option<i64>,
    breaker_retry_at: Option<i64>, consecutive_failures: i32, failing_since: Option<i64>,
    last_success_at: Option<i64>, last_failure_at: Option<i64>, last_error: Option<String>,
    previous_secret: Option<String>, previous_secret_expires_at: Option<i64>,
    filter: Option<String>, handshake_at: Option<i64>, handshake_rate: Option<i32>,
});
row!(EventRow, events {
    id: String, app_id: String, source: String, ce_id: String, event_type: String,
    subject: Option<String>, time: String, data: String, extensions: String, received_at: i64,
});
row!(DeliveryRow, deliveries {
    id: String, app_id: String, event_id: String, endpoint_id: String, event_type: String,
    status: i16, attempts: i32, next_attempt_at: i64, lease_owner: Option<String>,
    lease_until: Option<i64>, last_error: Option<String>, created_at: i64, updated_at: i64,
    finished_at: Option<i64>, hold_kind: i16, schedule_start: i32, requests_done: i32, ordered: bool,
});
row!(AttemptRow, attempts {
    id: String, delivery_id: String, attempt: i32, started_at: i64, duration_ms: i64,
    outcome: i16, status_code: Option<i32>, response_excerpt: Option<String>,
    error: Option<String>, plugin_name: String, plugin_version: String, plugin_hash: String,
});
row!(OperationRow, operations {
    id: String, app_id: String, kind: String, target: String, params: String, state: String,
    total: i32, done: i32, cursor: Option<String>, error: Option<String>, created_at: i64,
    updated_at: i64, finished_at: Option<i64>,
});
row!(KeyRow, api_keys {
    id: String, name: String, app_id: Option<String>, hash: String, created_at: i64,
    last_used_at: Option<i64>, revoked_at: Option<i64>,
});

/// Copies `$table` in primary-key order, `CHUNK` rows at a time, passing
/// each row through `$fix`; the number of rows.
macro_rules! copy_table {
    ($from:expr, $to:expr, $table:ident, $row:ident, $fix:expr) => {{
        let mut copied = 0usize;
        let mut after: Option<String> = None;
        loop {
            let mut query = $table::table
                .select($row::as_select())
                .order($table::id)
                .limit(CHUNK)
                .into_boxed();
            if let Some(last) = &after {
                query = query.filter($table::id.gt(last.clone()));
            }
            let mut rows: Vec<$row> = query
                .load($from)
                .with_context(|| format!("reading {}", stringify!($table)))?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id.clone());
            let n = rows.len();
            rows.iter_mut().for_each($fix);
            diesel::insert_into($table::table)
                .values(&rows)
                .execute($to)
                .with_context(|| format!("writing {}", stringify!($table)))?;
            copied += n;
        }
        copied
    }};
}

pub fn run(args: CopyStoreArgs) -> anyhow::Result<()> {
    let DatabaseUrl::Sqlite(path) = &args.from else {
        bail!("--from must be the SQLite store to move (a file path or sqlite://…)");
    };
    ensure!(path.exists(), "--from: no database at {}", path.display());
    ensure!(
        matches!(args.to, DatabaseUrl::Postgres(_)),
        "--to must be a PostgreSQL database (postgres://…)"
    );
    // Both stores at the current schema (the target is created if empty).
    Store::migrate(&args.from).context("--from: applying migrations")?;
    Store::migrate(&args.to).context("--to: applying migrations")?;

    let mut source = args.from.connect().context("--from: cannot open")?;
    let mut target = args.to.connect().context("--to: cannot connect")?;
    let (DbConn::Sqlite(source), DbConn::Postgres(target)) = (&mut source, &mut target) else {
        unreachable!("the URLs were checked");
    };
    let present: i64 = apps::table.count().get_result(target)?;
    ensure!(
        present == 0,
        "--to already holds {present} apps: copy into an empty database (a new one, after `hookline migrate`), never over a store in use"
    );

    let started = std::time::Instant::now();
    let counts = source.transaction::<_, anyhow::Error, _>(|source| {
        target.transaction::<_, anyhow::Error, _>(|target| {
            Ok([
                ("apps", copy_table!(source, target, apps, AppRow, |_| ())),
                (
                    "endpoints",
                    copy_table!(source, target, endpoints, EndpointRow, |_| ()),
                ),
                (
                    "events",
                    copy_table!(source, target, events, EventRow, |_| ()),
                ),
                (
                    "deliveries",
                    copy_table!(
                        source,
                        target,
                        deliveries,
                        DeliveryRow,
                        |d: &mut DeliveryRow| {
                            d.lease_owner = None;
                            d.lease_until = None;
                        }
                    ),
                ),
                (
                    "attempts",
                    copy_table!(source, target, attempts, AttemptRow, |_| ()),
                ),
                (
                    "operations",
                    copy_table!(source, target, operations, OperationRow, |_| ()),
                ),
                (
                    "api_keys",
                    copy_table!(source, target, api_keys, KeyRow, |_| ()),
                ),
            ])
        })
    })?;
    let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "copied {} to {} in {} ms: {}",
        path.display(),
        args.to,
        started.elapsed().as_millis(),
        summary.join(", ")
    );
    Ok(())
}
