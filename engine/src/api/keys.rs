//! `/v1/api-keys`: create, list and revoke API keys (admin keys only). A
//! key's secret is in the answer to its creation and nowhere else.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::{ApiError, AppState, parse_json};
use crate::auth::{self, Caller};
use crate::id::{now_ms, rfc3339};
use crate::store::api_keys::{self, ApiKey};
use crate::store::apps;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    /// The app the key is confined to; an admin key when absent.
    app_id: Option<String>,
}

#[derive(Serialize)]
struct KeyOut {
    id: String,
    /// What the key starts with: enough to recognise it, not to use it.
    prefix: String,
    name: String,
    /// `"admin"`, or `"app"` with `app_id`.
    scope: &'static str,
    app_id: Option<String>,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<ApiKey> for KeyOut {
    fn from(k: ApiKey) -> KeyOut {
        KeyOut {
            prefix: format!("{}{}", auth::KEY_PREFIX, k.id),
            id: k.id,
            name: k.name,
            scope: if k.app_id.is_some() { "app" } else { "admin" },
            app_id: k.app_id,
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// Create a key (admin); the key itself is in this answer only.
#[utoipa::path(post, path = "", tag = "keys", request_body = CreateKey,
    responses((status = 201, description = "The key, with `key`"), (status = "4XX", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let input: CreateKey = parse_json(body)?;
    let name = input.name.trim().to_string();
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::invalid("name", "must be 1 to 256 bytes"));
    }
    let new = auth::generate(&name, input.app_id, now_ms());
    let row = new.row.clone();
    state
        .store
        .write(move |c| {
            if let Some(app) = &row.app_id {
                apps::get(c, app)?;
            }
            api_keys::insert(c, &row)
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound { kind: "app", id } => {
                ApiError::invalid("app_id", format!("no app with id {id:?}"))
            }
            other => other.into(),
        })?;
    state.keys.add(&new.row);
    tracing::info!(key = %new.row.id, name = %new.row.name, app = ?new.row.app_id, "API key created");
    let mut out = serde_json::to_value(KeyOut::from(new.row)).unwrap_or(Value::Null);
    // Shown this once; only its hash is kept.
    out["key"] = json!(new.key);
    Ok((StatusCode::CREATED, Json(out)))
}

/// The keys: prefix, scope and last use, never the key.
#[utoipa::path(get, path = "", tag = "keys",
    responses((status = 200, description = "`{data: [Key]}`"), (status = "4XX", body = ErrorBody)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let rows = state.store.read(api_keys::all).await?;
    let out: Vec<KeyOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "data": out })))
}

/// Revoke a key.
#[utoipa::path(delete, path = "/{key_id}", tag = "keys", params(("key_id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<KeyOut>, ApiError> {
    caller.require_admin()?;
    let row = state
        .store
        .write(move |c| api_keys::revoke(c, &id, now_ms()))
        .await?;
    state.keys.add(&row);
    tracing::info!(key = %row.id, "API key revoked");
    Ok(Json(row.into()))
}
