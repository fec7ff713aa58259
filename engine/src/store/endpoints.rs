//! Endpoints: where an app's events go, through which plugin, signed with
//! which secret. Deleted endpoints are kept (soft delete) so their deliveries'
//! history stays readable.

use diesel::prelude::*;

use super::schema::endpoints;
use super::{Conn, StoreError};

/// An endpoint row. `plugin_config` and `filter_types` are JSON text.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = endpoints)]
pub struct Endpoint {
    pub id: String,
    pub app_id: String,
    pub url: String,
    pub description: String,
    pub plugin: String,
    pub plugin_config: String,
    pub filter_types: String,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = endpoints)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub plugin: Option<String>,
    pub plugin_config: Option<String>,
    pub filter_types: Option<String>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub updated_at: Option<i64>,
}

pub fn insert(conn: &mut Conn, endpoint: &Endpoint) -> Result<(), StoreError> {
    diesel::insert_into(endpoints::table)
        .values(endpoint)
        .execute(conn)?;
    Ok(())
}

/// A live (not deleted) endpoint of the app.
pub fn get(conn: &mut Conn, app_id: &str, id: &str) -> Result<Endpoint, StoreError> {
    endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(Endpoint::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("endpoint", id))
}

/// The app's live endpoints in id order, after `cursor` when given.
pub fn list(
    conn: &mut Conn,
    app_id: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<Endpoint>, StoreError> {
    let mut query = endpoints::table
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(Endpoint::as_select())
        .order(endpoints::id)
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(endpoints::id.gt(cursor.to_string()));
    }
    Ok(query.load(conn)?)
}

/// The app's endpoints that receive new events: live and enabled.
pub fn receiving(conn: &mut Conn, app_id: &str) -> Result<Vec<Endpoint>, StoreError> {
    Ok(endpoints::table
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .filter(endpoints::enabled.eq(true))
        .select(Endpoint::as_select())
        .load(conn)?)
}

/// Endpoints by id, deleted or not (the dispatcher decides what to do).
pub fn by_ids(conn: &mut Conn, ids: &[&str]) -> Result<Vec<Endpoint>, StoreError> {
    Ok(endpoints::table
        .filter(endpoints::id.eq_any(ids))
        .select(Endpoint::as_select())
        .load(conn)?)
}

pub fn update(
    conn: &mut Conn,
    app_id: &str,
    id: &str,
    changes: &EndpointChanges,
) -> Result<Endpoint, StoreError> {
    let target = endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null());
    let n = diesel::update(target).set(changes).execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("endpoint", id));
    }
    get(conn, app_id, id)
}

/// Disables an endpoint with a reason (a plugin's or the engine's verdict).
pub fn disable(conn: &mut Conn, id: &str, reason: &str, now: i64) -> Result<(), StoreError> {
    diesel::update(endpoints::table.find(id))
        .set((
            endpoints::enabled.eq(false),
            endpoints::disabled_reason.eq(Some(reason)),
            endpoints::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn soft_delete(conn: &mut Conn, app_id: &str, id: &str, now: i64) -> Result<(), StoreError> {
    let target = endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null());
    let n = diesel::update(target)
        .set((
            endpoints::deleted_at.eq(Some(now)),
            endpoints::updated_at.eq(now),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("endpoint", id));
    }
    Ok(())
}
