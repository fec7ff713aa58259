//! Deliveries (one event to one endpoint) and their attempts. This module is
//! the queue: claiming due deliveries under a lease, and completing them.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;

use super::connection::per_backend;
use super::endpoints::{self, Endpoint};
use super::events::{self, Event};
use super::notify;
use super::schema::{attempts, deliveries};
use super::sealed::Sealer;
use super::{Conn, StoreError};

/// Where a delivery stands. Stored as SMALLINT; the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending = 0,
    /// The endpoint accepted it.
    Delivered = 1,
    /// Gave up: a permanent failure or out of attempts.
    Failed = 2,
    /// The plugin produced no request for this event.
    Skipped = 3,
    /// Waiting for something outside its schedule (see [`HoldKind`]): not
    /// claimed, no attempts used, resumed when that changes.
    Held = 4,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        Self::Pending,
        Self::Delivered,
        Self::Failed,
        Self::Skipped,
        Self::Held,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Held => "held",
        }
    }

    pub fn from_i16(v: i16) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| *s as i16 == v)
    }

    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a held delivery waits for. Stored as SMALLINT in `hold_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum HoldKind {
    None = 0,
    /// Its endpoint is disabled; enabling it resumes the delivery.
    Endpoint = 1,
    /// Its plugin is missing or quarantined; loading a version resumes it.
    Plugin = 2,
}

impl HoldKind {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Endpoint => Some("endpoint"),
            Self::Plugin => Some("plugin"),
        }
    }

    pub fn from_i16(v: i16) -> HoldKind {
        match v {
            1 => Self::Endpoint,
            2 => Self::Plugin,
            _ => Self::None,
        }
    }
}

/// How one attempt ended. Stored as SMALLINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum AttemptOutcome {
    Success = 0,
    /// Failed; the delivery will be retried.
    Retry = 1,
    /// Failed for good.
    Failed = 2,
    /// The plugin produced nothing to send.
    Skipped = 3,
    /// The endpoint asked to be disabled (410); the delivery is held.
    Held = 4,
}

impl AttemptOutcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Held => "held",
        }
    }

    pub fn from_i16(v: i16) -> Option<AttemptOutcome> {
        [
            Self::Success,
            Self::Retry,
            Self::Failed,
            Self::Skipped,
            Self::Held,
        ]
        .into_iter()
        .find(|s| *s as i16 == v)
    }
}

/// A delivery row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct Delivery {
    pub id: String,
    pub app_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub status: i16,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub hold_kind: i16,
    pub schedule_start: i32,
    pub requests_done: i32,
    pub ordered: bool,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = deliveries)]
pub struct NewDelivery {
    pub id: String,
    pub app_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub status: i16,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub ordered: bool,
}

/// An attempt row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = attempts)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub attempt: i32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: i16,
    pub status_code: Option<i32>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub plugin_name: String,
    pub plugin_version: String,
    pub plugin_hash: String,
}

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    /// The claim this delivery was leased under: only this claim may
    /// complete it (a lease that ran out and was claimed again has a new one).
    pub token: Arc<str>,
    /// When the lease runs out: past it, the delivery may be someone else's.
    pub lease_until: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The attempt count at which the current retry schedule began.
    pub schedule_start: i32,
    /// Requests of this delivery already accepted by the endpoint.
    pub requests_done: i32,
    /// It goes as its endpoint's breaker probe: a failure does not count
    /// against its own schedule (the endpoint is down, not the delivery).
    pub probe: bool,
    pub event: Arc<Event>,
    pub endpoint: Arc<Endpoint>,
}

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub token: Arc<str>,
    pub now: i64,
    pub lease_until: i64,
    pub limit: i64,
    /// Endpoints not to claim for (their lanes in this process are full).
    pub exclude: Vec<String>,
    /// At most this many for any one endpoint (what its lane can hold).
    pub per_endpoint: i64,
}

/// The columns a claim returns.
#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    endpoint_id: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    schedule_start: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    requests_done: i32,
}

const CLAIM_RETURNING: &str =
    "RETURNING id, event_id, endpoint_id, attempts, schedule_start, requests_done";

/// Leases up to `limit` due deliveries under the claim's token, and loads
/// their events and endpoints (two queries for the whole batch).
///
/// Ordered deliveries are claimed only at the head of their endpoint's lane:
/// the oldest delivery of the endpoint that is still pending or held, and
/// only when it is due and not leased. Everything else is claimed by due
/// time, skipping the excluded endpoints.
pub fn claim(
    conn: &mut Conn,
    sealer: &Sealer,
    req: &ClaimRequest,
) -> Result<Vec<Claimed>, StoreError> {
    use diesel::sql_types::{BigInt, Text};

    // Raw SQL: diesel's DSL cannot update through a limited subselect.
    // Constants are written inline so SQLite can use the partial indexes.
    let postgres = matches!(conn, Conn::Postgres(_));
    let mut rows: Vec<ClaimRow> =
        diesel::sql_query(placeholders(postgres, &claim_ordered_sql(postgres)))
            .bind::<Text, _>(&*req.token)
            .bind::<BigInt, _>(req.lease_until)
            .bind::<BigInt, _>(req.now)
            .bind::<BigInt, _>(req.now)
            .bind::<BigInt, _>(req.limit)
            .load(conn)?;

    let room = req.limit - rows.len() as i64;
    if room > 0 {
        let exclude = &req.exclude[..req.exclude.len().min(500)];
        let mut query = diesel::sql_query(placeholders(
            postgres,
            &claim_due_sql(postgres, exclude.len()),
        ))
        .into_boxed()
        .bind::<Text, _>(req.token.to_string())
        .bind::<BigInt, _>(req.lease_until)
        .bind::<BigInt, _>(req.now)
        .bind::<BigInt, _>(req.now);
        for id in exclude {
            query = query.bind::<Text, _>(id.clone());
        }
        // The window of due rows the claim looks through. On PostgreSQL it
        // is locked (see `claim_due_sql`), so it is kept small: each row of
        // it costs a lock, and processes claiming at once take consecutive
        // windows instead of fighting over one.
        let window = if postgres {
            room.saturating_mul(4).max(32)
        } else {
            room.saturating_mul(8).max(1024)
        };
        rows.extend(
            query
                .bind::<BigInt, _>(window)
                .bind::<BigInt, _>(req.per_endpoint.max(1))
                .bind::<BigInt, _>(room)
                .load::<ClaimRow>(conn)?,
        );
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    load_claimed(conn, sealer, rows, &req.token, req.lease_until)
}

/// The claim of ordered lanes: only the head of each (the oldest delivery of
/// the endpoint still pending or held), when it is due and not leased.
///
/// On PostgreSQL the chosen rows are locked `FOR UPDATE SKIP LOCKED`:
/// processes claiming at once each take different rows, and a row another
/// process leased meanwhile is re-checked under its lock (and dropped, its
/// lease being current). A head locked by another claim is skipped, and the
/// delivery behind it is not claimed either: it is not the head.
fn claim_ordered_sql(postgres: bool) -> String {
    let (ordered, lock) = if postgres {
        ("d.ordered", " FOR UPDATE SKIP LOCKED")
    } else {
        ("d.ordered = 1", "")
    };
    let p_ordered = ordered.replace("d.", "p.");
    format!(
        "UPDATE deliveries SET lease_owner = ?, lease_until = ? \
         WHERE id IN (SELECT d.id FROM deliveries d \
                      WHERE {ordered} AND d.status = 0 AND d.next_attempt_at <= ? \
                        AND (d.lease_until IS NULL OR d.lease_until < ?) \
                        AND NOT EXISTS (SELECT 1 FROM deliveries p \
                                        WHERE {p_ordered} AND p.endpoint_id = d.endpoint_id \
                                          AND p.status IN (0, 4) AND p.id < d.id) \
                      ORDER BY d.next_attempt_at LIMIT ?{lock}) \
         {CLAIM_RETURNING}"
    )
}

/// The claim of everything else: due deliveries in due order, at most
/// `per_endpoint` of any one endpoint (so one endpoint's backlog cannot fill
/// the claim only to be sent back by its lane), looking at a bounded window
/// of the queue, skipping `excluded` endpoints.
///
/// On PostgreSQL the window itself is locked `FOR UPDATE SKIP LOCKED` before
/// the per-endpoint cut is made over it (a window function cannot sit beside
/// `FOR UPDATE`, so the lock is in the innermost query). Processes claiming
/// at once therefore look at different windows: none waits for another, none
/// leases a row another holds, and none comes back empty because all of
/// them chose the same candidates (which, with the lock taken only on the
/// chosen rows, sent all but one process to sleep until its next poll). A
/// row another process leased a moment ago fails the lease condition when
/// re-checked under the lock. The rows of the window not taken are unlocked
/// when the claim's transaction commits.
fn claim_due_sql(postgres: bool, excluded: usize) -> String {
    let not_in = if excluded == 0 {
        String::new()
    } else {
        format!(
            "AND endpoint_id NOT IN ({}) ",
            vec!["?"; excluded].join(", ")
        )
    };
    let (ordered, lock) = if postgres {
        ("NOT ordered", " FOR UPDATE SKIP LOCKED")
    } else {
        ("ordered = 0", "")
    };
    format!(
        "UPDATE deliveries SET lease_owner = ?, lease_until = ? \
         WHERE id IN (SELECT id FROM \
                        (SELECT id, next_attempt_at, ROW_NUMBER() OVER \
                           (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS nth \
                         FROM (SELECT id, endpoint_id, next_attempt_at FROM deliveries \
                               WHERE status = 0 AND next_attempt_at <= ? \
                                 AND (lease_until IS NULL OR lease_until < ?) \
                                 AND {ordered} {not_in}\
                               ORDER BY next_attempt_at LIMIT ?{lock}) window_rows) numbered \
                      WHERE nth <= ? ORDER BY next_attempt_at LIMIT ?) \
         {CLAIM_RETURNING}"
    )
}

/// Raw SQL is written with `?` placeholders (SQLite's); PostgreSQL numbers
/// them `$1, $2, …`.
fn placeholders(postgres: bool, sql: &str) -> String {
    if !postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Loads the events and endpoints of claimed rows.
fn load_claimed(
    conn: &mut Conn,
    sealer: &Sealer,
    rows: Vec<ClaimRow>,
    token: &Arc<str>,
    lease_until: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let mut event_ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut endpoint_ids: Vec<&str> = rows.iter().map(|r| r.endpoint_id.as_str()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let events: HashMap<String, Arc<Event>> = events::by_ids(conn, &event_ids)?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    let endpoints: HashMap<String, Arc<Endpoint>> = endpoints::by_ids(conn, sealer, &endpoint_ids)?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();

    let mut claimed = Vec::with_capacity(rows.len());
    for r in rows {
        // Foreign keys guarantee both exist.
        let (Some(event), Some(endpoint)) =
            (events.get(&r.event_id), endpoints.get(&r.endpoint_id))
        else {
            tracing::error!(delivery = %r.id, "claimed delivery without its event or endpoint");
            continue;
        };
        claimed.push(Claimed {
            id: r.id,
            token: token.clone(),
            lease_until,
            attempts: r.attempts,
            schedule_start: r.schedule_start,
            requests_done: r.requests_done,
            probe: false,
            event: event.clone(),
            endpoint: endpoint.clone(),
        });
    }
    Ok(claimed)
}

/// Gives claimed deliveries back without an attempt, due again at the given
/// times (a breaker that is open, a lane that is full). Only the claim that
/// holds them can give them back.
pub fn give_back(conn: &mut Conn, token: &str, due: &[(&str, i64)]) -> Result<(), StoreError> {
    use deliveries::dsl as d;
    for (id, at) in due {
        diesel::update(
            d::deliveries
                .filter(d::id.eq(*id))
                .filter(d::lease_owner.eq(token)),
        )
        .set((
            d::next_attempt_at.eq(*at),
            d::lease_owner.eq(None::<String>),
            d::lease_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    }
    Ok(())
}

/// Holds one claimed delivery (see [`HoldKind`]); no attempt is used.
pub fn hold(
    conn: &mut Conn,
    token: &str,
    id: &str,
    kind: HoldKind,
    why: &str,
    now: i64,
) -> Result<(), StoreError> {
    use deliveries::dsl as d;
    diesel::update(
        d::deliveries
            .filter(d::id.eq(id))
            .filter(d::lease_owner.eq(token)),
    )
    .set((
        d::status.eq(DeliveryStatus::Held as i16),
        d::hold_kind.eq(kind as i16),
        d::last_error.eq(why),
        d::lease_owner.eq(None::<String>),
        d::lease_until.eq(None::<i64>),
        d::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(())
}

/// Holds every pending delivery of a disabled endpoint that is not in
/// flight (those are held when they come back, see the dispatcher).
pub fn hold_for_endpoint(
    conn: &mut Conn,
    endpoint_id: &str,
    why: &str,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    Ok(diesel::update(
        d::deliveries
            .filter(d::endpoint_id.eq(endpoint_id))
            .filter(d::status.eq(DeliveryStatus::Pending as i16))
            .filter(d::lease_owner.is_null()),
    )
    .set((
        d::status.eq(DeliveryStatus::Held as i16),
        d::hold_kind.eq(HoldKind::Endpoint as i16),
        d::last_error.eq(why),
    ))
    .execute(conn)?)
}

/// Resumes the held deliveries of `endpoint_ids` that wait for `kind`: due now.
pub fn resume_held(
    conn: &mut Conn,
    endpoint_ids: &[String],
    kind: HoldKind,
    now: i64,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    let mut n = 0;
    for id in endpoint_ids {
        n += diesel::update(
            d::deliveries
                .filter(d::endpoint_id.eq(id))
                .filter(d::status.eq(DeliveryStatus::Held as i16))
                .filter(d::hold_kind.eq(kind as i16)),
        )
        .set((
            d::status.eq(DeliveryStatus::Pending as i16),
            d::hold_kind.eq(HoldKind::None as i16),
            d::next_attempt_at.eq(now),
            d::updated_at.eq(now),
        ))
        .execute(conn)?;
    }
    if n > 0 {
        notify::announce_work(conn)?;
    }
    Ok(n)
}

/// The (app, plugin) pairs that have deliveries held for their plugin.
pub fn plugin_holds(conn: &mut Conn) -> Result<Vec<(String, String)>, StoreError> {
    use super::schema::endpoints as e;
    use deliveries::dsl as d;
    Ok(d::deliveries
        .inner_join(e::table)
        .filter(d::status.eq(DeliveryStatus::Held as i16))
        .filter(d::hold_kind.eq(HoldKind::Plugin as i16))
        .select((d::app_id, e::plugin))
        .distinct()
        .load(conn)?)
}

/// Makes the pending deliveries of an endpoint that wait for a due time later
/// than `now` due now (the endpoint came back: everything it missed goes).
pub fn due_now_for_endpoint(
    conn: &mut Conn,
    endpoint_id: &str,
    now: i64,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    Ok(diesel::update(
        d::deliveries
            .filter(d::endpoint_id.eq(endpoint_id))
            .filter(d::status.eq(DeliveryStatus::Pending as i16))
            .filter(d::next_attempt_at.gt(now))
            .filter(d::lease_owner.is_null()),
    )
    .set(d::next_attempt_at.eq(now))
    .execute(conn)?)
}

/// Postpones the pending deliveries of an endpoint to `until` (its breaker
/// opened: nothing goes before the probe).
pub fn postpone_for_endpoint(
    conn: &mut Conn,
    endpoint_id: &str,
    until: i64,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    Ok(diesel::update(
        d::deliveries
            .filter(d::endpoint_id.eq(endpoint_id))
            .filter(d::status.eq(DeliveryStatus::Pending as i16))
            .filter(d::next_attempt_at.lt(until))
            .filter(d::lease_owner.is_null()),
    )
    .set(d::next_attempt_at.eq(until))
    .execute(conn)?)
}

/// Marks the ordering of an endpoint's unfinished deliveries.
pub fn set_ordered(conn: &mut Conn, endpoint_id: &str, ordered: bool) -> Result<(), StoreError> {
    use deliveries::dsl as d;
    diesel::update(
        d::deliveries.filter(d::endpoint_id.eq(endpoint_id)).filter(
            d::status.eq_any([DeliveryStatus::Pending as i16, DeliveryStatus::Held as i16]),
        ),
    )
    .set(d::ordered.eq(ordered))
    .execute(conn)?;
    Ok(())
}

/// Fails the unfinished deliveries of a deleted endpoint, keeping them as
/// dead letters with the reason.
pub fn fail_for_deleted_endpoint(
    conn: &mut Conn,
    endpoint_id: &str,
    now: i64,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    Ok(diesel::update(
        d::deliveries
            .filter(d::endpoint_id.eq(endpoint_id))
            .filter(d::status.eq_any([DeliveryStatus::Pending as i16, DeliveryStatus::Held as i16]))
            .filter(d::lease_owner.is_null()),
    )
    .set((
        d::status.eq(DeliveryStatus::Failed as i16),
        d::hold_kind.eq(HoldKind::None as i16),
        d::last_error.eq("endpoint deleted"),
        d::updated_at.eq(now),
        d::finished_at.eq(Some(now)),
    ))
    .execute(conn)?)
}

/// The earliest time a pending delivery falls due, if any.
pub fn next_due(conn: &mut Conn) -> Result<Option<i64>, StoreError> {
    use deliveries::dsl as d;
    Ok(d::deliveries
        .filter(d::status.eq(DeliveryStatus::Pending as i16))
        .select(diesel::dsl::min(d::next_attempt_at))
        .first(conn)?)
}

/// What an attempt says about the endpoint's health (see `delivery::health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSignal {
    /// Nothing about the endpoint: no attempt, a plugin error, a 429.
    Neutral,
    /// It accepted a request.
    Success,
    /// It failed to (an answer that is retried, or none).
    Failure,
    /// It asked to be disabled (410, or a plugin's verdict), with the reason.
    Disable(String),
}

