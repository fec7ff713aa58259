//! Events and their fan-out: an accepted event and its deliveries are written
//! in one transaction, so nothing is accepted that is not queued.

use diesel::prelude::*;
use serde::Serialize;

use super::deliveries::{DeliveryStatus, NewDelivery};
use super::schema::{deliveries, events};
use super::{Conn, StoreError, apps, endpoints};
use crate::filter::TypeFilter;
use crate::id::new_id;

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
    /// JSON text: an object, or `null`.
    pub data: String,
    /// JSON object text of the CloudEvents extension attributes.
    pub extensions: String,
    pub received_at: i64,
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

/// Stores events and fans each new one out to the app's receiving endpoints
/// whose filters match. Idempotent on (app, source, CloudEvents id).
pub fn ingest(
    conn: &mut Conn,
    app_id: &str,
    batch: Vec<NewEvent>,
    now: i64,
) -> Result<Vec<Accepted>, StoreError> {
    apps::get(conn, app_id)?;
    let targets: Vec<(String, TypeFilter)> = endpoints::receiving(conn, app_id)?
        .into_iter()
        .filter_map(|(id, filters)| match TypeFilter::from_json(&filters) {
            Ok(f) => Some((id, f)),
            Err(e) => {
                // Filters are validated on write; a bad row is a bug, not the producer's fault.
                tracing::error!(endpoint = %id, error = %e, "stored filters do not parse; endpoint skipped");
                None
            }
        })
        .collect();

    let mut accepted = Vec::with_capacity(batch.len());
    let mut fan_out = Vec::new();
    for event in batch {
        let row = Event {
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
        };
        let inserted = diesel::insert_into(events::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 0 {
            let existing: String = events::table
                .filter(events::app_id.eq(app_id))
                .filter(events::source.eq(&row.source))
                .filter(events::ce_id.eq(&row.ce_id))
                .select(events::id)
                .first(conn)?;
            accepted.push(Accepted {
                id: existing,
                event_id: row.ce_id,
                source: row.source,
                duplicate: true,
                deliveries: 0,
            });
            continue;
        }
        let before = fan_out.len();
        for (endpoint_id, filter) in &targets {
            if filter.matches(&row.event_type) {
                fan_out.push(NewDelivery {
                    id: new_id("msg"),
                    app_id: app_id.to_string(),
                    event_id: row.id.clone(),
                    endpoint_id: endpoint_id.clone(),
                    event_type: row.event_type.clone(),
                    status: DeliveryStatus::Pending as i16,
                    attempts: 0,
                    next_attempt_at: now,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        accepted.push(Accepted {
            id: row.id,
            event_id: row.ce_id,
            source: row.source,
            duplicate: false,
            deliveries: fan_out.len() - before,
        });
    }
    // SQLite caps bound parameters per statement; 10 columns × 500 rows stays under it.
    for chunk in fan_out.chunks(500) {
        diesel::insert_into(deliveries::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(accepted)
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
