//! Events and their fan-out: an accepted event and its deliveries are written
//! in one transaction, so nothing is accepted that is not queued.

use std::sync::Arc;

use diesel::prelude::*;
use serde::Serialize;

use super::connection::per_backend;
use super::deliveries::{Claimed, DeliveryStatus, NewDelivery};
use super::notify;
use super::schema::{deliveries, events};
use super::sealed::Sealer;
use super::{Conn, StoreError, apps, endpoints};
use crate::filter::TypeFilter;
use crate::id::new_id;
use crate::payload_filter::{Attributes, FilterInput, PayloadFilter};

/// A stored event.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: String,
    pub app_id: String,
    pub source: String,
    pub ce_id: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: String,
    /// The producer's JSON text exactly as sent (any JSON value), or `null`
    /// when the event has no data or its data is not JSON.
    pub data: String,
    /// JSON object text of the other attributes: `datacontenttype`,
    /// `dataschema`, `data_base64` (data that is not JSON) and the
    /// extension attributes.
    pub extensions: String,
    pub received_at: i64,
}

impl Event {
    /// The row of a validated event of `app_id`, received at `now`.
    fn new(app_id: &str, event: NewEvent, now: i64) -> Event {
        Event {
            id: new_id("evt"),
            app_id: app_id.to_string(),
            source: event.source,
            ce_id: event.ce_id,
            event_type: event.event_type,
            subject: event.subject,
            time: event.time,
            data: event.data,
            extensions: event.extensions,
            received_at: now,
        }
    }
}

/// A validated event to store (see `crate::cloudevent`).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub ce_id: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: String,
    pub data: String,
    pub extensions: String,
}

/// What happened to one event of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The stored event's id (the earlier one's for a duplicate).
    pub id: String,
    /// The CloudEvents `id` the producer sent.
    pub event_id: String,
    pub source: String,
    /// True when this app already had an event with this source and id.
    pub duplicate: bool,
    /// Deliveries created for it (0 for a duplicate).
    pub deliveries: usize,
}

/// Lease fresh deliveries to the ingesting process, so it can send them at
/// once without claiming them (see `delivery::handoff`).
#[derive(Debug, Clone)]
pub struct LeaseToSelf {
    /// The claim token the deliveries are leased under.
    pub owner: Arc<str>,
    pub until: i64,
    /// Lease at most this many; the rest wait for a claim.
    pub max: usize,
    /// Endpoints not to lease for (their lanes are full).
    pub skip: Arc<std::collections::HashSet<String>>,
}

/// What an ingest stored.
#[derive(Debug, Default)]
pub struct Ingested {
    pub accepted: Vec<Accepted>,
    /// Deliveries leased to the caller, ready to send.
    pub leased: Vec<Claimed>,
    /// Deliveries created but not leased (the dispatcher claims them).
    pub unleased: usize,
    /// Of those, the ones not leased because their endpoint's lane was full
    /// (the dispatcher claims them as the lane drains; no wake-up needed).
    pub skipped_full: usize,
}

/// Stores events and fans each new one out to the app's receiving endpoints
/// whose filters match. Idempotent on (app, source, CloudEvents id).
pub fn ingest(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    batch: Vec<NewEvent>,
    now: i64,
    lease: Option<&LeaseToSelf>,
) -> Result<Ingested, StoreError> {
    apps::get(conn, app_id)?;
    let targets = targets(conn, sealer, app_id)?;
    let mut out = Ingested::default();
    let rows: Vec<Event> = batch
        .into_iter()
        .map(|event| Event::new(app_id, event, now))
        .collect();
    let inserted = insert_new(conn, &rows)?;
    let mut deliveries = Vec::new();
    for (row, inserted) in rows.into_iter().zip(inserted) {
        if !inserted {
            let existing: String = events::table
                .filter(events::app_id.eq(app_id))
                .filter(events::source.eq(&row.source))
                .filter(events::ce_id.eq(&row.ce_id))
                .select(events::id)
                .first(conn)?;
            out.accepted.push(Accepted {
                id: existing,
                event_id: row.ce_id,
                source: row.source,
                duplicate: true,
                deliveries: 0,
            });
            continue;
        }
        let n = fan_out(&row, &targets, now, lease, &mut out, &mut deliveries);
        out.accepted.push(Accepted {
            id: row.id,
            event_id: row.ce_id,
            source: row.source,
            duplicate: false,
            deliveries: n,
        });
    }
    insert_deliveries(conn, &deliveries)?;
    if out.unleased > 0 {
        // This process leased what it could send at once; the rest is for
        // whichever process claims first.
        notify::announce_work(conn)?;
    }
    Ok(out)
}