/// The result of working on one claimed delivery.
#[derive(Debug, Clone)]
pub struct Completion {
    pub delivery_id: String,
    pub endpoint_id: String,
    /// The claim it was worked on under; only that claim's outcome applies.
    pub token: Arc<str>,
    pub status: DeliveryStatus,
    /// Attempts made, including this one.
    pub attempts: i32,
    /// The attempt count at which the current schedule began.
    pub schedule_start: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub requests_done: i32,
    /// Set with `DeliveryStatus::Held`.
    pub hold: HoldKind,
    pub attempt: Option<Attempt>,
    pub signal: EndpointSignal,
    /// The endpoint delivers in order: its next delivery may be claimable now.
    pub ordered: bool,
}

/// Records completions. A delivery whose claim is no longer current (its
/// lease ran out and it was claimed again) keeps the new claim's state; its
/// attempt is still logged. Returns how many were applied.
pub fn complete(conn: &mut Conn, done: &[Completion], now: i64) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    let mut applied = 0;
    for c in done {
        let finished = matches!(
            c.status,
            DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Skipped
        )
        .then_some(now);
        let n = diesel::update(
            d::deliveries
                .filter(d::id.eq(&c.delivery_id))
                .filter(d::lease_owner.eq(&*c.token)),
        )
        .set((
            d::status.eq(c.status as i16),
            d::attempts.eq(c.attempts),
            d::schedule_start.eq(c.schedule_start),
            d::next_attempt_at.eq(c.next_attempt_at),
            d::last_error.eq(c.last_error.as_deref()),
            d::requests_done.eq(c.requests_done),
            d::hold_kind.eq(c.hold as i16),
            d::lease_owner.eq(None::<String>),
            d::lease_until.eq(None::<i64>),
            d::updated_at.eq(now),
            d::finished_at.eq(finished),
        ))
        .execute(conn)?;
        if n == 0 {
            tracing::warn!(delivery = %c.delivery_id, "claim no longer current at completion; outcome not applied");
        }
        applied += n;
    }
    let attempts: Vec<&Attempt> = done.iter().filter_map(|c| c.attempt.as_ref()).collect();
    for chunk in attempts.chunks(200) {
        let rows = chunk.iter().copied().cloned().collect::<Vec<_>>();
        // Multi-row inserts are built per backend: MultiConnection has no
        // batch insert of its own.
        per_backend!(conn, |c| diesel::insert_into(attempts::table)
            .values(&rows)
            .execute(c)?);
    }
    Ok(applied)
}

