//! The CloudEvents Web Hook validation handshake, opt-in per endpoint: the
//! engine sends `OPTIONS` with `WebHook-Request-Origin` before it saves the
//! endpoint, refuses the endpoint unless the receiver answers with a
//! matching `WebHook-Allowed-Origin`, and keeps to `WebHook-Allowed-Rate`.

use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn engine() -> Engine {
    let mut options = EngineOptions::default();
    options.set("--webhook-origin", "events.example.test");
    Engine::start_with(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_agrees_gets_events_at_the_rate_it_allowed() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = engine().await;
    let mut receiver = Receiver::start().await;
    receiver.script_with_headers(
        200,
        &[
            ("WebHook-Allowed-Origin", "events.example.test"),
            ("WebHook-Allowed-Rate", "120"),
            ("Allow", "POST"),
        ],
        "",
    );
    let app = engine.create_app("handshake").await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": receiver.url, "handshake": true }))
        .await;
    let validation = receiver.next(WAIT).await;
    assert_eq!(validation.method, "OPTIONS");
    assert_eq!(
        validation.header("webhook-request-origin"),
        "events.example.test"
    );
    assert_eq!(endpoint["handshake"]["allowed_rate"], 120);
    assert!(endpoint["handshake"]["validated_at"].is_string());

    // Two events: at 120 a minute (one every 500 ms, burst 1) the second
    // goes at least 400 ms after the first.
    engine
        .emit(
            &app,
            json!([
                { "id": "1", "source": "s", "type": "t" },
                { "id": "2", "source": "s", "type": "t" },
            ]),
        )
        .await;
    let first = receiver.next(WAIT).await;
    let second = receiver.next(WAIT).await;
    assert_eq!(
        (first.method.as_str(), second.method.as_str()),
        ("POST", "POST")
    );
    let gap = second.at.duration_since(first.at);
    assert!(gap >= Duration::from_millis(400), "{gap:?} between the two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_agree_gets_no_endpoint_and_no_event() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = engine().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("refused").await;
    let path = format!("/v1/apps/{app}/endpoints");

    // No WebHook-Allowed-Origin at all (a plain receiver answering 200).
    let (status, out) = engine
        .post(&path, &json!({ "url": receiver.url, "handshake": true }))
        .await;
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error"]["field"], "url");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WebHook-Allowed-Origin"),
        "{out}"
    );
    assert_eq!(receiver.next(WAIT).await.method, "OPTIONS");

    // Another origin allowed.
    receiver.script_with_headers(200, &[("WebHook-Allowed-Origin", "someone.else")], "");
    let (status, out) = engine
        .post(&path, &json!({ "url": receiver.url, "handshake": true }))
        .await;
    assert_eq!(status, 422, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("someone.else")
    );
    receiver.next(WAIT).await;

    // An error status.
    receiver.script(&[(403, "no")]);
    let (status, _) = engine
        .post(&path, &json!({ "url": receiver.url, "handshake": true }))
        .await;
    assert_eq!(status, 422);
    receiver.next(WAIT).await;

    let (_, list) = engine.get(&path).await;
    assert_eq!(list["data"], json!([]), "nothing was saved");
    engine
        .emit(&app, json!({ "id": "1", "source": "s", "type": "t" }))
        .await;
    assert!(engine.deliveries(&format!("app_id={app}")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_is_opt_in_and_reruns_for_a_new_url() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = engine().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("opt-in").await;

    // Without it, the first request is the event itself.
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    assert_eq!(endpoint["handshake"], Value::Null);
    engine
        .emit(&app, json!({ "id": "1", "source": "s", "type": "t" }))
        .await;
    assert_eq!(receiver.next(WAIT).await.method, "POST");

    // Turned on later, with `*`: validated, no rate limit.
    let path = format!(
        "/v1/apps/{app}/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    receiver.script_with_headers(200, &[("WebHook-Allowed-Origin", "*")], "");
    let (status, out) = engine.patch(&path, &json!({ "handshake": true })).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(receiver.next(WAIT).await.method, "OPTIONS");
    assert_eq!(out["handshake"]["allowed_rate"], Value::Null);

    // A new URL while it is on: validated again, and refused if the new
    // receiver does not agree; the old URL stays.
    let other = Receiver::start().await;
    let (status, _) = engine
        .patch(&path, &json!({ "url": format!("{}/new", other.url) }))
        .await;
    assert_eq!(status, 422);
    let (_, shown) = engine.get(&path).await;
    assert_eq!(shown["url"], Value::String(receiver.url.clone()));

    // Turned off: no handshake for the next URL change.
    let (status, out) = engine.patch(&path, &json!({ "handshake": false })).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["handshake"], Value::Null);
}