/// Inserts the events that are new (idempotency on app, source and
/// CloudEvents id) and says, row by row, which were.
///
/// An upsert: diesel's MultiConnection has no ON CONFLICT, so each backend
/// gets its own statement. SQLite inserts a row per statement (prepared
/// once, no round trip); PostgreSQL inserts many rows per statement, which
/// is several times faster over a connection, and returns the ids it stored.
/// A row that repeats an earlier row of the same batch is a duplicate of it.
fn insert_new(conn: &mut Conn, rows: &[Event]) -> Result<Vec<bool>, StoreError> {
    match conn {
        Conn::Sqlite(c) => rows
            .iter()
            .map(|row| {
                let n = diesel::insert_into(events::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                Ok(n > 0)
            })
            .collect(),
        Conn::Postgres(c) => {
            // 10 columns; PostgreSQL takes at most 65,535 parameters.
            let mut stored = std::collections::HashSet::new();
            for chunk in rows.chunks(1000) {
                let ids: Vec<String> = diesel::insert_into(events::table)
                    .values(chunk)
                    .on_conflict_do_nothing()
                    .returning(events::id)
                    .get_results(c)?;
                stored.extend(ids);
            }
            Ok(rows.iter().map(|r| stored.contains(&r.id)).collect())
        }
    }
}

/// Fans a stored event out again to the endpoints of its app that match it
/// now (new deliveries, new webhook ids). Returns how many were created.
pub fn replay(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    event_id: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let row = get(conn, Some(app_id), event_id)?;
    let targets = targets(conn, sealer, app_id)?;
    let mut out = Ingested::default();
    let mut rows = Vec::new();
    let n = fan_out(&row, &targets, now, None, &mut out, &mut rows);
    insert_deliveries(conn, &rows)?;
    if n > 0 {
        notify::announce_work(conn)?;
    }
    Ok(n)
}

/// Stores `event` and one delivery of it to `endpoint_id` alone, whatever
/// the endpoint's filters say (an operator's test of the endpoint). The
/// endpoint must be enabled; an event that repeats a stored one is refused.
/// Returns what was stored and the delivery's id.
pub fn ingest_for_endpoint(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    endpoint_id: &str,
    event: NewEvent,
    now: i64,
    lease: Option<&LeaseToSelf>,
) -> Result<(Ingested, String), StoreError> {
    let endpoint = endpoints::get(conn, sealer, app_id, endpoint_id)?;
    if !endpoint.enabled {
        return Err(StoreError::Conflict(format!(
            "endpoint {endpoint_id} is disabled: enable it to test it"
        )));
    }
    let row = Event::new(app_id, event, now);
    if insert_new(conn, std::slice::from_ref(&row))? != [true] {
        return Err(StoreError::Conflict(format!(
            "the app already has an event with source {:?} and id {:?}; leave id out for a fresh one",
            row.source, row.ce_id
        )));
    }
    // No filters: the test goes to this endpoint whatever it subscribes to.
    let target = (Arc::new(endpoint), TypeFilter::default(), None);
    let mut out = Ingested::default();
    let mut rows = Vec::new();
    fan_out(&row, &[target], now, lease, &mut out, &mut rows);
    insert_deliveries(conn, &rows)?;
    if out.unleased > 0 {
        notify::announce_work(conn)?;
    }
    out.accepted.push(Accepted {
        id: row.id,
        event_id: row.ce_id,
        source: row.source,
        duplicate: false,
        deliveries: rows.len(),
    });
    // One target without filters: exactly one delivery.
    let delivery = rows.first().map(|r| r.id.clone()).unwrap_or_default();
    Ok((out, delivery))
}

/// An endpoint with its type filters, and its payload filter if it has one.
type Target = (
    Arc<endpoints::Endpoint>,
    TypeFilter,
    Option<Arc<PayloadFilter>>,
);

/// The app's receiving endpoints with their parsed filters.
fn targets(conn: &mut Conn, sealer: &Sealer, app_id: &str) -> Result<Vec<Target>, StoreError> {
    Ok(endpoints::receiving(conn, sealer, app_id)?
        .into_iter()
        .filter_map(|endpoint| {
            // Filters are validated on write; a bad row is a bug, not the producer's fault.
            let types = TypeFilter::from_json(&endpoint.filter_types)
                .inspect_err(|e| tracing::error!(endpoint = %endpoint.id, error = %e, "stored type filters do not parse; endpoint skipped"))
                .ok()?;
            let payload = match endpoint.filter.as_deref() {
                None => None,
                Some(text) => Some(
                    PayloadFilter::cached(text)
                        .inspect_err(|e| tracing::error!(endpoint = %endpoint.id, error = %e, "stored payload filter does not compile; endpoint skipped"))
                        .ok()?,
                ),
            };
            Some((Arc::new(endpoint), types, payload))
        })
        .collect())
}

/// Creates the deliveries of `row` to the targets whose filters match it,
/// leasing to this process what `lease` allows; returns how many.
fn fan_out(
    row: &Event,
    targets: &[Target],
    now: i64,
    lease: Option<&LeaseToSelf>,
    out: &mut Ingested,
    rows: &mut Vec<NewDelivery>,
) -> usize {
    let before = rows.len();
    let mut shared_row: Option<Arc<Event>> = None;
    // Built at most once per event, for however many payload filters.
    let mut input: Option<FilterInput> = None;
    for (endpoint, types, payload) in targets {
        if !types.matches(&row.event_type) {
            continue;
        }
        if let Some(payload) = payload {
            let input = input.get_or_insert_with(|| {
                FilterInput::new(&Attributes {
                    id: &row.ce_id,
                    source: &row.source,
                    event_type: &row.event_type,
                    subject: row.subject.as_deref(),
                    time: &row.time,
                    extensions: &row.extensions,
                    data: &row.data,
                })
            });
            if !payload.matches(input) {
                continue;
            }
        }
        let id = new_id("msg");
        // Ordered endpoints go through the claim (one at a time, in order),
        // and so does an endpoint whose breaker is not closed: its
        // deliveries wait for the probe.
        let closed = endpoint.health.breaker_state == 0;
        let next_attempt_at = match endpoint.health.breaker_retry_at {
            Some(at) if !closed => at.max(now),
            _ => now,
        };
        let full = lease.is_some_and(|l| !l.skip.is_empty() && l.skip.contains(&endpoint.id));
        let leased = lease
            .filter(|l| out.leased.len() < l.max)
            .filter(|_| closed && !endpoint.ordered && !full);
        if full && leased.is_none() {
            out.skipped_full += 1;
        }
        match leased {
            Some(l) => {
                let event = shared_row
                    .get_or_insert_with(|| Arc::new(row.clone()))
                    .clone();
                out.leased.push(Claimed {
                    id: id.clone(),
                    token: l.owner.clone(),
                    lease_until: l.until,
                    attempts: 0,
                    schedule_start: 0,
                    requests_done: 0,
                    probe: false,
                    event,
                    endpoint: endpoint.clone(),
                });
            }
            None => out.unleased += 1,
        }
        rows.push(NewDelivery {
            id,
            app_id: row.app_id.clone(),
            event_id: row.id.clone(),
            endpoint_id: endpoint.id.clone(),
            event_type: row.event_type.clone(),
            status: DeliveryStatus::Pending as i16,
            attempts: 0,
            next_attempt_at,
            lease_owner: leased.map(|l| l.owner.to_string()),
            lease_until: leased.map(|l| l.until),
            created_at: now,
            updated_at: now,
            ordered: endpoint.ordered,
        });
    }
    rows.len() - before
}

fn insert_deliveries(conn: &mut Conn, rows: &[NewDelivery]) -> Result<(), StoreError> {
    // SQLite caps bound parameters per statement; 13 columns × 400 rows stays under it.
    for chunk in rows.chunks(400) {
        // Multi-row inserts are built per backend: MultiConnection has no
        // batch insert of its own.
        per_backend!(conn, |c| diesel::insert_into(deliveries::table)
            .values(chunk)
            .execute(c)?);
    }
    Ok(())
}

pub fn get(conn: &mut Conn, app_id: Option<&str>, id: &str) -> Result<Event, StoreError> {
    let mut query = events::table
        .filter(events::id.eq(id))
        .select(Event::as_select())
        .into_boxed();
    if let Some(app_id) = app_id {
        query = query.filter(events::app_id.eq(app_id.to_string()));
    }
    query
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("event", id))
}

pub fn by_ids(conn: &mut Conn, ids: &[&str]) -> Result<Vec<Event>, StoreError> {
    Ok(events::table
        .filter(events::id.eq_any(ids))
        .select(Event::as_select())
        .load(conn)?)
}

/// Deletes up to `limit` events received before `before` that no delivery
/// refers to any more. Returns how many.
pub fn prune_orphans(conn: &mut Conn, before: i64, limit: i64) -> Result<usize, StoreError> {
    let referenced = deliveries::table.select(deliveries::event_id);
    // Ids are ULIDs: an id range is a time range, walked on the primary key.
    let ids: Vec<String> = events::table
        .filter(events::id.lt(crate::id::id_at("evt", before)))
        .filter(events::id.ne_all(referenced))
        .select(events::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(events::table.filter(events::id.eq_any(&ids))).execute(conn)?)
}
