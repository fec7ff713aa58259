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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_to_a_working_engine() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let engine = Engine::start().await;
    let app = engine.create_app("backed-up").await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": format!("{}/hook", receiver.url) }))
        .await;
    let events = |from: usize, n: usize| -> serde_json::Value {
        (from..from + n)
            .map(|i| json!({ "id": format!("b{i}"), "source": "backup", "type": "t", "data": { "i": i } }))
            .collect()
    };
    engine.emit(&app, events(0, 50)).await;
    for _ in 0..50 {
        receiver.next(Duration::from_secs(30)).await;
    }

    // The backup is taken while events keep coming in.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let load = {
        let (url, key, app) = (engine.url.clone(), engine.key.clone(), app.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for batch in 0..20 {
                let body: Vec<serde_json::Value> = (0..10)
                    .map(
                        |i| json!({ "id": format!("l{batch}-{i}"), "source": "load", "type": "t" }),
                    )
                    .collect();
                let r = http
                    .post(format!("{url}/v1/events?app_id={app}"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        })
    };
    let data_dir = engine.data_dir.to_str().unwrap().to_string();
    let to = copy.to_str().unwrap();
    let backup = ["backup", "--data-dir", &data_dir, "--to", to];
    let (code, out, err) = cli(&engine, &backup).await;
    assert_eq!(code, 0, "{err}{out}");
    assert!(out.contains("integrity ok"), "{out}");
    load.await.unwrap();
    // A backup never overwrites.
    let (code, _, err) = cli(&engine, &backup).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists already"), "{err}");

    // Restored in place of a store, the copy runs an engine with the app,
    // its endpoint (secret included) and what was delivered.
    let restored_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored_dir.path().join("hookline.db")).unwrap();
    std::fs::copy(
        engine.data_dir.join("admin.key"),
        restored_dir.path().join("admin.key"),
    )
    .unwrap();
    let restored = Engine::start_with(hookline_tests::EngineOptions {
        data_dir: Some(restored_dir.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let id = endpoint["id"].as_str().unwrap();
    let (status, secret) = restored
        .get(&format!("/v1/apps/{app}/endpoints/{id}/secret"))
        .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["secret"], endpoint["secret"]);
    let delivered = restored
        .deliveries(&format!("app_id={app}&status=delivered"))
        .await;
    let first: std::collections::HashSet<&str> = delivered
        .iter()
        .filter_map(|d| d["event_type"].as_str())
        .collect();
    assert!(
        delivered.len() >= 50,
        "{} delivered in the copy",
        delivered.len()
    );
    assert_eq!(first, ["t"].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_is_checked_and_runs_the_engine() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookline.toml");
    std::fs::write(
        &file,
        "# Small bodies only.\nmax_body_kib = 1\nmax_data_kib = 1\nretry-schedule = \"1s,2s\"\nallow_network = [\"127.0.0.0/8\"]\n",
    )
    .unwrap();
    let check = |file: &std::path::Path, env: &[(&str, &str)]| {
        let out = Command::new(hookline_bin())
            .args(["config", "check", "--config"])
            .arg(file)
            .env_remove("HOOKLINE_MAX_BODY_KIB")
            .env_remove("HOOKLINE_DATABASE_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Valid: each setting with where its value came from, the password masked.
    let (code, out, err) = check(
        &file,
        &[
            ("HOOKLINE_MAX_IN_FLIGHT", "77"),
            ("HOOKLINE_DATABASE_URL", "postgres://hl:s3cret@127.0.0.1/hl"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("max_body_kib")[1..], ["1", "file"]);
    assert_eq!(row("retry_schedule")[1..], ["1s,2s", "file"]);
    assert_eq!(row("max_in_flight")[1..], ["77", "env"]);
    assert_eq!(row("endpoint_max_in_flight")[1..], ["8", "default"]);
    assert!(!out.contains("s3cret"), "{out}");
    assert!(row("database_url")[1].contains("***"), "{out}");

    // Invalid: the key and what is wrong with it, exit 2.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "max_inflight = 3\n").unwrap();
    let (code, _, err) = check(&bad, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("unknown setting `max_inflight`") && err.contains("max_in_flight"),
        "{err}"
    );
    // A declared endpoint with a misspelt field: refused before any start.
    std::fs::write(
        &bad,
        "[[apps]]\nid = \"app_x\"\n[[apps.endpoints]]\nid = \"ep_x\"\nurl = \"http://127.0.0.1:9/\"\nfilter_type = [\"a\"]\n",
    )
    .unwrap();
    let (code, _, err) = check(&bad, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("app app_x endpoint ep_x") && err.contains("unknown field `filter_type`"),
        "{err}"
    );
    std::fs::write(&bad, "retry_schedule = \"soon\"\n").unwrap();
    let (code, _, err) = check(&bad, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("retry-schedule"), "{err}");

    // The engine runs with it: a body over the file's 1 KiB is refused.
    let mut options = hookline_tests::EngineOptions::default();
    options
        .args
        .extend(["--config".to_string(), file.to_str().unwrap().to_string()]);
    let engine = Engine::start_with(options).await;
    let app = engine.create_app("configured").await;
    let (status, out) = engine
        .post(
            &format!("/v1/events?app_id={app}"),
            &json!({ "id": "big", "source": "s", "type": "t", "data": { "blob": "x".repeat(2048) } }),
        )
        .await;
    assert_eq!(status, 413, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_endpoints_declared_in_the_config_file_are_applied_at_each_start() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("hookline.toml");
    let receiver_url = receiver.url.clone();
    let declare = |filters: &str| {
        format!(
            r#"
[[apps]]
id = "app_shop"
name = "Shop"

[[apps.endpoints]]
id = "ep_shop_orders"
url = "{}/orders"
filter_types = [{filters}]
retry_schedule = ["1s", "5s"]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[apps.endpoints]]
id = "ep_shop_chat"
url = "{}/chat"
plugin = "slack"
filter_types = ["order.*"]
"#,
            receiver_url, receiver_url
        )
    };
    std::fs::write(&file, declare(r#""order.*""#)).unwrap();
    let start = || {
        let mut options = hookline_tests::EngineOptions {
            data_dir: Some(data.path().to_path_buf()),
            ..Default::default()
        };
        options
            .args
            .extend(["--config".into(), file.to_str().unwrap().into()]);
        Engine::start_with(options)
    };

    // First start: created with the declared ids and secret.
    let mut engine = start().await;
    let (status, shown) = engine
        .get("/v1/apps/app_shop/endpoints/ep_shop_orders/secret")
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["secret"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    engine
        .emit(
            "app_shop",
            json!([{ "id": "o1", "source": "gitops", "type": "order.created", "data": {} }]),
        )
        .await;
    let mut paths: Vec<String> = Vec::new();
    for _ in 0..2 {
        paths.push(receiver.next(Duration::from_secs(30)).await.path);
    }
    paths.sort();
    assert_eq!(paths, ["/chat", "/orders"]);
    assert!(
        engine.log().contains("created=3 updated=0 unchanged=0"),
        "{}",
        engine.log()
    );
    engine.stop();

    // The same file again: nothing changes.
    let mut engine = start().await;
    assert!(
        engine.log().contains("created=0 updated=0 unchanged=3"),
        "{}",
        engine.log()
    );
    engine.stop();

    // A changed filter: that endpoint is updated, nothing is duplicated.
    std::fs::write(&file, declare(r#""order.*", "invoice.*""#)).unwrap();
    let engine = start().await;
    assert!(
        engine.log().contains("created=0 updated=1 unchanged=2"),
        "{}",
        engine.log()
    );
    let (_, orders) = engine
        .get("/v1/apps/app_shop/endpoints/ep_shop_orders")
        .await;
    assert_eq!(orders["filter_types"], json!(["order.*", "invoice.*"]));
    let (_, list) = engine.get("/v1/apps/app_shop/endpoints").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    drop(engine);

    // A declared endpoint the API would refuse stops the start, naming it.
    std::fs::write(
        &file,
        "[[apps]]\nid = \"app_shop\"\n[[apps.endpoints]]\nid = \"ep_bad\"\nurl = \"ftp://x\"\n",
    )
    .unwrap();
    let out = Command::new(hookline_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("HOOKLINE_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("app app_shop endpoint ep_bad: url:"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_moves_to_postgresql_with_its_keys_queue_and_history() {
    hookline_tests::on_backend!(crate::BACKEND);
    let Some(target) = hookline_tests::database::ScratchDatabase::create(module_path!()) else {
        return;
    };
    let mut live = Receiver::start().await;
    // The second endpoint's receiver is down at first: its deliveries fail
    // (one attempt each) and are recovered after the move.
    let mut later = Receiver::start().await;
    later.script(&[(503, "down"); 20]);
    let mut options = hookline_tests::EngineOptions::default();
    // Twenty failures in a row, each its own dead letter: no breaker.
    options.set("--breaker-threshold", "1000");
    let mut sqlite = Engine::start_with(options).await;
    let app = sqlite.create_app("moving").await;
    let delivered = sqlite
        .create_endpoint(&app, json!({ "url": format!("{}/hook", live.url) }))
        .await;
    let held = sqlite
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/hook", later.url), "retry_schedule": [] }),
        )
        .await;
    let events: Vec<serde_json::Value> = (0..20)
        .map(
            |i| json!({ "id": format!("m{i}"), "source": "move", "type": "t", "data": { "i": i } }),
        )
        .collect();
    sqlite.emit(&app, serde_json::Value::Array(events)).await;
    for _ in 0..20 {
        live.next(Duration::from_secs(30)).await;
    }
    let held_id = held["id"].as_str().unwrap();
    sqlite
        .wait_deliveries(&format!("endpoint_id={held_id}&status=failed"), 20)
        .await;
    later.drain();
    sqlite.stop();

    let from = sqlite.data_dir.join("hookline.db");
    let copy = |from: &std::path::Path| {
        Command::new(hookline_bin())
            .args(["copy-store", "--from"])
            .arg(from)
            .args(["--to", &target.url])
            .output()
            .unwrap()
    };
    let out = copy(&from);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("20 events, 40 deliveries, 40 attempts"),
        "{stdout}"
    );
    // Never over a store that holds something.
    let again = copy(&from);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already holds"), "{stderr}");

    // An engine on PostgreSQL: the same key, endpoints, secrets and history,
    // and the dead letters recover from there.
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(
        sqlite.data_dir.join("admin.key"),
        data.path().join("admin.key"),
    )
    .unwrap();
    let mut options = hookline_tests::EngineOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    options
        .args
        .extend(["--database-url".into(), target.url.clone()]);
    let postgres = Engine::start_with(options).await;
    let id = delivered["id"].as_str().unwrap();
    let (status, secret) = postgres
        .get(&format!("/v1/apps/{app}/endpoints/{id}/secret"))
        .await;
    assert_eq!(status, 200, "{secret}");
    assert_eq!(secret["secret"], delivered["secret"]);
    let done = postgres
        .deliveries(&format!("endpoint_id={id}&status=delivered"))
        .await;
    assert_eq!(done.len(), 20);
    let attempts = postgres.attempts(done[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let failed = postgres
        .deliveries(&format!("endpoint_id={held_id}&status=failed"))
        .await;
    assert_eq!(failed.len(), 20);
    let (status, out) = postgres
        .post(
            &format!("/v1/apps/{app}/endpoints/{held_id}/recover"),
            &json!({ "since": "2000-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, 202, "{out}");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(
            later.next(Duration::from_secs(30)).await.json()["data"]["i"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 20);
    drop(postgres);
}
