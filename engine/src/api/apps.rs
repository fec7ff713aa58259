//! `/v1/apps`: the tenants.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::query::Query;
use super::{ApiError, AppState, Page, page, parse_json};
use crate::auth::Caller;
use crate::id::{new_id, now_ms, rfc3339};
use crate::store::apps::{self, App};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    /// 1 to 256 bytes.
    name: String,
}

#[derive(Serialize, ToSchema)]
struct AppOut {
    id: String,
    name: String,
    created_at: String,
}

impl From<App> for AppOut {
    fn from(a: App) -> AppOut {
        AppOut {
            id: a.id,
            name: a.name,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// Create an app (admin key).
#[utoipa::path(post, path = "", tag = "apps", request_body = CreateApp,
    responses((status = 201, body = AppOut), (status = "4XX", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AppOut>), ApiError> {
    caller.require_admin()?;
    let input: CreateApp = parse_json(body)?;
    let name = input.name.trim().to_string();
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::invalid("name", "must be 1 to 256 bytes"));
    }
    let app = App {
        id: new_id("app"),
        name,
        created_at: now_ms(),
    };
    let row = app.clone();
    state.store.write(move |c| apps::insert(c, &row)).await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// List apps (an app key sees its own).
#[utoipa::path(get, path = "", tag = "apps", params(Page),
    responses((status = 200, description = "`{data: [App], next_cursor}`"), (status = "4XX", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = p.limit()?;
    let scope = caller.scope().map(str::to_string);
    let rows = state
        .store
        .read(move |c| match scope {
            // An app key sees its own app, and only on the first page.
            Some(own) if p.cursor.is_none() => Ok(vec![apps::get(c, &own)?]),
            Some(_) => Ok(Vec::new()),
            None => apps::list(c, p.cursor.as_deref(), limit),
        })
        .await?;
    let out: Vec<AppOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(page(out, limit, |a| a.id.clone())))
}

/// One app.
#[utoipa::path(get, path = "/{app_id}", tag = "apps", params(("app_id" = String, Path)),
    responses((status = 200, body = AppOut), (status = "4XX", body = ErrorBody)))]
async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Json<AppOut>, ApiError> {
    caller.check_app(&app_id)?;
    let app = state.store.read(move |c| apps::get(c, &app_id)).await?;
    Ok(Json(app.into()))
}