/// Gives back the leases of claims whose tokens start with `owner_prefix`
/// (every claim of one process), so another process (or this one after a
/// restart) can claim them at once.
pub fn release(conn: &mut Conn, owner_prefix: &str) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    // Tokens are `<owner>/<n>`: a range covers exactly that owner's claims.
    let from = format!("{owner_prefix}/");
    let to = format!("{owner_prefix}0"); // '0' sorts right after '/'
    let n = diesel::update(
        d::deliveries
            .filter(d::lease_owner.ge(from))
            .filter(d::lease_owner.lt(to)),
    )
    .set((
        d::lease_owner.eq(None::<String>),
        d::lease_until.eq(None::<i64>),
    ))
    .execute(conn)?;
    if n > 0 {
        notify::announce_work(conn)?;
    }
    Ok(n)
}

/// Makes a failed (or pending) delivery due now with a fresh retry schedule.
pub fn retry_now(
    conn: &mut Conn,
    app_id: Option<&str>,
    id: &str,
    now: i64,
) -> Result<Delivery, StoreError> {
    use deliveries::dsl as d;
    let current = get(conn, app_id, id)?;
    let status = DeliveryStatus::from_i16(current.status);
    if !matches!(
        status,
        Some(DeliveryStatus::Failed | DeliveryStatus::Pending)
    ) {
        return Err(StoreError::Conflict(format!(
            "delivery {id} is {}; only failed or pending deliveries can be retried",
            status.map_or("unknown", DeliveryStatus::name)
        )));
    }
    diesel::update(d::deliveries.find(id))
        .set((
            d::status.eq(DeliveryStatus::Pending as i16),
            d::hold_kind.eq(HoldKind::None as i16),
            d::next_attempt_at.eq(now),
            d::schedule_start.eq(d::attempts),
            d::updated_at.eq(now),
            d::finished_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    notify::announce_work(conn)?;
    get(conn, app_id, id)
}

/// Requeues up to `limit` failed deliveries of an endpoint created at or
/// after `since`, in id order after `cursor`, each with a fresh schedule.
/// Returns how many were requeued and the last id looked at (the next
/// cursor), `None` when there are no more.
pub fn requeue_failed(
    conn: &mut Conn,
    endpoint_id: &str,
    since: i64,
    cursor: Option<&str>,
    limit: i64,
    now: i64,
) -> Result<(usize, Option<String>), StoreError> {
    use deliveries::dsl as d;
    let mut query = d::deliveries
        .filter(d::endpoint_id.eq(endpoint_id))
        .filter(d::status.eq(DeliveryStatus::Failed as i16))
        .filter(d::created_at.ge(since))
        .select(d::id)
        .order(d::id)
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(d::id.gt(cursor.to_string()));
    }
    let ids: Vec<String> = query.load(conn)?;
    let Some(last) = ids.last().cloned() else {
        return Ok((0, None));
    };
    let n = diesel::update(d::deliveries.filter(d::id.eq_any(&ids)))
        .set((
            d::status.eq(DeliveryStatus::Pending as i16),
            d::next_attempt_at.eq(now),
            d::schedule_start.eq(d::attempts),
            d::requests_done.eq(0),
            d::updated_at.eq(now),
            d::finished_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    if n > 0 {
        notify::announce_work(conn)?;
    }
    Ok((n, Some(last)))
}

/// How many failed deliveries of an endpoint were created at or after `since`.
pub fn count_failed(conn: &mut Conn, endpoint_id: &str, since: i64) -> Result<i64, StoreError> {
    use deliveries::dsl as d;
    Ok(d::deliveries
        .filter(d::endpoint_id.eq(endpoint_id))
        .filter(d::status.eq(DeliveryStatus::Failed as i16))
        .filter(d::created_at.ge(since))
        .count()
        .get_result(conn)?)
}

/// Deletes up to `limit` finished deliveries (and their attempts) created
/// before the cut-offs: `delivered_before` for delivered and skipped ones,
/// `failed_before` for failed ones. Returns how many.
pub fn prune(
    conn: &mut Conn,
    delivered_before: i64,
    failed_before: i64,
    limit: i64,
) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    // Ids are ULIDs: an id range is a time range, walked on the primary key.
    let mut ids: Vec<String> = d::deliveries
        .filter(d::id.lt(crate::id::id_at("msg", delivered_before)))
        .filter(d::status.eq_any([
            DeliveryStatus::Delivered as i16,
            DeliveryStatus::Skipped as i16,
        ]))
        .select(d::id)
        .limit(limit)
        .load(conn)?;
    let room = limit - ids.len() as i64;
    if room > 0 {
        ids.extend(
            d::deliveries
                .filter(d::id.lt(crate::id::id_at("msg", failed_before)))
                .filter(d::status.eq(DeliveryStatus::Failed as i16))
                .select(d::id)
                .limit(room)
                .load::<String>(conn)?,
        );
    }
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(attempts::table.filter(attempts::delivery_id.eq_any(&ids))).execute(conn)?;
    Ok(diesel::delete(d::deliveries.filter(d::id.eq_any(&ids))).execute(conn)?)
}

/// Filters for listing deliveries.
#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
}

/// Deliveries newest first, before `cursor` when given.
pub fn list(
    conn: &mut Conn,
    filter: &DeliveryFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    use deliveries::dsl as d;
    let mut query = d::deliveries
        .select(Delivery::as_select())
        .order(d::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(v) = &filter.app_id {
        query = query.filter(d::app_id.eq(v.clone()));
    }
    if let Some(v) = &filter.endpoint_id {
        query = query.filter(d::endpoint_id.eq(v.clone()));
    }
    if let Some(v) = &filter.event_id {
        query = query.filter(d::event_id.eq(v.clone()));
    }
    if let Some(v) = filter.status {
        query = query.filter(d::status.eq(v as i16));
    }
    if let Some(v) = &filter.event_type {
        query = query.filter(d::event_type.eq(v.clone()));
    }
    if let Some(cursor) = cursor {
        query = query.filter(d::id.lt(cursor.to_string()));
    }
    Ok(query.load(conn)?)
}

/// A delivery, of `app_id` when given (another app's answers not found).
pub fn get(conn: &mut Conn, app_id: Option<&str>, id: &str) -> Result<Delivery, StoreError> {
    let mut query = deliveries::table
        .find(id)
        .select(Delivery::as_select())
        .into_boxed();
    if let Some(app_id) = app_id {
        query = query.filter(deliveries::app_id.eq(app_id.to_string()));
    }
    query
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("delivery", id))
}

pub fn attempts_of(conn: &mut Conn, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
    Ok(attempts::table
        .filter(attempts::delivery_id.eq(delivery_id))
        .order(attempts::attempt)
        .select(Attempt::as_select())
        .load(conn)?)
}

/// The queue at a glance (for `/metrics`): deliveries pending, deliveries
/// held, and when the oldest pending one was created (ms), if any.
pub fn queue_stats(conn: &mut Conn) -> Result<(i64, i64, Option<i64>), StoreError> {
    use deliveries::dsl as d;
    let (pending, oldest) = d::deliveries
        .filter(d::status.eq(DeliveryStatus::Pending as i16))
        .select((diesel::dsl::count_star(), diesel::dsl::min(d::created_at)))
        .first::<(i64, Option<i64>)>(conn)?;
    let held = d::deliveries
        .filter(d::status.eq(DeliveryStatus::Held as i16))
        .count()
        .get_result::<i64>(conn)?;
    Ok((pending, held, oldest))
}

/// Attempts counted for one endpoint's statistics.
pub const STATS_SAMPLE: i64 = 10_000;

/// One endpoint's attempts over a window.
pub struct AttemptStats {
    /// Attempts by `AttemptOutcome` (as stored).
    pub by_outcome: Vec<(i16, i64)>,
    /// Durations (ms) of the most recent [`STATS_SAMPLE`] attempts.
    pub durations_ms: Vec<i64>,
    /// For each span asked for, its attempts by outcome (all of them, not
    /// a sample).
    pub by_span: Vec<Vec<(i16, i64)>>,
}

/// One endpoint's attempts since `since` (ms), and in each of `spans`
/// (`[from, to)` in ms).
pub fn endpoint_attempt_stats(
    conn: &mut Conn,
    endpoint_id: &str,
    since: i64,
    spans: &[(i64, i64)],
) -> Result<AttemptStats, StoreError> {
    let in_window = || {
        attempts::table
            .inner_join(deliveries::table)
            .filter(deliveries::endpoint_id.eq(endpoint_id.to_string()))
            .filter(attempts::started_at.ge(since))
    };
    let counts = in_window()
        .group_by(attempts::outcome)
        .select((attempts::outcome, diesel::dsl::count_star()))
        .load::<(i16, i64)>(conn)?;
    let durations_ms = in_window()
        .order(attempts::started_at.desc())
        .limit(STATS_SAMPLE)
        .select(attempts::duration_ms)
        .load::<i64>(conn)?;
    let by_span = spans
        .iter()
        .map(|&(from, to)| {
            attempts::table
                .inner_join(deliveries::table)
                .filter(deliveries::endpoint_id.eq(endpoint_id.to_string()))
                .filter(attempts::started_at.ge(from))
                .filter(attempts::started_at.lt(to))
                .group_by(attempts::outcome)
                .select((attempts::outcome, diesel::dsl::count_star()))
                .load::<(i16, i64)>(conn)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AttemptStats {
        by_outcome: counts,
        durations_ms,
        by_span,
    })
}

/// How many of one endpoint's deliveries are pending and held now.
pub fn endpoint_queue(conn: &mut Conn, endpoint_id: &str) -> Result<(i64, i64), StoreError> {
    use deliveries::dsl as d;
    let count = |status: DeliveryStatus, conn: &mut Conn| {
        d::deliveries
            .filter(d::endpoint_id.eq(endpoint_id))
            .filter(d::status.eq(status as i16))
            .count()
            .get_result::<i64>(conn)
    };
    Ok((
        count(DeliveryStatus::Pending, conn)?,
        count(DeliveryStatus::Held, conn)?,
    ))
}
