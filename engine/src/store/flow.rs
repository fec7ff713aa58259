//! Flow control shared by every process on one database: an endpoint's rate
//! limit and its explicit `max_in_flight` hold for the cluster, not per
//! process.
//!
//! Each process still paces its own lanes (`delivery::lanes`); on
//! PostgreSQL a delivery about to be sent also asks the database:
//!
//! - **Rate:** [`reserve_rate`] books the request a place in the endpoint's
//!   virtual schedule (GCRA: one timestamp per endpoint, advanced by one
//!   interval per request, with the burst as the allowed advance). One
//!   upsert per request, only for endpoints with a rate limit, which are
//!   slow by nature (chat platforms: a few requests a second).
//! - **Concurrency:** [`take_slot`] adds a row for the delivery if fewer than
//!   `max_in_flight` live rows exist for the endpoint; takers of one
//!   endpoint take turns under a transaction-scoped advisory lock. Rows
//!   carry the delivery's lease, so a killed process's slots free
//!   themselves; [`free_slot`] frees one when its send is over.
//!
//! One SQLite process has all the state in memory already, so these are
//! only called on PostgreSQL (they work on both).

use diesel::RunQueryDsl as _;
use diesel::sql_types::{BigInt, Text};

use crate::store::{Conn, StoreError};

/// What the rate schedule says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Booked: send after waiting this many microseconds (0: at once).
    Wait(i64),
    /// Not booked (the wait would be longer than allowed): ask again at
    /// this time (µs since the epoch).
    Later(i64),
}

#[derive(diesel::QueryableByName)]
struct NextAt {
    #[diesel(sql_type = BigInt)]
    next_at: i64,
}

/// Books one request to `endpoint_id` at a rate of one per `interval_us`
/// with bursts of `burst`, if it can go within `max_wait_us`.
pub fn reserve_rate(
    conn: &mut Conn,
    endpoint_id: &str,
    interval_us: i64,
    burst: u32,
    max_wait_us: i64,
    now_us: i64,
) -> Result<Reservation, StoreError> {
    let interval_us = interval_us.max(1);
    // How far the schedule may run ahead of now for a request to be booked.
    let slack = i64::from(burst.max(1) - 1) * interval_us;
    let postgres = matches!(conn, Conn::Postgres(_));
    let (greatest, p) = if postgres {
        ("GREATEST", ["$1", "$2", "$3", "$4"])
    } else {
        ("max", ["?1", "?2", "?3", "?4"])
    };
    let [id, now, step, allowed] = p;
    let sql = format!(
        "INSERT INTO endpoint_rates (endpoint_id, next_at) VALUES ({id}, {now} + {step}) \
         ON CONFLICT (endpoint_id) DO UPDATE \
         SET next_at = {greatest}(endpoint_rates.next_at, {now}) + {step} \
         WHERE {greatest}(endpoint_rates.next_at, {now}) - {now} <= {allowed} \
         RETURNING next_at"
    );
    let booked = diesel::sql_query(sql)
        .bind::<Text, _>(endpoint_id)
        .bind::<BigInt, _>(now_us)
        .bind::<BigInt, _>(interval_us)
        .bind::<BigInt, _>(slack + max_wait_us)
        .get_results::<NextAt>(conn)?;
    if let Some(row) = booked.first() {
        // This request's place is `next_at - interval`; the burst lets it go
        // `slack` before that.
        return Ok(Reservation::Wait(
            (row.next_at - interval_us - slack - now_us).max(0),
        ));
    }
    let sql = format!(
        "SELECT next_at FROM endpoint_rates WHERE endpoint_id = {}",
        p[0]
    );
    let current = diesel::sql_query(sql)
        .bind::<Text, _>(endpoint_id)
        .get_result::<NextAt>(conn)?;
    Ok(Reservation::Later((current.next_at - slack).max(now_us)))
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Takes one of `endpoint_id`'s `max` slots for `delivery_id` until
/// `lease_until` (ms); false when all are taken. Run it in a transaction:
/// on PostgreSQL the advisory lock it takes lasts until the commit.
pub fn take_slot(
    conn: &mut Conn,
    endpoint_id: &str,
    delivery_id: &str,
    max: i64,
    lease_until: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let postgres = matches!(conn, Conn::Postgres(_));
    let p = |n: usize| {
        if postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    };
    if postgres {
        // Takers of one endpoint take turns; other endpoints are not held up.
        // The first key keeps these apart from the engine's other locks.
        diesel::sql_query("SELECT pg_advisory_xact_lock(1752460652, hashtext($1))")
            .bind::<Text, _>(endpoint_id)
            .execute(conn)?;
    }
    diesel::sql_query(format!(
        "DELETE FROM endpoint_slots WHERE endpoint_id = {} AND lease_until <= {}",
        p(1),
        p(2)
    ))
    .bind::<Text, _>(endpoint_id)
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    let taken = diesel::sql_query(format!(
        "SELECT CAST(count(*) AS BIGINT) AS n FROM endpoint_slots \
         WHERE endpoint_id = {} AND delivery_id <> {}",
        p(1),
        p(2)
    ))
    .bind::<Text, _>(endpoint_id)
    .bind::<Text, _>(delivery_id)
    .get_result::<Count>(conn)?
    .n;
    if taken >= max {
        return Ok(false);
    }
    diesel::sql_query(format!(
        "INSERT INTO endpoint_slots (endpoint_id, delivery_id, lease_until) VALUES ({}, {}, {}) \
         ON CONFLICT (endpoint_id, delivery_id) DO UPDATE SET lease_until = {}",
        p(1),
        p(2),
        p(3),
        p(3)
    ))
    .bind::<Text, _>(endpoint_id)
    .bind::<Text, _>(delivery_id)
    .bind::<BigInt, _>(lease_until)
    .execute(conn)?;
    Ok(true)
}

/// Frees the slot `delivery_id` holds, if any.
pub fn free_slot(conn: &mut Conn, endpoint_id: &str, delivery_id: &str) -> Result<(), StoreError> {
    let sql = match conn {
        Conn::Postgres(_) => {
            "DELETE FROM endpoint_slots WHERE endpoint_id = $1 AND delivery_id = $2"
        }
        Conn::Sqlite(_) => "DELETE FROM endpoint_slots WHERE endpoint_id = ?1 AND delivery_id = ?2",
    };
    diesel::sql_query(sql)
        .bind::<Text, _>(endpoint_id)
        .bind::<Text, _>(delivery_id)
        .execute(conn)?;
    Ok(())
}
