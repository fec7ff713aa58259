//! The delivery pipeline: events in, signed requests out, records that say so.

use std::collections::HashSet;
use std::time::Duration;

use hookline_tests::{Engine, Receiver, verify_signature};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn event(id: &str, ty: &str) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "https://shop.example.test",
        "type": ty,
        "subject": format!("subject-{id}"),
        "time": "2026-11-23T12:00:00Z",
        "data": { "order_id": id, "total": 12.5, "note": "ünïcødé ✓" }
    })
}

#[tokio::test]
async fn each_event_arrives_once_signed_and_recorded() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("shop").await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": format!("{}/hooks", receiver.url) }))
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint_id = endpoint["id"].as_str().unwrap();

    // One single event and a batch of four.
    let mut accepted = engine.emit(&app, event("e0", "order.created")).await;
    accepted.extend(
        engine
            .emit(
                &app,
                json!([1, 2, 3, 4].map(|i| event(&format!("e{i}"), "order.created"))),
            )
            .await,
    );
    assert_eq!(accepted.len(), 5);
    assert!(
        accepted
            .iter()
            .all(|a| a["deliveries"] == 1 && a["duplicate"] == false),
        "{accepted:?}"
    );

    let mut seen_ids = HashSet::new();
    let mut seen_events = HashSet::new();
    for _ in 0..5 {
        let r = receiver.next(WAIT).await;
        assert_eq!(r.path, "/hooks");
        assert_eq!(r.header("content-type"), "application/cloudevents+json");
        verify_signature(
            &secret,
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            &r.body,
            300,
        )
        .unwrap_or_else(|e| panic!("signature check failed: {e}"));
        let body = r.json();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["source"], "https://shop.example.test");
        assert_eq!(body["data"]["note"], "ünïcødé ✓");
        assert_eq!(
            body["subject"],
            format!("subject-{}", body["id"].as_str().unwrap())
        );
        assert!(
            seen_ids.insert(r.header("webhook-id").to_string()),
            "webhook-id repeated"
        );
        assert!(
            seen_events.insert(body["id"].as_str().unwrap().to_string()),
            "event delivered twice"
        );
    }
    assert_eq!(seen_events, (0..5).map(|i| format!("e{i}")).collect());

    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 5)
        .await;
    for d in &delivered {
        assert_eq!(d["endpoint_id"], endpoint_id);
        assert_eq!(d["attempts"], 1);
        assert!(
            seen_ids.contains(d["id"].as_str().unwrap()),
            "webhook-id is the delivery id"
        );
        let attempts = engine.attempts(d["id"].as_str().unwrap()).await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["status_code"], 200);
        assert_eq!(attempts[0]["outcome"], "success");
        assert_eq!(attempts[0]["response_excerpt"], "ok");
        assert_eq!(attempts[0]["plugin"]["name"], "webhook");
        assert_eq!(attempts[0]["plugin"]["hash"].as_str().unwrap().len(), 64);
    }
    // Every delivery is done, so nothing more can arrive: each body came exactly once.
    assert!(receiver.drain().is_empty(), "extra requests arrived");
}

