//! Apps: the tenants that own endpoints and events.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::apps;
use super::{Conn, StoreError};

/// An app row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = apps)]
pub struct App {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

pub fn insert(conn: &mut Conn, app: &App) -> Result<(), StoreError> {
    diesel::insert_into(apps::table).values(app).execute(conn)?;
    Ok(())
}

/// Gives an app a new name.
pub fn rename(conn: &mut Conn, id: &str, name: &str) -> Result<(), StoreError> {
    diesel::update(apps::table.find(id))
        .set(apps::name.eq(name))
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut Conn, id: &str) -> Result<App, StoreError> {
    apps::table
        .find(id)
        .select(App::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("app", id))
}

/// Apps in id order, after `cursor` when given.
pub fn list(conn: &mut Conn, cursor: Option<&str>, limit: i64) -> Result<Vec<App>, StoreError> {
    let mut query = apps::table
        .select(App::as_select())
        .order(apps::id)
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(apps::id.gt(cursor.to_string()));
    }
    Ok(query.load(conn)?)
}
