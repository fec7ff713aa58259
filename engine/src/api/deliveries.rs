//! `/v1/deliveries`: what was sent where, and every attempt.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::query::Query;
use super::{ApiError, AppState, Page, page};
use crate::auth::Caller;
use crate::id::rfc3339;
use crate::store::deliveries::{
    self, Attempt, AttemptOutcome, Delivery, DeliveryFilter, DeliveryStatus, HoldKind,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(fetch))
        .routes(routes!(attempts))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    app_id: Option<String>,
    endpoint_id: Option<String>,
    event_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    // Not `#[serde(flatten)] Page`: flattening breaks number parsing in query strings.
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct DeliveryOut {
    id: String,
    app_id: String,
    event_id: String,
    endpoint_id: String,
    event_type: String,
    status: &'static str,
    attempts: i32,
    next_attempt_at: Option<String>,
    last_error: Option<String>,
    /// What a held delivery waits for: `endpoint` (enable it) or `plugin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    held_for: Option<&'static str>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> DeliveryOut {
        let status = DeliveryStatus::from_i16(d.status);
        DeliveryOut {
            id: d.id,
            app_id: d.app_id,
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
            event_type: d.event_type,
            status: status.map_or("unknown", DeliveryStatus::name),
            attempts: d.attempts,
            next_attempt_at: (status == Some(DeliveryStatus::Pending))
                .then(|| rfc3339(d.next_attempt_at)),
            last_error: d.last_error,
            held_for: HoldKind::from_i16(d.hold_kind).name(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            finished_at: d.finished_at.map(rfc3339),
        }
    }
}

/// Deliveries, newest first, filtered.
#[utoipa::path(get, path = "", tag = "deliveries", params(ListQuery),
    responses((status = 200, description = "`{data: [Delivery], next_cursor}`"), (status = "4XX", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    // An app key lists its own app's deliveries only.
    let app_id = caller.app_or_own(q.app_id)?;
    let page_query = Page {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page_query.limit()?;
    let status = match q.status.as_deref() {
        None => None,
        Some(name) => Some(DeliveryStatus::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|s| s.name()).collect();
            ApiError::invalid(
                "status",
                format!("must be one of {}, got {name:?}", names.join(", ")),
            )
        })?),
    };
    let filter = DeliveryFilter {
        app_id,
        endpoint_id: q.endpoint_id,
        event_id: q.event_id,
        status,
        event_type: q.event_type,
    };
    let cursor = page_query.cursor;
    let rows = state
        .store
        .read(move |c| deliveries::list(c, &filter, cursor.as_deref(), limit))
        .await?;
    let out: Vec<DeliveryOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(page(out, limit, |d| d.id.clone())))
}

/// One delivery.
#[utoipa::path(get, path = "/{delivery_id}", tag = "deliveries", params(("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryOut), (status = "4XX", body = ErrorBody)))]
async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryOut>, ApiError> {
    let scope = caller.scope().map(str::to_string);
    Ok(Json(
        state
            .store
            .read(move |c| deliveries::get(c, scope.as_deref(), &id))
            .await?
            .into(),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AttemptOut {
    id: String,
    attempt: i32,
    started_at: String,
    duration_ms: i64,
    outcome: &'static str,
    status_code: Option<i32>,
    response_excerpt: Option<String>,
    error: Option<String>,
    plugin: Value,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> AttemptOut {
        AttemptOut {
            id: a.id,
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            outcome: AttemptOutcome::from_i16(a.outcome).map_or("unknown", AttemptOutcome::name),
            status_code: a.status_code,
            response_excerpt: a.response_excerpt,
            error: a.error,
            plugin: serde_json::json!({ "name": a.plugin_name, "version": a.plugin_version, "hash": a.plugin_hash }),
        }
    }
}

/// A delivery's attempts, first to last.
#[utoipa::path(get, path = "/{delivery_id}/attempts", tag = "deliveries", params(("delivery_id" = String, Path)),
    responses((status = 200, description = "`{data: [Attempt]}`"), (status = "4XX", body = ErrorBody)))]
async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let scope = caller.scope().map(str::to_string);
    let rows = state
        .store
        .read(move |c| {
            deliveries::get(c, scope.as_deref(), &id)?;
            deliveries::attempts_of(c, &id)
        })
        .await?;
    let out: Vec<AttemptOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(serde_json::json!({ "data": out })))
}
