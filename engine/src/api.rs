//! The HTTP API (axum), versioned under `/v1`. Handlers parse and validate
//! input, then call into `store` and `plugins`; they hold no business logic
//! of their own and never send internal error details to clients.

mod apps;
pub mod declared;
mod deliveries;
mod endpoint_test;
mod endpoints;
pub mod error;
mod events;
mod keys;
pub mod limits;
mod linger;
mod openapi;
mod plugins;
mod query;
mod recovery;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::response::IntoResponse as _;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    // Every /v1 route needs an API key (`auth::require_key`). Routes and
    // their OpenAPI entries are registered together (`openapi`).
    let v1 = OpenApiRouter::new()
        .nest(
            "/v1/apps",
            apps::routes()
                .merge(endpoints::routes())
                .merge(endpoint_test::routes()),
        )
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
    let (v1, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .merge(v1)
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let doc: Arc<str> = doc
        .to_json()
        .expect("the OpenAPI document serializes")
        .into();
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                }
            }),
        )
        .merge(v1)
        .merge(crate::ui::routes())
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

/// The process is alive (a liveness probe; it checks nothing else).
#[utoipa::path(get, path = "/healthz", tag = "health", security(),
    responses((status = 200, description = "`{status: \"ok\"}`")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the store answers reads, the writer commits, and plugins are
/// loaded; 503 naming what is not, otherwise (for load balancers and
/// orchestrators). `/healthz` only says the process is alive.
#[utoipa::path(get, path = "/readyz", tag = "health", security(),
    responses((status = 200, description = "`{status: \"ready\", checks}`"), (status = 503, body = openapi::ErrorBody)))]
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .store
        .read(crate::store::api_keys::count)
        .await
        .map_err(|_| ApiError::Unavailable("the store does not answer reads".into()))?;
    // An empty group commit: the writer thread is alive and the database
    // takes writes.
    let written = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        state.store.write(|_| Ok(())),
    )
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return Err(ApiError::Unavailable(
            "the store's writer does not commit".into(),
        ));
    }
    let plugins = state.host.registry.names().len();
    if plugins == 0 {
        return Err(ApiError::Unavailable("no plugin is loaded".into()));
    }
    Ok(Json(serde_json::json!({
        "status": "ready",
        "checks": { "store": "ok", "writer": "ok", "plugins": plugins },
    })))
}

/// Prometheus metrics (`crate::metrics`). Served without a key, like the
/// health checks, so a scraper needs no credentials: the labels carry no
/// tenant data. The queue and breaker gauges are read from the store now.
#[utoipa::path(get, path = "/metrics", tag = "health", security(),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    use crate::store::{deliveries, endpoints};
    let (queue, breakers) = state
        .store
        .read(|c| {
            Ok((
                deliveries::queue_stats(c)?,
                endpoints::count_by_breaker_state(c)?,
            ))
        })
        .await
        .map_err(|_| ApiError::Unavailable("the store does not answer".into()))?;
    let m = crate::metrics::global();
    let (pending, held, oldest) = queue;
    m.queue_pending.set(pending);
    m.queue_held.set(held);
    m.oldest_pending_seconds.set(oldest.map_or(0.0, |created| {
        (crate::id::now_ms() - created).max(0) as f64 / 1000.0
    }));
    for state in [
        crate::delivery::health::BreakerState::Closed,
        crate::delivery::health::BreakerState::Open,
        crate::delivery::health::BreakerState::HalfOpen,
    ] {
        let n = breakers
            .iter()
            .filter(|(s, _)| crate::delivery::health::BreakerState::from_i16(*s) == state)
            .map(|(_, n)| n)
            .sum::<i64>();
        m.endpoints_by_breaker
            .get_or_create(&crate::metrics::StateLabels {
                state: state.name().into(),
            })
            .set(n);
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        m.encode(),
    )
        .into_response())
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
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
