//! Dead letters and recovery: retry one delivery now, recover an endpoint
//! (requeue every failed delivery since a time, in the background), replay
//! an event (fan it out again to the endpoints that match it now), and the
//! record of each such operation.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::deliveries::DeliveryOut;
use super::openapi::ErrorBody;
use super::query::Query;
use super::{ApiError, AppState, Page, page, parse_json};
use crate::auth::Caller;
use crate::delivery::recovery;
use crate::id::{new_id, now_ms, rfc3339};
use crate::store::operations::{self, Operation};
use crate::store::{apps, deliveries, endpoints, events};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry))
        .routes(routes!(recover))
        .routes(routes!(replay))
        .routes(routes!(list))
        .routes(routes!(fetch))
}

#[derive(Serialize)]
struct OperationOut {
    id: String,
    app_id: String,
    kind: String,
    target: String,
    params: Value,
    state: String,
    total: i32,
    done: i32,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
}

impl From<Operation> for OperationOut {
    fn from(o: Operation) -> OperationOut {
        OperationOut {
            id: o.id,
            app_id: o.app_id,
            kind: o.kind,
            target: o.target,
            params: serde_json::from_str(&o.params).unwrap_or(Value::Null),
            state: o.state,
            total: o.total,
            done: o.done,
            error: o.error,
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            finished_at: o.finished_at.map(rfc3339),
        }
    }
}

fn finished_op(
    app_id: &str,
    kind: &str,
    target: &str,
    params: Value,
    n: i32,
    now: i64,
) -> Operation {
    Operation {
        id: new_id("op"),
        app_id: app_id.to_string(),
        kind: kind.into(),
        target: target.to_string(),
        params: params.to_string(),
        state: operations::DONE.into(),
        total: n,
        done: n,
        cursor: None,
        error: None,
        created_at: now,
        updated_at: now,
        finished_at: Some(now),
    }
}

/// `POST /v1/deliveries/{id}/retry`: a failed (or pending) delivery goes
/// now, with a fresh retry schedule.
/// Send a failed delivery again now, with a fresh schedule.
#[utoipa::path(post, path = "/v1/deliveries/{delivery_id}/retry", tag = "recovery", params(("delivery_id" = String, Path)),
    responses((status = 200, description = "`{delivery, operation}`"), (status = "4XX", body = ErrorBody)))]
async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let scope = caller.scope().map(str::to_string);
    let (delivery, op) = state
        .store
        .write(move |c| {
            let now = now_ms();
            let delivery = deliveries::retry_now(c, scope.as_deref(), &id, now)?;
            let op = finished_op(&delivery.app_id, "retry", &id, json!({}), 1, now);
            operations::insert(c, &op)?;
            Ok((delivery, op))
        })
        .await?;
    state.handoff.wake.notify_one();
    Ok(Json(json!({
        "delivery": DeliveryOut::from(delivery),
        "operation": OperationOut::from(op),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverInput {
    /// RFC 3339; failed deliveries created at or after it are requeued.
    since: String,
}

/// `POST /v1/apps/{app}/endpoints/{ep}/recover` `{"since": "…"}`: requeue
/// every failed delivery of the endpoint created since then, in the
/// background; answers 202 with the operation to follow.
/// Requeue the endpoint's failed deliveries created since a time (runs in the background).
#[utoipa::path(post, path = "/v1/apps/{app_id}/endpoints/{endpoint_id}/recover", tag = "recovery",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body(content = Object, description = "`{since: RFC 3339}`"),
    responses((status = 202, description = "The operation"), (status = "4XX", body = ErrorBody)))]
async fn recover(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<OperationOut>), ApiError> {
    let input: RecoverInput = parse_json(body)?;
    let since = chrono::DateTime::parse_from_rfc3339(&input.since)
        .map_err(|e| ApiError::invalid("since", format!("must be an RFC 3339 time: {e}")))?
        .timestamp_millis();
    let op = state
        .store
        .write(move |c| {
            endpoints::exists(c, &app_id, &endpoint_id)?;
            let now = now_ms();
            let total = deliveries::count_failed(c, &endpoint_id, since)?;
            let op = Operation {
                id: new_id("op"),
                app_id,
                kind: "recover".into(),
                target: endpoint_id,
                params: json!({ "since": since }).to_string(),
                state: operations::RUNNING.into(),
                total: total as i32,
                done: 0,
                cursor: None,
                error: None,
                created_at: now,
                updated_at: now,
                finished_at: None,
            };
            operations::insert(c, &op)?;
            Ok(op)
        })
        .await?;
    tokio::spawn(recovery::run(
        state.store.clone(),
        state.handoff.clone(),
        op.clone(),
    ));
    Ok((StatusCode::ACCEPTED, Json(op.into())))
}

#[derive(Deserialize)]
struct AppQuery {
    app_id: Option<String>,
}

/// `POST /v1/events/{id}/replay?app_id=`: fan the event out again to the
/// endpoints that match it now (new deliveries).
/// Fan an event out again to the endpoints that match it now.
#[utoipa::path(post, path = "/v1/events/{event_id}/replay", tag = "recovery", params(("event_id" = String, Path)),
    responses((status = 200, description = "The operation"), (status = "4XX", body = ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
    Query(q): Query<AppQuery>,
) -> Result<Json<Value>, ApiError> {
    let asked = caller.app_or_own(q.app_id)?;
    let sealer = state.store.sealer();
    let op = state
        .store
        .write(move |c| {
            // The event must be the app's (another app's answers 404).
            let app_id = events::get(c, asked.as_deref(), &event_id)?.app_id;
            let now = now_ms();
            let n = events::replay(c, &sealer, &app_id, &event_id, now)?;
            let op = finished_op(&app_id, "replay", &event_id, json!({}), n as i32, now);
            operations::insert(c, &op)?;
            Ok(op)
        })
        .await?;
    state.handoff.wake.notify_one();
    Ok(Json(
        json!({ "deliveries": op.total, "operation": OperationOut::from(op) }),
    ))
}

/// An app's retries, recoveries and replays.
#[utoipa::path(get, path = "/v1/apps/{app_id}/operations", tag = "recovery", params(("app_id" = String, Path), Page),
    responses((status = 200, description = "`{data: [Operation], next_cursor}`"), (status = "4XX", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit()?;
    let rows = state
        .store
        .read(move |c| {
            apps::get(c, &app_id)?;
            operations::list(c, &app_id, p.cursor.as_deref(), limit)
        })
        .await?;
    let out: Vec<OperationOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(page(out, limit, |o| o.id.clone())))
}

/// One operation and its progress.
#[utoipa::path(get, path = "/v1/operations/{operation_id}", tag = "recovery", params(("operation_id" = String, Path)),
    responses((status = 200, description = "The operation"), (status = "4XX", body = ErrorBody)))]
async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OperationOut>, ApiError> {
    let scope = caller.scope().map(str::to_string);
    let op = state
        .store
        .read(move |c| operations::get(c, scope.as_deref(), &id))
        .await?;
    Ok(Json(op.into()))
}
