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

/// Runs `hookline <args>` against `engine` (HOOKLINE_URL and HOOKLINE_KEY
/// in its environment); its exit code, stdout and stderr.
async fn cli(engine: &Engine, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(hookline_bin());
    command
        .args(args)
        .env("HOOKLINE_URL", &engine.url)
        .env("HOOKLINE_KEY", &engine.key)
        .env_remove("HOOKLINE_OUTPUT");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed with `--output json`; its answer.
async fn cli_json(engine: &Engine, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (code, out, err) = cli(engine, &all).await;
    assert_eq!(code, 0, "hookline {args:?}: {err}{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("hookline {args:?}: {e}: {out}"))
}

/// Runs a command that must succeed with the default table output; its stdout.
async fn cli_table(engine: &Engine, args: &[&str]) -> String {
    let (code, out, err) = cli(engine, args).await;
    assert_eq!(code, 0, "hookline {args:?}: {err}{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_running_engine_in_tables_and_json() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    // The second endpoint fails once and has no retries: a dead letter.
    let failing = Receiver::answering(200, "ok").await;
    failing.script(&[(500, "boom")]);
    let engine = Engine::start().await;

    // An app and two endpoints.
    let app = cli_json(&engine, &["apps", "create", "cli-app"]).await;
    let app = app["id"].as_str().unwrap().to_string();
    let listed = cli_table(&engine, &["apps", "list"]).await;
    assert!(listed.lines().next().unwrap().contains("NAME"), "{listed}");
    assert!(
        listed.contains(&app) && listed.contains("cli-app"),
        "{listed}"
    );
    let hook = format!("{}/hook", receiver.url);
    let added = cli_json(
        &engine,
        &[
            "endpoints",
            "add",
            &app,
            &hook,
            "--filter-type",
            "order.*",
            "--description",
            "orders",
        ],
    )
    .await;
    let endpoint = added["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{added}"))
        .to_string();
    assert_eq!(added["filter_types"], json!(["order.*"]));
    let secret = added["secret"].as_str().unwrap().to_string();
    let dead = cli_json(
        &engine,
        &[
            "endpoints",
            "add",
            &app,
            &failing.url,
            "--json",
            r#"{"retry_schedule": [], "filter_types": ["order.*"]}"#,
        ],
    )
    .await;
    let dead = dead["id"].as_str().unwrap().to_string();
    let shown = cli_table(&engine, &["endpoints", "show", &app, &endpoint]).await;
    assert!(
        shown.contains("health.breaker") && shown.contains("closed"),
        "{shown}"
    );
    let table = cli_table(&engine, &["endpoints", "list", &app]).await;
    assert!(
        table.contains(&endpoint) && table.contains(&dead) && table.contains("BREAKER"),
        "{table}"
    );

    // Events from a file, one per line, in three requests.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let lines: String = (0..250)
        .map(|i| format!("{}\n", json!({ "id": format!("e{i}"), "source": "cli", "type": "order.created", "data": { "i": i } })))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = cli_table(
        &engine,
        &[
            "events",
            "emit",
            &app,
            file.to_str().unwrap(),
            "--batch",
            "100",
        ],
    )
    .await;
    assert!(
        out.contains("250 events accepted (0 duplicates), 500 deliveries"),
        "{out}"
    );
    // From flags, in JSON.
    let one = cli_json(
        &engine,
        &[
            "events",
            "emit",
            &app,
            "--type",
            "order.paid",
            "--data",
            r#"{"n": 1}"#,
        ],
    )
    .await;
    assert_eq!(one["data"][0]["deliveries"], 2, "{one}");
    for _ in 0..251 {
        receiver.next(Duration::from_secs(30)).await;
    }

    // The failed delivery: listed, shown with its attempt, retried.
    let failed = hookline_tests::eventually("the dead letter", Duration::from_secs(30), || {
        let engine = &engine;
        let dead = dead.clone();
        async move {
            let answer = cli_json(
                engine,
                &[
                    "deliveries",
                    "list",
                    "--endpoint",
                    &dead,
                    "--status",
                    "failed",
                ],
            )
            .await;
            answer["data"]
                .as_array()
                .filter(|d| !d.is_empty())
                .map(|d| d[0].clone())
        }
    })
    .await;
    let failed_id = failed["id"].as_str().unwrap().to_string();
    let shown = cli_table(&engine, &["deliveries", "show", &failed_id]).await;
    assert!(
        shown.contains("status") && shown.contains("failed"),
        "{shown}"
    );
    assert!(
        shown.contains("OUTCOME") && shown.contains("500"),
        "{shown}"
    );
    let listed = cli_table(&engine, &["deliveries", "list", "--status", "failed"]).await;
    assert!(
        listed.contains(&failed_id) && listed.contains("LAST ERROR"),
        "{listed}"
    );
    let retried = cli_table(&engine, &["deliveries", "retry", &failed_id]).await;
    assert!(
        retried.contains(&failed_id) && retried.contains("pending"),
        "{retried}"
    );
    hookline_tests::eventually("the retry to deliver", Duration::from_secs(30), || {
        let engine = &engine;
        let id = failed_id.clone();
        async move {
            let d = cli_json(engine, &["deliveries", "show", &id]).await;
            (d["status"] == "delivered").then_some(())
        }
    })
    .await;

    // An endpoint test, and its statistics.
    let tested = cli_table(&engine, &["endpoints", "test", &app, &endpoint]).await;
    assert!(
        tested.contains("delivered") && tested.contains("outcome") && tested.contains("success"),
        "{tested}"
    );
    let request = receiver.next(Duration::from_secs(30)).await;
    assert_eq!(request.json()["type"], "hookline.test");
    let stats = cli_json(
        &engine,
        &["endpoints", "stats", &app, &endpoint, "--window", "1h"],
    )
    .await;
    assert_eq!(stats["by_outcome"]["success"], 252, "{stats}");

    // What a received request's signature says, with the endpoint's secret.
    let headers = dir.path().join("headers.txt");
    let dump: String = request
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap()))
        .collect();
    std::fs::write(&headers, dump).unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, &request.body).unwrap();
    let verified = cli_table(
        &engine,
        &[
            "verify",
            "--key",
            &secret,
            "--headers",
            headers.to_str().unwrap(),
            "--body",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert!(verified.starts_with("valid"), "{verified}");

    // Disable and enable; keys; plugins; completions.
    let off = cli_json(&engine, &["endpoints", "disable", &app, &endpoint]).await;
    assert_eq!(off["enabled"], false);
    let on = cli_json(&engine, &["endpoints", "enable", &app, &endpoint]).await;
    assert_eq!(on["enabled"], true);
    let key = cli_json(&engine, &["keys", "create", "ci", "--app", &app]).await;
    assert!(key["key"].as_str().unwrap().starts_with("hlk_"), "{key}");
    let keys = cli_table(&engine, &["keys", "list"]).await;
    assert!(keys.contains("ci") && keys.contains(&app), "{keys}");
    let plugins = cli_table(&engine, &["plugin", "list"]).await;
    assert!(
        plugins.contains("webhook") && plugins.contains("slack"),
        "{plugins}"
    );
    let script = cli_table(&engine, &["completions", "bash"]).await;
    assert!(
        script.contains("hookline") && script.contains("endpoints"),
        "{}",
        &script[..200]
    );

    // Mistakes: named, with the fix, exit 1; bad input exit 2.
    let (code, _, err) = cli(&engine, &["endpoints", "show", &app, "ep_missing"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("404") && err.contains(&format!("hookline endpoints list {app}")),
        "{err}"
    );
    let (code, _, err) = cli(&engine, &["endpoints", "add", &app, "not a url"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(field `url`)"), "{err}");
    let (code, _, err) = cli(&engine, &["apps", "list", "--key", ""]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401") && err.contains("HOOKLINE_KEY"), "{err}");
    let (code, _, err) = cli(
        &engine,
        &["events", "emit", &app, "--type", "t", "--data", "{"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--data is not valid JSON"), "{err}");
}
