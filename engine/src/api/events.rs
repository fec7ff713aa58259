//! `/v1/events`: CloudEvents in. An accepted event is committed with its
//! deliveries before the 202 goes out.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::query::Query;
use super::{ApiError, AppState, read_body};
use crate::auth::Caller;
use crate::cloudevent;
use crate::id::{now_ms, rfc3339};
use crate::store::{StoreError, events};

pub fn routes(max_body_bytes: usize) -> OpenApiRouter<AppState> {
    // The ingest route takes larger bodies than the others.
    let (schemas, paths, ingest) = routes!(ingest);
    OpenApiRouter::new()
        .routes((
            schemas,
            paths,
            ingest.layer(DefaultBodyLimit::max(max_body_bytes)),
        ))
        .routes(routes!(fetch))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AppQuery {
    app_id: Option<String>,
}

/// Accept CloudEvents: structured (`application/cloudevents+json`), batch (`application/cloudevents-batch+json`), binary (`ce-*` headers) or plain JSON (one event or an array). 202 once they are stored with their deliveries.
#[utoipa::path(post, path = "", tag = "events", params(AppQuery),
    request_body(content = Object, description = "One CloudEvent, or an array of them"),
    responses((status = 202, description = "`{data: [{id, event_id, source, duplicate, deliveries}]}`"), (status = "4XX", body = ErrorBody)))]
async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AppQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // An app key emits into its own app (another app's id answers 404).
    let app_id = caller
        .app_or_own(q.app_id.filter(|a| !a.is_empty()))?
        .ok_or_else(|| {
            ApiError::invalid("app_id", "is required: POST /v1/events?app_id=<app id>")
        })?;
    let mode = cloudevent::mode(&headers)?;
    let body = read_body(body).map_err(|e| match e {
        ApiError::TooLarge(_) => ApiError::TooLarge(format!(
            "body: larger than the limit of {} bytes (--max-body-kib)",
            state.max_body_bytes
        )),
        other => other,
    })?;
    let batch = cloudevent::parse(mode, &headers, &body, &state.event_limits)?;
    let lookup = app_id.clone();
    // Store and hand over in a task of its own: if the client goes away after
    // the commit, the handoff still happens (dropping this handler's future
    // must not leave committed deliveries waiting for their leases to run out).
    let (store, handoff) = (state.store.clone(), state.handoff.clone());
    let stored = tokio::spawn(async move {
        let reservation = handoff.reserve(batch.len().saturating_mul(4).min(256));
        let lease = reservation.lease.clone();
        // `try_write`: when the writer's queue is full, refuse (503) rather
        // than queue without bound.
        let sealer = store.sealer();
        let result = store
            .try_write(move |c| events::ingest(c, &sealer, &app_id, batch, now_ms(), Some(&lease)))
            .await;
        match result {
            Ok(ingested) => {
                let m = crate::metrics::global();
                let duplicates = ingested.accepted.iter().filter(|a| a.duplicate).count();
                m.events_ingested
                    .inc_by((ingested.accepted.len() - duplicates) as u64);
                m.events_duplicate.inc_by(duplicates as u64);
                m.ingest_batch_events
                    .observe(ingested.accepted.len() as f64);
                // Committed: now the dispatcher may send them.
                let claimable = ingested.unleased - ingested.skipped_full;
                handoff.deliver(reservation, ingested.leased, claimable);
                Ok(ingested.accepted)
            }
            Err(e) => {
                handoff.cancel(reservation);
                Err(e)
            }
        }
    });
    let accepted = stored
        .await
        .map_err(|e| ApiError::Internal(format!("ingest task failed: {e}")))?
        .map_err(|e| match e {
            StoreError::NotFound { kind: "app", .. } => {
                ApiError::invalid("app_id", format!("no app with id {lookup:?}"))
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "data": accepted })),
    ))
}

#[derive(Serialize)]
struct EventOut {
    id: String,
    app_id: String,
    source: String,
    event_id: String,
    #[serde(rename = "type")]
    ty: String,
    subject: Option<String>,
    time: String,
    /// Exactly as the producer sent it.
    data: Box<serde_json::value::RawValue>,
    /// The optional attributes (`datacontenttype`, `dataschema`,
    /// `data_base64` for data that is not JSON) and the extensions.
    extensions: Value,
    received_at: String,
}

/// A stored event.
#[utoipa::path(get, path = "/{event_id}", tag = "events", params(("event_id" = String, Path), AppQuery),
    responses((status = 200, description = "The event"), (status = "4XX", body = ErrorBody)))]
async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
    Query(q): Query<AppQuery>,
) -> Result<Json<EventOut>, ApiError> {
    let app_id = caller.app_or_own(q.app_id)?;
    let e = state
        .store
        .read(move |c| events::get(c, app_id.as_deref(), &event_id))
        .await?;
    Ok(Json(EventOut {
        id: e.id,
        app_id: e.app_id,
        source: e.source,
        event_id: e.ce_id,
        ty: e.event_type,
        subject: e.subject,
        time: e.time,
        data: serde_json::value::RawValue::from_string(e.data)
            .map_err(|e| ApiError::Internal(format!("stored event data is not JSON: {e}")))?,
        extensions: serde_json::from_str(&e.extensions).unwrap_or(Value::Null),
        received_at: rfc3339(e.received_at),
    }))
}
