//! The `hookline` command line against what a real engine sent.

use std::process::Command;
use std::time::Duration;

use hookline_tests::{Engine, Receiver, hookline_bin};
use serde_json::json;

#[tokio::test]
async fn verify_checks_a_real_delivery_as_a_receiver_would() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let engine = Engine::start().await;
    let app = engine.create_app("verify").await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": format!("{}/hook", receiver.url) }))
        .await;
    let secret = endpoint["secret"].as_str().unwrap();
    engine
        .emit(
            &app,
            json!([{ "id": "v1", "source": "cli", "type": "t", "data": { "n": 1 } }]),
        )
        .await;
    let request = receiver.next(Duration::from_secs(30)).await;

    // The request as a receiver would dump it: headers, then the body.
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers.txt");
    let dump: String = request
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap()))
        .collect();
    std::fs::write(&headers, format!("POST /hook HTTP/1.1\n{dump}")).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, &request.body).unwrap();
    let verify = |key: &str, body: &std::path::Path| {
        Command::new(hookline_bin())
            .args(["verify", "--key", key, "--headers"])
            .arg(&headers)
            .arg("--body")
            .arg(body)
            .output()
            .unwrap()
    };

    let ok = verify(secret, &body);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.starts_with("valid: signature 1 of 1"), "{stdout}");
    assert!(stdout.contains(request.header("webhook-id")), "{stdout}");

    // One byte changed: invalid, exit 1, and why.
    let tampered = dir.path().join("tampered.json");
    let mut bytes = request.body.to_vec();
    bytes[0] = b' ';
    std::fs::write(&tampered, bytes).unwrap();
    let bad = verify(secret, &tampered);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid: no signature matches"), "{stderr}");

    // Another endpoint's secret: invalid too. A malformed key: bad input.
    let other = verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &body);
    assert_eq!(other.status.code(), Some(1));
    let malformed = verify("secret", &body);
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert_eq!(malformed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--key: must start with whsec_"), "{stderr}");
}