#[tokio::test]
async fn filters_decide_who_gets_what() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut orders = Receiver::start().await;
    let mut exact = Receiver::start().await;
    let app = engine.create_app("filters").await;
    let orders_ep = engine
        .create_endpoint(
            &app,
            json!({ "url": orders.url, "filter_types": ["order.*"] }),
        )
        .await;
    let exact_ep = engine
        .create_endpoint(
            &app,
            json!({ "url": exact.url, "filter_types": ["invoice.paid"] }),
        )
        .await;

    let accepted = engine
        .emit(
            &app,
            json!([
                event("a", "order.created"),
                event("b", "order.item.added"),
                event("c", "orders.created"),
                event("d", "order"),
                event("e", "invoice.paid"),
                event("f", "invoice.paid.late"),
                event("g", "user.signed_up"),
            ]),
        )
        .await;
    let fanned: Vec<u64> = accepted
        .iter()
        .map(|a| a["deliveries"].as_u64().unwrap())
        .collect();
    assert_eq!(fanned, [1, 1, 0, 0, 1, 0, 0]);

    let mut order_types: Vec<String> = Vec::new();
    for _ in 0..2 {
        order_types.push(
            orders.next(WAIT).await.json()["type"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    order_types.sort();
    assert_eq!(order_types, ["order.created", "order.item.added"]);
    assert_eq!(exact.next(WAIT).await.json()["type"], "invoice.paid");

    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 3)
        .await;
    // Events nobody subscribed to created no delivery at all.
    for (i, a) in accepted.iter().enumerate() {
        let rows = engine
            .deliveries(&format!("event_id={}", a["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            rows.len() as u64,
            a["deliveries"].as_u64().unwrap(),
            "event {i}"
        );
    }
    assert_eq!(
        engine
            .deliveries(&format!(
                "endpoint_id={}",
                orders_ep["id"].as_str().unwrap()
            ))
            .await
            .len(),
        2
    );
    assert_eq!(
        engine
            .deliveries(&format!("endpoint_id={}", exact_ep["id"].as_str().unwrap()))
            .await
            .len(),
        1
    );
    assert_eq!(
        engine
            .deliveries(&format!("app_id={app}&event_type=invoice.paid"))
            .await
            .len(),
        1
    );
    assert!(orders.drain().is_empty() && exact.drain().is_empty());
}

#[tokio::test]
async fn the_same_event_id_is_stored_once() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("dupes").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;

    let first = engine.emit(&app, event("same", "order.created")).await;
    let second = engine.emit(&app, event("same", "order.created")).await;
    let within_batch = engine
        .emit(&app, json!([event("twin", "t.x"), event("twin", "t.x")]))
        .await;
    assert_eq!(first[0]["duplicate"], false);
    assert_eq!(second[0]["duplicate"], true);
    assert_eq!(
        second[0]["id"], first[0]["id"],
        "a duplicate answers with the stored event's id"
    );
    assert_eq!(second[0]["deliveries"], 0);
    assert_eq!(within_batch[1]["duplicate"], true);
    assert_eq!(within_batch[1]["id"], within_batch[0]["id"]);

    // The same id from another source is another event (CloudEvents: source + id).
    let mut other = event("same", "order.created");
    other["source"] = json!("https://other.example.test");
    assert_eq!(engine.emit(&app, other).await[0]["duplicate"], false);

    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 3)
        .await;
    assert_eq!(engine.deliveries(&format!("app_id={app}")).await.len(), 3);
    for _ in 0..3 {
        receiver.next(WAIT).await;
    }
    assert!(receiver.drain().is_empty());
}

#[tokio::test]
async fn a_500_then_200_is_delivered_once_after_a_recorded_failure() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    receiver.script(&[(500, "boom")]);
    let app = engine.create_app("flaky").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    engine.emit(&app, event("r1", "order.created")).await;

    let first = receiver.next(WAIT).await;
    let second = receiver.next(WAIT).await;
    assert_eq!(
        first.header("webhook-id"),
        second.header("webhook-id"),
        "webhook-id stays across retries"
    );
    assert_eq!(first.body, second.body);

    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["attempts"], 2);
    let attempts = engine.attempts(delivered[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["outcome"], "retry");
    assert_eq!(attempts[0]["response_excerpt"], "boom");
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(attempts[1]["outcome"], "success");
    assert!(receiver.drain().is_empty(), "delivered once");
}

#[tokio::test]
async fn a_4xx_is_retried_and_a_410_disables_and_holds_until_enabled() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut bad_request = Receiver::start().await;
    bad_request.script(&[(400, "nope")]);
    let mut gone = Receiver::start().await;
    gone.script(&[(410, "gone")]);
    let app = engine.create_app("failing").await;
    engine
        .create_endpoint(&app, json!({ "url": bad_request.url }))
        .await;
    let g = engine
        .create_endpoint(&app, json!({ "url": gone.url }))
        .await;
    let g_path = format!("/v1/apps/{app}/endpoints/{}", g["id"].as_str().unwrap());
    engine.emit(&app, event("p1", "order.created")).await;
    let first = bad_request.next(WAIT).await;
    let again = bad_request.next(WAIT).await;
    assert_eq!(
        first.header("webhook-id"),
        again.header("webhook-id"),
        "a 400 is retried, like a receiver mid-deploy"
    );
    gone.next(WAIT).await;

    let held = engine
        .wait_deliveries(&format!("app_id={app}&status=held"), 1)
        .await;
    assert_eq!(held[0]["held_for"], "endpoint", "{held:?}");
    let (_, endpoint) = engine.get(&g_path).await;
    assert_eq!(endpoint["enabled"], false, "410 disables the endpoint");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );

    // A disabled endpoint gets no new deliveries.
    let accepted = engine.emit(&app, event("p2", "order.created")).await;
    assert_eq!(accepted[0]["deliveries"], 1);

    // Enabling it sends what was held.
    let (status, _) = engine.patch(&g_path, &json!({ "enabled": true })).await;
    assert_eq!(status, 200);
    let resent = gone.next(WAIT).await;
    assert_eq!(resent.header("webhook-id"), held[0]["id"].as_str().unwrap());
    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 3)
        .await;
}

#[tokio::test]
async fn retry_after_and_exhausted_attempts() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = hookline_tests::EngineOptions::default();
    options.set("--retry-schedule", "50ms,200ms");
    let engine = Engine::start_with(options).await;
    let mut receiver = Receiver::answering(503, "down").await;
    let app = engine.create_app("down").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    engine.emit(&app, event("x1", "order.created")).await;
    for _ in 0..3 {
        receiver.next(WAIT).await;
    }
    let failed = engine
        .wait_deliveries(&format!("app_id={app}&status=failed"), 1)
        .await;
    assert_eq!(failed[0]["attempts"], 3);
    let attempts = engine.attempts(failed[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["retry", "retry", "failed"]
    );
    assert!(receiver.drain().is_empty(), "no attempt after the last");
}

#[tokio::test]
async fn graceful_shutdown_lets_the_engine_exit_cleanly() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut engine = Engine::start().await;
    let receiver = Receiver::start().await;
    let app = engine.create_app("stop").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    engine.emit(&app, event("s1", "order.created")).await;
    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    let status = engine.stop().expect("engine was running");
    assert!(status.success(), "exit status {status:?}\n{}", engine.log());
    assert!(engine.log().contains("stopped"), "{}", engine.log());
}
