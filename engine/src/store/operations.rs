//! Recovery operations: the record of what an operator asked for (retry a
//! delivery, recover an endpoint, replay an event) and, for the background
//! ones, how far they have got.

use diesel::prelude::*;

use super::schema::operations;
use super::{Conn, StoreError};

/// An operation row. `params` is JSON text.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = operations)]
pub struct Operation {
    pub id: String,
    pub app_id: String,
    pub kind: String,
    pub target: String,
    pub params: String,
    pub state: String,
    pub total: i32,
    pub done: i32,
    pub cursor: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

pub fn insert(conn: &mut Conn, op: &Operation) -> Result<(), StoreError> {
    diesel::insert_into(operations::table)
        .values(op)
        .execute(conn)?;
    Ok(())
}

/// An operation, of `app_id` when given.
pub fn get(conn: &mut Conn, app_id: Option<&str>, id: &str) -> Result<Operation, StoreError> {
    let mut query = operations::table
        .find(id)
        .select(Operation::as_select())
        .into_boxed();
    if let Some(app_id) = app_id {
        query = query.filter(operations::app_id.eq(app_id.to_string()));
    }
    query
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("operation", id))
}

/// An app's operations, newest first, before `cursor` when given.
pub fn list(
    conn: &mut Conn,
    app_id: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<Operation>, StoreError> {
    let mut query = operations::table
        .filter(operations::app_id.eq(app_id))
        .select(Operation::as_select())
        .order(operations::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(operations::id.lt(cursor.to_string()));
    }
    Ok(query.load(conn)?)
}

/// Operations still running (resumed after a restart).
pub fn running(conn: &mut Conn) -> Result<Vec<Operation>, StoreError> {
    Ok(operations::table
        .filter(operations::state.eq(RUNNING))
        .select(Operation::as_select())
        .order(operations::id)
        .load(conn)?)
}

/// Records progress of a running operation: `more` done, resume at `cursor`;
/// `finished` ends it.
pub fn advance(
    conn: &mut Conn,
    id: &str,
    more: i32,
    cursor: Option<&str>,
    finished: bool,
    now: i64,
) -> Result<(), StoreError> {
    use operations::dsl as o;
    diesel::update(o::operations.find(id))
        .set((
            o::done.eq(o::done + more),
            o::cursor.eq(cursor),
            o::updated_at.eq(now),
            o::state.eq(if finished { DONE } else { RUNNING }),
            o::finished_at.eq(finished.then_some(now)),
        ))
        .execute(conn)?;
    Ok(())
}
