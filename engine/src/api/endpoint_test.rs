//! `POST /v1/apps/{app_id}/endpoints/{endpoint_id}/test`: sends an event to
//! one endpoint and answers with its first attempt.
//!
//! The test is a real delivery, not a side channel: the event is stored, the
//! delivery goes through the endpoint's plugin, signing, the network guard,
//! its breaker and limits, and its attempt is recorded like any other. What
//! a test shows is therefore what a real event would meet. The handler waits
//! for the first attempt up to [`WAIT`]; a delivery held back longer (an
//! open breaker, a rate limit) is answered 202 with its id to follow.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::deliveries::{AttemptOut, DeliveryOut};
use super::openapi::ErrorBody;
use super::{ApiError, AppState, read_body};
use crate::cloudevent::{self, FieldError, Mode};
use crate::id::{new_id, now_ms};
use crate::store::deliveries::{self, DeliveryStatus};
use crate::store::{StoreError, events};

/// How long the handler waits for the first attempt (under the API's
/// request deadline).
const WAIT: Duration = Duration::from_secs(25);
/// How often it looks.
const POLL: Duration = Duration::from_millis(50);
/// The type of the default test event.
pub const TEST_EVENT_TYPE: &str = "hookline.test";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(test))
}

/// The event to send: the body's attributes, each one defaulted when left
/// out (`id` fresh, `source` "hookline", `type` "hookline.test", and data
/// naming the endpoint). An empty body sends the default event.
fn test_event(body: &[u8], endpoint_id: &str) -> Result<Vec<u8>, ApiError> {
    let mut event: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => {
                return Err(FieldError::new(
                    "body",
                    "must be a CloudEvent object (attributes left out are defaulted)",
                )
                .into());
            }
            Err(e) => return Err(FieldError::new("body", format!("not valid JSON: {e}")).into()),
        }
    };
    let defaults = [
        ("specversion", json!("1.0")),
        ("id", json!(new_id("test"))),
        ("source", json!("hookline")),
        ("type", json!(TEST_EVENT_TYPE)),
    ];
    for (name, value) in defaults {
        event.entry(name).or_insert(value);
    }
    if !event.contains_key("data") && !event.contains_key("data_base64") {
        event.insert(
            "data".into(),
            json!({
                "message": "A test event from Hookline",
                "endpoint_id": endpoint_id,
            }),
        );
    }
    Ok(serde_json::to_vec(&event).expect("a JSON map serializes"))
}

/// Send a test event to this endpoint alone, through its plugin, as a real delivery; the answer carries its first attempt (202 when it is held back).
#[utoipa::path(post, path = "/{app_id}/endpoints/{endpoint_id}/test", tag = "endpoints",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    request_body(content = Object, description = "CloudEvent attributes; those left out are defaulted. May be empty."),
    responses((status = 200, description = "`{delivery, attempt}`"), (status = 202, description = "`{delivery, attempt: null}`: not attempted yet"), (status = "4XX", body = ErrorBody)))]
async fn test(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = read_body(body)?;
    let text = test_event(&body, &endpoint_id)?;
    let mut parsed = cloudevent::parse(
        Mode::Structured,
        &HeaderMap::new(),
        &text,
        &state.event_limits,
    )?;
    let event = parsed.pop().expect("one object is one event");

    // Stored and handed to the dispatcher in a task of its own, as ingest
    // does: a client that goes away must not strand a committed delivery.
    let (store, handoff) = (state.store.clone(), state.handoff.clone());
    let stored = tokio::spawn(async move {
        let reservation = handoff.reserve(1);
        let lease = reservation.lease.clone();
        let sealer = store.sealer();
        let result = store
            .try_write(move |c| {
                events::ingest_for_endpoint(
                    c,
                    &sealer,
                    &app_id,
                    &endpoint_id,
                    event,
                    now_ms(),
                    Some(&lease),
                )
            })
            .await;
        match result {
            Ok((ingested, delivery)) => {
                let claimable = ingested.unleased - ingested.skipped_full;
                handoff.deliver(reservation, ingested.leased, claimable);
                Ok(delivery)
            }
            Err(e) => {
                handoff.cancel(reservation);
                Err(e)
            }
        }
    });
    let delivery_id = stored
        .await
        .map_err(|e| ApiError::Internal(format!("test task failed: {e}")))??;

    // The first attempt, or the delivery as it stands when the wait is over.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let id = delivery_id.clone();
        let (delivery, attempts) = state
            .store
            .read(move |c| {
                let delivery = deliveries::get(c, None, &id)?;
                let attempts = if delivery.attempts > 0 {
                    deliveries::attempts_of(c, &id)?
                } else {
                    Vec::new()
                };
                Ok::<_, StoreError>((delivery, attempts))
            })
            .await?;
        let waiting = delivery.status == DeliveryStatus::Pending as i16 && attempts.is_empty();
        if !waiting || tokio::time::Instant::now() >= deadline {
            let status = if attempts.is_empty() {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let attempt = attempts.into_iter().next().map(AttemptOut::from);
            return Ok((
                status,
                Json(json!({
                    "delivery": DeliveryOut::from(delivery),
                    "attempt": attempt,
                })),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Map<String, Value> {
        serde_json::from_slice(&test_event(body.as_bytes(), "ep_1").unwrap()).unwrap()
    }

    #[test]
    fn attributes_left_out_are_defaulted_and_given_ones_kept() {
        let e = event("");
        assert_eq!(e["type"], TEST_EVENT_TYPE);
        assert_eq!(e["source"], "hookline");
        assert_eq!(e["data"]["endpoint_id"], "ep_1");
        assert!(e["id"].as_str().unwrap().starts_with("test_"));
        let e = event(r#"{"type":"order.created","data":{"n":1},"subject":"s"}"#);
        assert_eq!(e["type"], "order.created");
        assert_eq!(e["data"], json!({ "n": 1 }));
        assert_eq!(e["subject"], "s");
        assert_eq!(e["source"], "hookline");
    }

    #[test]
    fn a_body_that_is_not_an_event_object_names_the_field() {
        for body in ["[1]", "{", "\"x\""] {
            let Err(ApiError::BadRequest(e)) = test_event(body.as_bytes(), "ep_1") else {
                panic!("{body} was taken");
            };
            assert!(e.starts_with("body"), "{e}");
        }
    }
}
