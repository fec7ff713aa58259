//! API keys as stored: an id, a scope (admin, or one app), and a SHA-256 of
//! the key. The key itself is never stored.

use diesel::prelude::*;

use super::schema::api_keys;
use super::{Conn, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `None`: an admin key.
    pub app_id: Option<String>,
    pub hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn insert(conn: &mut Conn, key: &ApiKey) -> Result<(), StoreError> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)?;
    Ok(())
}

/// Every key, revoked ones included, newest first.
pub fn all(conn: &mut Conn) -> Result<Vec<ApiKey>, StoreError> {
    Ok(api_keys::table
        .order(api_keys::id.desc())
        .select(ApiKey::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(api_keys::table.count().get_result(conn)?)
}

/// One key by id, if there is one.
pub fn find(conn: &mut Conn, id: &str) -> Result<Option<ApiKey>, StoreError> {
    Ok(api_keys::table
        .find(id)
        .select(ApiKey::as_select())
        .first(conn)
        .optional()?)
}

/// Stores `key` only if the store has no key at all (the first start's
/// admin key); true when it did. Processes starting together on one
/// PostgreSQL database take turns (a transaction-scoped advisory lock), so
/// exactly one of them creates it.
pub fn insert_first(conn: &mut Conn, key: &ApiKey) -> Result<bool, StoreError> {
    if matches!(conn, Conn::Postgres(_)) {
        // "hlkfirst" in ASCII.
        diesel::sql_query("SELECT pg_advisory_xact_lock(7522515235441751668)").execute(conn)?;
    }
    if count(conn)? > 0 {
        return Ok(false);
    }
    insert(conn, key)?;
    Ok(true)
}

/// Revokes a key; revoking twice keeps the first time.
pub fn revoke(conn: &mut Conn, id: &str, now: i64) -> Result<ApiKey, StoreError> {
    diesel::update(
        api_keys::table
            .find(id)
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)?;
    api_keys::table
        .find(id)
        .select(ApiKey::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("api key", id))
}

pub fn touch(conn: &mut Conn, id: &str, now: i64) -> Result<(), StoreError> {
    diesel::update(api_keys::table.find(id))
        .set(api_keys::last_used_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}
