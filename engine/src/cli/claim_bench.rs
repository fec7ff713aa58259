//! `hookline bench-claims`: the claim path alone, with 1…N workers.
//!
//! `hookline bench` measures whole deliveries, whose cost on a small
//! machine is mostly HTTP, plugins and signing. This measures what
//! processes sharing a database contend on: each worker (a thread with its
//! own connection, as a process would have) claims a batch with the
//! engine's own claim (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and records
//! every delivery of it as delivered with the engine's own completion
//! write, until none is left. The same deliveries are made due again for
//! each worker count. It also checks that no delivery was claimed twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::args::BenchClaimsArgs;
use crate::id::{new_id, now_ms};
use crate::store::deliveries::{self, ClaimRequest, Completion, DeliveryStatus, HoldKind};
use crate::store::endpoints::{self, Endpoint};
use crate::store::events::{self, NewEvent};
use crate::store::sealed::Sealer;
use crate::store::{Conn, DatabaseUrl, Store, apps, connection};

pub fn run(args: BenchClaimsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.workers.iter().all(|w| (1..=32).contains(w)),
        "--workers must each be 1 to 32"
    );
    anyhow::ensure!(
        (1..=1000).contains(&args.batch),
        "--batch must be 1 to 1000"
    );
    let url = &args.database_url;
    Store::migrate(url)?;
    let sealer = Sealer::new(None, None)?;
    let mut conn = url
        .connect()
        .with_context(|| format!("connecting to {url}"))?;
    seed(&mut conn, &sealer, &args)?;
    println!(
        "hookline bench-claims: {} deliveries across {} endpoints, batch {}, database {url}",
        args.deliveries, args.endpoints, args.batch
    );
    let mut first = None;
    for &workers in &args.workers {
        make_all_due(&mut conn)?;
        let (secs, claims) = round(url, &sealer, workers, args.batch)?;
        let rate = args.deliveries as f64 / secs;
        let base = *first.get_or_insert(rate);
        println!(
            "  {workers:>2} worker(s): {secs:>6.2} s, {rate:>8.0} deliveries/s claimed and completed \
             ({:.2}× one worker), {claims} claims",
            rate / base
        );
    }
    Ok(())
}

/// An app, its endpoints and `deliveries` pending deliveries spread over them.
fn seed(conn: &mut Conn, sealer: &Sealer, args: &BenchClaimsArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let app = apps::App {
        id: new_id("app"),
        name: "bench-claims".into(),
        created_at: now,
    };
    apps::insert(conn, &app)?;
    for i in 0..args.endpoints {
        let endpoint = Endpoint::new(
            new_id("ep"),
            app.id.clone(),
            format!("http://127.0.0.1:9/{i}"),
            String::new(),
            "webhook".into(),
            "{}".into(),
            serde_json::to_string(&[format!("t{i}")])?,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            now,
        );
        endpoints::insert(conn, sealer, &endpoint)?;
    }
    let per_batch = 500;
    let mut n = 0;
    while n < args.deliveries {
        let batch: Vec<NewEvent> = (n..(n + per_batch).min(args.deliveries))
            .map(|k| NewEvent {
                source: "bench-claims".into(),
                ce_id: format!("c{k}"),
                event_type: format!("t{}", k % args.endpoints),
                subject: None,
                time: "2026-12-02T00:00:00Z".into(),
                data: format!("{{\"n\":{k}}}"),
                extensions: "{}".into(),
            })
            .collect();
        n += batch.len();
        connection::immediate_transaction(conn, |c| {
            events::ingest(c, sealer, &app.id, batch, now, None)
        })?;
    }
    Ok(())
}

/// Every delivery pending, due and unleased again (between rounds).
fn make_all_due(conn: &mut Conn) -> anyhow::Result<()> {
    use diesel::RunQueryDsl as _;
    diesel::sql_query(
        "UPDATE deliveries SET status = 0, attempts = 0, lease_owner = NULL, \
         lease_until = NULL, next_attempt_at = 0, finished_at = NULL",
    )
    .execute(conn)?;
    Ok(())
}

/// Claims and completes everything with `workers` threads; returns the
/// seconds it took and the claims made.
fn round(
    url: &DatabaseUrl,
    sealer: &Sealer,
    workers: usize,
    batch: usize,
) -> anyhow::Result<(f64, usize)> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut conns = (0..workers)
        .map(|_| {
            let mut conn = url.connect()?;
            if let Conn::Sqlite(c) = &mut conn {
                // Workers take turns on SQLite's one write lock.
                use diesel::connection::SimpleConnection as _;
                c.batch_execute("PRAGMA busy_timeout = 10000;")?;
            }
            Ok(conn)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let claims = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(w, conn)| {
                let seen = seen.clone();
                scope.spawn(move || work(conn, sealer, w, batch, &seen))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker panicked"))
            .sum::<anyhow::Result<usize>>()
    })?;
    Ok((started.elapsed().as_secs_f64(), claims))
}

/// One worker: claim, complete, until a claim finds nothing.
fn work(
    conn: &mut Conn,
    sealer: &Sealer,
    worker: usize,
    batch: usize,
    seen: &Mutex<HashSet<String>>,
) -> anyhow::Result<usize> {
    let mut claims = 0;
    loop {
        let now = now_ms();
        let token: Arc<str> = format!("bench-{worker}/{claims}").into();
        let request = ClaimRequest {
            token: token.clone(),
            now,
            lease_until: now + 60_000,
            limit: batch as i64,
            exclude: Vec::new(),
            per_endpoint: batch as i64,
        };
        let claimed =
            connection::immediate_transaction(conn, |c| deliveries::claim(c, sealer, &request))?;
        claims += 1;
        if claimed.is_empty() {
            return Ok(claims);
        }
        {
            let mut seen = seen.lock().unwrap();
            for job in &claimed {
                anyhow::ensure!(seen.insert(job.id.clone()), "{} claimed twice", job.id);
            }
        }
        let done: Vec<Completion> = claimed
            .iter()
            .map(|job| Completion {
                delivery_id: job.id.clone(),
                endpoint_id: job.endpoint.id.clone(),
                token: token.clone(),
                status: DeliveryStatus::Delivered,
                attempts: 1,
                schedule_start: 0,
                next_attempt_at: now,
                last_error: None,
                requests_done: 1,
                hold: HoldKind::None,
                attempt: None,
                signal: deliveries::EndpointSignal::Neutral,
                ordered: false,
            })
            .collect();
        connection::immediate_transaction(conn, |c| deliveries::complete(c, &done, now_ms()))?;
    }
}
