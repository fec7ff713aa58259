//! The HTTP API (axum), versioned under `/v1`. Handlers parse and validate
//! input, then call into `store` and `plugins`; they hold no business logic
//! of their own and never send internal error details to clients.

mod apps;
mod deliveries;
mod endpoints;
pub mod error;
mod events;
mod keys;
pub mod limits;
mod plugins;
mod query;
mod recovery;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::cloudevent::EventLimits;
use crate::delivery::Handoff;
use crate::plugins::PluginHost;
use crate::store::Store;
pub use error::ApiError;

/// Handles shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub host: Arc<PluginHost>,
    /// Takes fresh deliveries to the dispatcher once they are committed.
    pub handoff: Arc<Handoff>,
    pub event_limits: Arc<EventLimits>,
    /// The SSRF guard, also applied to endpoint URLs when they are saved.
    pub network: Arc<crate::delivery::net_guard::NetworkPolicy>,
    /// Largest request body accepted by `POST /v1/events`.
    pub max_body_bytes: usize,
    /// How long a rotated-out endpoint secret still signs.
    pub secret_rotation_overlap: std::time::Duration,
    /// The API keys in force.
    pub keys: Arc<crate::auth::Keys>,
    /// The dispatcher's HTTP client (SSRF guard included), for the
    /// validation handshake when an endpoint is saved.
    pub sender: crate::delivery::sender::Sender,
    /// What the handshake sends as `WebHook-Request-Origin`.
    pub webhook_origin: String,
}

pub fn router(state: AppState) -> Router {
    // Every /v1 route needs an API key (`auth::require_key`).
    let v1 = Router::new()
        .nest("/v1/apps", apps::routes().merge(endpoints::routes()))
        .nest("/v1/events", events::routes(state.max_body_bytes))
        .nest("/v1/deliveries", deliveries::routes())
        .nest("/v1/plugins", plugins::routes())
        .nest("/v1/api-keys", keys::routes())
        .merge(recovery::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ))
        // Routes that take larger bodies (POST /v1/events) set their own.
        .layer(axum::extract::DefaultBodyLimit::max(limits::BODY_LIMIT));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .merge(v1)
        // Unknown routes and methods answer in the documented error shape too.
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("no route {}", uri.path()))
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            limits::RequestLimits::new(limits::MAX_IN_PROGRESS, limits::REQUEST_TIMEOUT),
            limits::guard,
        ))
        .with_state(state)
}

/// Ready when the store answers; 503 otherwise (for load balancers).
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .store
        .read(crate::store::api_keys::count)
        .await
        .map_err(|_| ApiError::Unavailable("the store does not answer".into()))?;
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// Parses a JSON body into `T`, with errors that say what is wrong and where.
fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = read_body(body)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::TooLarge(format!(
                "body: larger than the limit ({})",
                inner.body_text()
            ))
        }
        other => ApiError::BadRequest(format!("body: {}", other.body_text())),
    })
}

/// `?limit=&cursor=` for list endpoints.
#[derive(Debug, serde::Deserialize)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 250;

impl Page {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::invalid(
                "limit",
                format!("must be 1 to {MAX_PAGE}, got {n}"),
            )),
        }
    }
}

/// A page of results; `next_cursor` is set when there may be more.
fn page<T: serde::Serialize>(
    items: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> serde_json::Value {
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(&cursor_of))
        .flatten();
    serde_json::json!({ "data": items, "next_cursor": next })
}
