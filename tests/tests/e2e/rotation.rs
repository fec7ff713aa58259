//! Secret rotation: during the overlap every request carries both
//! signatures, so a receiver holding either secret verifies it; after the
//! overlap only the new secret signs. Checked with the verifier written
//! from the Standard Webhooks specification (`hookline_tests::signature`),
//! not with the engine's signer.

use std::time::Duration;

use base64::Engine as _;
use hookline_tests::{Engine, EngineOptions, Receiver, eventually, verify_signature};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn verifies(secret: &str, r: &hookline_tests::Received) -> bool {
    verify_signature(
        secret,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        300,
    )
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_overlap_either_secret_verifies_and_after_it_only_the_new_one() {
    let mut options = EngineOptions::default();
    options.set("--secret-rotation-overlap", "3s");
    let engine = Engine::start_with(options).await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("rotation").await;
    let old = new_secret();
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": receiver.url, "secret": old }))
        .await;
    let base = format!(
        "/v1/apps/{app}/endpoints/{}/secret",
        endpoint["id"].as_str().unwrap()
    );

    engine
        .emit(&app, json!({ "id": "before", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(verifies(&old, &r));
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);

    // Rotate to a given secret.
    let new = new_secret();
    let (status, rotated) = engine
        .post(&format!("{base}/rotate"), &json!({ "secret": new }))
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret"], new.as_str());
    assert!(
        rotated["previous_secret_valid_until"].is_string(),
        "{rotated}"
    );

    // During the overlap: both signatures, either secret verifies.
    for i in 0..3 {
        engine
            .emit(
                &app,
                json!({ "id": format!("during-{i}"), "source": "s", "type": "t" }),
            )
            .await;
        let r = receiver.next(WAIT).await;
        assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
        assert!(verifies(&old, &r), "a receiver with the old secret");
        assert!(verifies(&new, &r), "a receiver with the new secret");
    }

    // After it, only the new one.
    eventually("the overlap to end", WAIT, || async {
        let (_, s) = engine.get(&base).await;
        s["previous_secret_valid_until"].is_null().then_some(())
    })
    .await;
    engine
        .emit(&app, json!({ "id": "after", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(verifies(&new, &r));
    assert!(!verifies(&old, &r), "the old secret no longer verifies");
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);

    // Rotating without a secret generates one; a bad one is refused by name.
    let (status, generated) = engine.post(&format!("{base}/rotate"), &json!({})).await;
    assert_eq!(status, 200);
    let generated = generated["secret"].as_str().unwrap();
    assert!(generated.starts_with("whsec_") && generated != new);
    let (status, refused) = engine
        .post(&format!("{base}/rotate"), &json!({ "secret": "nope" }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(refused["error"]["field"], "secret");
}
