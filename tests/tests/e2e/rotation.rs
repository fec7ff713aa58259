//! Secret rotation: during the overlap every request carries both
//! signatures, so a receiver holding either secret verifies it; after the
//! overlap only the new secret signs. HMAC (`v1`) is checked with the
//! verifier written from the Standard Webhooks specification
//! (`hookline_tests::signature`), ed25519 (`v1a`) with `ring`: neither is
//! the engine's signer.

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
    hookline_tests::on_backend!(crate::BACKEND);
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

/// Verifies a `v1a` entry of the header with the `whpk_` public key, using
/// ring's ed25519 (not the engine's ed25519-dalek).
fn verifies_ed25519(public_key: &str, r: &hookline_tests::Received) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(public_key.strip_prefix("whpk_").expect("whpk_ prefix"))
        .unwrap();
    let content = [
        r.header("webhook-id").as_bytes(),
        b".",
        r.header("webhook-timestamp").as_bytes(),
        b".",
        &r.body,
    ]
    .concat();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
    r.header("webhook-signature").split(' ').any(|entry| {
        entry
            .strip_prefix("v1a,")
            .and_then(|sig| b64.decode(sig).ok())
            .is_some_and(|sig| key.verify(&content, &sig).is_ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_signatures_verify_with_the_public_key_and_rotate_the_same_way() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options.set("--secret-rotation-overlap", "3s");
    let engine = Engine::start_with(options).await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("ed25519").await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": receiver.url, "signature": "ed25519" }))
        .await;
    assert!(
        endpoint["secret"].as_str().unwrap().starts_with("whsk_"),
        "{endpoint}"
    );
    let old_public = endpoint["public_key"].as_str().unwrap().to_string();
    assert!(old_public.starts_with("whpk_"));
    let base = format!(
        "/v1/apps/{app}/endpoints/{}/secret",
        endpoint["id"].as_str().unwrap()
    );
    // The public key is shown with the endpoint; the secret key is not.
    let (_, shown) = engine
        .get(&format!(
            "/v1/apps/{app}/endpoints/{}",
            endpoint["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown["public_key"], old_public.as_str());
    assert!(shown.get("secret").is_none());

    engine
        .emit(&app, json!({ "id": "before", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(r.header("webhook-signature").starts_with("v1a,"));
    assert!(verifies_ed25519(&old_public, &r));

    // Rotating keeps the scheme; during the overlap both keys sign.
    let (status, rotated) = engine.post(&format!("{base}/rotate"), &json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_public = rotated["public_key"].as_str().unwrap().to_string();
    assert_ne!(new_public, old_public);
    engine
        .emit(&app, json!({ "id": "during", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies_ed25519(&old_public, &r) && verifies_ed25519(&new_public, &r));

    eventually("the overlap to end", WAIT, || async {
        let (_, s) = engine.get(&base).await;
        s["previous_secret_valid_until"].is_null().then_some(())
    })
    .await;
    engine
        .emit(&app, json!({ "id": "after", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(verifies_ed25519(&new_public, &r));
    assert!(!verifies_ed25519(&old_public, &r));

    // Moving from HMAC to ed25519 (an app of its own, so that its endpoint
    // is the only one the next event reaches): both kinds during the overlap.
    let app = engine.create_app("moving").await;
    let hmac = new_secret();
    let moving = engine
        .create_endpoint(&app, json!({ "url": receiver.url, "secret": hmac }))
        .await;
    let (_, rotated) = engine
        .post(
            &format!(
                "/v1/apps/{app}/endpoints/{}/secret/rotate",
                moving["id"].as_str().unwrap()
            ),
            &json!({ "signature": "ed25519" }),
        )
        .await;
    let public = rotated["public_key"].as_str().unwrap();
    engine
        .emit(&app, json!({ "id": "moving", "source": "s", "type": "t" }))
        .await;
    let r = receiver.next(WAIT).await;
    assert!(verifies(&hmac, &r), "an HMAC receiver still verifies");
    assert!(verifies_ed25519(public, &r), "an ed25519 receiver verifies");
}
