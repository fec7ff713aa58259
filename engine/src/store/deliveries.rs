//! Deliveries (one event to one endpoint) and their attempts. This module is
//! the queue: claiming due deliveries under a lease, and completing them.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;

use super::endpoints::{self, Endpoint};
use super::events::{self, Event};
use super::schema::{attempts, deliveries};
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
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] =
        [Self::Pending, Self::Delivered, Self::Failed, Self::Skipped];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn from_i16(v: i16) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| *s as i16 == v)
    }

    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.name() == name)
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
}

impl AttemptOutcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn from_i16(v: i16) -> Option<AttemptOutcome> {
        [Self::Success, Self::Retry, Self::Failed, Self::Skipped]
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
    /// Attempts made before this one.
    pub attempts: i32,
    pub event: Arc<Event>,
    pub endpoint: Arc<Endpoint>,
}

/// Leases up to `limit` due deliveries to `owner` until `lease_until`, and
/// loads their events and endpoints (two queries for the whole batch).
pub fn claim(
    conn: &mut Conn,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, StoreError> {
    use diesel::sql_types::{BigInt, Integer, Text};

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        event_id: String,
        #[diesel(sql_type = Text)]
        endpoint_id: String,
        #[diesel(sql_type = Integer)]
        attempts: i32,
    }
    // Raw SQL: diesel's DSL cannot update through a limited subselect. On
    // PostgreSQL the subselect gains `FOR UPDATE SKIP LOCKED`.
    let rows: Vec<Row> = diesel::sql_query(
        "UPDATE deliveries SET lease_owner = ?, lease_until = ? \
         WHERE id IN (SELECT id FROM deliveries \
                      WHERE status = 0 AND next_attempt_at <= ? \
                        AND (lease_until IS NULL OR lease_until < ?) \
                      ORDER BY next_attempt_at LIMIT ?) \
         RETURNING id, event_id, endpoint_id, attempts",
    )
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(lease_until)
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    let rows: Vec<(String, String, String, i32)> = rows
        .into_iter()
        .map(|r| (r.id, r.event_id, r.endpoint_id, r.attempts))
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }

    let mut event_ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut endpoint_ids: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    endpoint_ids.sort_unstable();
    endpoint_ids.dedup();
    let events: HashMap<String, Arc<Event>> = events::by_ids(conn, &event_ids)?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();
    let endpoints: HashMap<String, Arc<Endpoint>> = endpoints::by_ids(conn, &endpoint_ids)?
        .into_iter()
        .map(|e| (e.id.clone(), Arc::new(e)))
        .collect();

    let mut claimed = Vec::with_capacity(rows.len());
    for (id, event_id, endpoint_id, attempts) in rows {
        // Foreign keys guarantee both exist.
        let (Some(event), Some(endpoint)) = (events.get(&event_id), endpoints.get(&endpoint_id))
        else {
            tracing::error!(delivery = %id, "claimed delivery without its event or endpoint");
            continue;
        };
        claimed.push(Claimed {
            id,
            attempts,
            event: event.clone(),
            endpoint: endpoint.clone(),
        });
    }
    Ok(claimed)
}

/// `last_error` of a delivery that waits for its plugin (missing or
/// quarantined); such waits are not attempts and end early when the plugin
/// is loaded (see [`wake_waiting_for_plugin`]).
pub const WAITING_FOR_PLUGIN: &str = "waiting for plugin";

/// Makes deliveries that wait for `plugin` due now; returns how many.
pub fn wake_waiting_for_plugin(
    conn: &mut Conn,
    plugin: &str,
    now: i64,
) -> Result<usize, StoreError> {
    use super::schema::endpoints;
    use deliveries::dsl as d;
    let endpoint_ids = endpoints::table
        .filter(endpoints::plugin.eq(plugin))
        .select(endpoints::id);
    Ok(diesel::update(
        d::deliveries
            .filter(d::status.eq(DeliveryStatus::Pending as i16))
            .filter(d::next_attempt_at.gt(now))
            .filter(d::last_error.like(format!("{WAITING_FOR_PLUGIN}%")))
            .filter(d::endpoint_id.eq_any(endpoint_ids)),
    )
    .set(d::next_attempt_at.eq(now))
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

/// The result of working on one claimed delivery.
#[derive(Debug, Clone)]
pub struct Completion {
    pub delivery_id: String,
    pub status: DeliveryStatus,
    /// Attempts made, including this one.
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub attempt: Option<Attempt>,
    /// Disable this endpoint with this reason.
    pub disable_endpoint: Option<(String, String)>,
}

/// Records completions of deliveries leased to `owner`. A delivery whose lease
/// was lost meanwhile keeps its new owner's state; its attempt is still logged.
pub fn complete(
    conn: &mut Conn,
    owner: &str,
    done: &[Completion],
    now: i64,
) -> Result<(), StoreError> {
    use deliveries::dsl as d;
    for c in done {
        let finished = (c.status != DeliveryStatus::Pending).then_some(now);
        let n = diesel::update(
            d::deliveries
                .filter(d::id.eq(&c.delivery_id))
                .filter(d::lease_owner.eq(owner)),
        )
        .set((
            d::status.eq(c.status as i16),
            d::attempts.eq(c.attempts),
            d::next_attempt_at.eq(c.next_attempt_at),
            d::last_error.eq(c.last_error.as_deref()),
            d::lease_owner.eq(None::<String>),
            d::lease_until.eq(None::<i64>),
            d::updated_at.eq(now),
            d::finished_at.eq(finished),
        ))
        .execute(conn)?;
        if n == 0 {
            tracing::warn!(delivery = %c.delivery_id, "lease lost before completion; outcome not applied");
        }
        if let Some((endpoint_id, reason)) = &c.disable_endpoint {
            endpoints::disable(conn, endpoint_id, reason, now)?;
        }
    }
    let attempts: Vec<&Attempt> = done.iter().filter_map(|c| c.attempt.as_ref()).collect();
    for chunk in attempts.chunks(200) {
        diesel::insert_into(attempts::table)
            .values(chunk.iter().copied().cloned().collect::<Vec<_>>())
            .execute(conn)?;
    }
    Ok(())
}

/// Gives back the leases `owner` holds, so another process (or this one after
/// a restart) can claim them at once.
pub fn release(conn: &mut Conn, owner: &str) -> Result<usize, StoreError> {
    use deliveries::dsl as d;
    Ok(
        diesel::update(d::deliveries.filter(d::lease_owner.eq(owner)))
            .set((
                d::lease_owner.eq(None::<String>),
                d::lease_until.eq(None::<i64>),
            ))
            .execute(conn)?,
    )
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

pub fn get(conn: &mut Conn, id: &str) -> Result<Delivery, StoreError> {
    deliveries::table
        .find(id)
        .select(Delivery::as_select())
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
