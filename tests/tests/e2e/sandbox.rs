//! The plugin sandbox against hostile guests built from `tests/guests/`:
//! each is loaded through hot reload and called through real deliveries and
//! endpoint creation while other tenants' events keep flowing.

use std::time::{Duration, Instant};

use hookline_tests::{Engine, EngineOptions, Receiver, eventually, guests, hookline_bin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes a plugin file the safe way: elsewhere, then renamed into place.
fn drop_plugin(engine: &Engine, file_name: &str, bytes: &[u8]) {
    let dir = engine.data_dir.join("plugins");
    let tmp = dir.join(format!(".{file_name}.part"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(file_name)).unwrap();
}

async fn plugins(engine: &Engine) -> Value {
    engine.get("/v1/plugins").await.1
}

/// The active entry of plugin `name`.
async fn active(engine: &Engine, name: &str) -> Option<Value> {
    plugins(engine).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["state"] == "active")
        .cloned()
}

async fn wait_active(engine: &Engine, name: &str, version: &str) -> Value {
    eventually(&format!("{name} {version} active"), WAIT, || async {
        active(engine, name)
            .await
            .filter(|p| p["version"] == version)
    })
    .await
}

/// The quarantine entry of `app` on the active `mischief`, once `check` holds.
async fn wait_quarantine(engine: &Engine, app: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("mischief's quarantine for {app}"),
        WAIT,
        || async {
            let plugin = active(engine, "mischief").await?;
            plugin["quarantine"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["app_id"] == app && check(q))
                .cloned()
        },
    )
    .await
}

/// Emits `n` plain events in batches and returns when the receiver has all
/// of them: the time it took.
async fn plain_run(
    engine: &Engine,
    app: &str,
    receiver: &mut Receiver,
    tag: &str,
    n: usize,
) -> Duration {
    let started = Instant::now();
    for chunk in 0..n.div_ceil(100) {
        let batch: Vec<Value> = (chunk * 100..((chunk + 1) * 100).min(n))
            .map(|i| json!({ "id": format!("{tag}-{i}"), "source": "s", "type": "plain" }))
            .collect();
        engine.emit(app, Value::Array(batch)).await;
    }
    for _ in 0..n {
        receiver.next(WAIT).await;
    }
    started.elapsed()
}

/// Every hostile kind of call, each for an app of its own, with the words its
/// failure must carry.
const HOSTILE: [(&str, &[&str]); 11] = [
    ("mischief.sleep", &["deadline"]),
    // Eight of these on two cores each get a fraction of a core: the
    // deadline may come before their CPU time runs out.
    ("mischief.spin-clock", &["ms of CPU time", "deadline"]),
    // The same for a loop: on a loaded machine the deadline can come before
    // its fuel runs out (the fuel limit alone is checked by
    // `plugin_test_reports_the_cost_and_fails_when_a_limit_is_broken` and
    // in hot_reload.rs).
    ("mischief.loop", &["CPU budget", "deadline"]),
    ("mischief.hog", &["memory limit"]),
    ("mischief.huge", &["memory limit"]),
    // Building 40 MiB inside the guest takes time: on a loaded machine the
    // deadline may stop it before the host refuses the size (the size cap
    // caps alone are checked by `plugin_test_reports_the_cost_and_fails_when_a_limit_is_broken`).
    ("mischief.big", &["more than", "deadline"]),
    ("mischief.error", &["memory limit"]),
    ("mischief.big-error", &["more than", "deadline"]),
    ("mischief.log", &["deadline", "CPU budget"]),
    ("mischief.panic", &["trapped"]),
    ("mischief.exit", &["exit("]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_while_other_tenants_keep_delivering() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options
        .set("--plugin-timeout", "300ms")
        .set("--plugin-quarantine-cooldown", "1h")
        .set("--retry-schedule", "");
    let engine = Engine::start_with(options).await;
    let mut plain_rx = Receiver::start().await;
    let hostile_rx = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_active(&engine, "mischief", "1.0.0").await;
    let plain = engine.create_app("plain").await;
    engine
        .create_endpoint(&plain, json!({ "url": plain_rx.url }))
        .await;

    // Without the hostile plugin at work.
    const PLAIN: usize = 1500;
    let quiet = plain_run(&engine, &plain, &mut plain_rx, "quiet", PLAIN).await;

    // Each hostile kind in an app of its own; the sleeper sends 300 events
    // (every one of them would hold a slot for the whole deadline).
    let mut apps = Vec::new();
    for (kind, _) in HOSTILE {
        let app = engine.create_app(kind).await;
        engine
            .create_endpoint(&app, json!({ "url": hostile_rx.url, "plugin": "mischief" }))
            .await;
        apps.push(app);
    }
    for ((kind, _), app) in HOSTILE.iter().zip(&apps) {
        let n: usize = if *kind == "mischief.sleep" { 300 } else { 8 };
        for chunk in 0..n.div_ceil(100) {
            let batch: Vec<Value> = (chunk * 100..((chunk + 1) * 100).min(n))
                .map(|i| json!({ "id": format!("{kind}-{i}"), "source": "s", "type": kind }))
                .collect();
            engine.emit(app, Value::Array(batch)).await;
        }
    }
    let busy = plain_run(&engine, &plain, &mut plain_rx, "busy", PLAIN).await;
    // A generous floor: at least half the throughput of the quiet run.
    assert!(
        busy <= quiet * 2 + Duration::from_secs(1),
        "{PLAIN} plain deliveries took {busy:?} beside the hostile plugin, {quiet:?} without it"
    );

    // Each hostile kind failed with its own clear reason, and is quarantined
    // for its own app only.
    for ((kind, words), app) in HOSTILE.iter().zip(&apps) {
        let failed = engine
            .wait_deliveries(&format!("app_id={app}&status=failed"), 1)
            .await;
        let attempts = engine.attempts(failed[0]["id"].as_str().unwrap()).await;
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(
            words.iter().any(|w| error.contains(w)),
            "{kind}: {error} (expected one of {words:?})"
        );
        assert!(
            error.len() < 2048,
            "{kind}: a kept error is cut: {} bytes",
            error.len()
        );
        let q = wait_quarantine(&engine, app, |q| q["state"] == "open").await;
        assert!(q["faults"].as_u64().unwrap() >= 5, "{kind}: {q}");
        assert!(
            words
                .iter()
                .any(|w| q["reason"].as_str().unwrap().contains(w)),
            "{kind}: {q}"
        );
    }
    let mischief = active(&engine, "mischief").await.unwrap();
    assert_eq!(
        mischief["quarantined_for"].as_array().unwrap().len(),
        HOSTILE.len(),
        "{mischief}"
    );
    // The same in /metrics: a quarantine per app, five faults or more each.
    let metrics = reqwest::get(format!("{}/metrics", engine.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{plugin=\"mischief\"}}")))
            .and_then(|l| l.rsplit_once(' '))
            .map_or(0.0, |(_, v)| v.parse().unwrap())
    };
    assert_eq!(
        value("hookline_plugin_quarantines_total"),
        HOSTILE.len() as f64,
        "{metrics}"
    );
    assert!(
        value("hookline_plugin_faults_total") >= 5.0 * HOSTILE.len() as f64,
        "{metrics}"
    );
    assert!(
        mischief["quarantine"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["app_id"] != plain.as_str()),
        "{mischief}"
    );
    // The sleeper's remaining events wait for a probe, not counted as attempts.
    let held = engine
        .wait_deliveries(&format!("app_id={}&status=held", apps[0]), 100)
        .await;
    assert!(
        held.iter()
            .all(|d| d["attempts"] == 0 && d["held_for"] == "plugin")
    );
    // Nothing of what the hostile calls made was sent.
    let mut hostile_rx = hostile_rx;
    assert!(hostile_rx.drain().is_empty());

    // The sandbox's budget is on show, and nothing is left running.
    let sandbox = eventually("the hostile calls to end", WAIT, || async {
        let s = plugins(&engine).await["sandbox"].clone();
        (s["calls_in_progress"] == 0).then_some(s)
    })
    .await;
    assert_eq!(sandbox["memory_budget_bytes"], 4u64 << 30, "{sandbox}");
    assert_eq!(sandbox["instance_slots"], 64, "{sandbox}");
    assert!(
        sandbox["warm_instances"].as_u64().unwrap() <= 32,
        "{sandbox}"
    );

    // The engine still stops within its grace.
    let mut engine = engine;
    let stopped = Instant::now();
    engine.stop();
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopped.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_validate_config_answers_within_the_api_deadline() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let receiver = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_active(&engine, "mischief", "1.0.0").await;
    let app = engine.create_app("validate").await;
    for (mode, words) in [
        ("sleep", "deadline of 250 ms"),
        ("loop", "CPU budget"),
        ("panic", "trapped"),
    ] {
        let started = Instant::now();
        let (status, body) = engine
            .post(
                &format!("/v1/apps/{app}/endpoints"),
                &json!({ "url": receiver.url, "plugin": "mischief", "plugin_config": { "mode": mode } }),
            )
            .await;
        assert_eq!(status, 422, "{mode}: {body}");
        assert_eq!(body["error"]["field"], "plugin", "{mode}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{mode}: {message}");
        // Bounded by the API's deadline, not by the plugin.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode}: {:?}",
            started.elapsed()
        );
    }
    // A sane config is still accepted.
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "mischief" }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_version_is_refused_and_the_good_one_keeps_serving() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_active(&engine, "mischief", "1.0.0").await;
    let app = engine.create_app("versions").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "mischief" }))
        .await;

    let bad: [(&str, Vec<u8>, &str); 4] = [
        ("info traps", read(guests::INFO_TRAP), "info call failed"),
        (
            "sample transform traps",
            read(guests::SAMPLE_TRAP),
            "sample transform failed: plugin failed: trapped",
        ),
        (
            "another world",
            read(guests::OTHER_WORLD),
            "hookline:plugin@0.1.0",
        ),
        (
            "garbage",
            b"\0asm garbage that is no component".to_vec(),
            "not a valid WebAssembly component",
        ),
    ];
    for (i, (what, bytes, words)) in bad.iter().enumerate() {
        // The same file name: an upgrade gone wrong.
        drop_plugin(&engine, "mischief.wasm", bytes);
        let refused = eventually(&format!("{what} to be refused"), WAIT, || async {
            plugins(&engine).await["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| {
                    p["state"] == "refused"
                        && p["last_error"].as_str().is_some_and(|e| e.contains(words))
                })
                .cloned()
        })
        .await;
        assert!(refused["file"] == "mischief.wasm", "{refused}");
        // The good version still serves.
        let serving = active(&engine, "mischief").await.unwrap();
        assert_eq!(serving["version"], "1.0.0", "{what}: {serving}");
        assert_eq!(serving["sdk_version"], env!("CARGO_PKG_VERSION"));
        engine
            .emit(
                &app,
                json!({ "id": format!("v{i}"), "source": "s", "type": "t" }),
            )
            .await;
        assert_eq!(
            receiver.next(WAIT).await.body.as_ref(),
            format!("ok v{i}").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_half_opens_after_the_cooldown_and_a_good_probe_closes_it() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options
        .set("--plugin-quarantine-after", "3")
        .set("--plugin-quarantine-cooldown", "2s")
        .set("--retry-schedule", "");
    let engine = Engine::start_with(options).await;
    let mut receiver = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_active(&engine, "mischief", "1.0.0").await;
    let faulty = engine.create_app("faulty").await;
    let other = engine.create_app("other").await;
    for app in [&faulty, &other] {
        engine
            .create_endpoint(app, json!({ "url": receiver.url, "plugin": "mischief" }))
            .await;
    }

    // Three traps for one app: its quarantine opens.
    for i in 0..3 {
        engine
            .emit(
                &faulty,
                json!({ "id": format!("p{i}"), "source": "s", "type": "mischief.panic" }),
            )
            .await;
    }
    let q = wait_quarantine(&engine, &faulty, |q| q["state"] == "open").await;
    assert!(q["reason"].as_str().unwrap().contains("trapped"), "{q}");
    assert!(q["probe_at"].is_string(), "{q}");

    // While it is open, the faulty app's next event waits (no attempt) ...
    let calm = engine
        .emit(
            &faulty,
            json!({ "id": "calm", "source": "s", "type": "mischief.calm" }),
        )
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let held = engine
        .wait_deliveries(&format!("event_id={calm}&status=held"), 1)
        .await;
    assert_eq!(held[0]["attempts"], 0);
    assert!(
        held[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("quarantined"),
        "{}",
        held[0]
    );
    // ... and another app using the same plugin is not affected.
    engine
        .emit(&other, json!({ "id": "other", "source": "s", "type": "t" }))
        .await;
    assert_eq!(receiver.next(WAIT).await.body.as_ref(), b"ok other");

    // After the cool-down the waiting delivery is the probe; it succeeds and
    // closes the breaker.
    assert_eq!(receiver.next(WAIT).await.body.as_ref(), b"ok calm");
    let delivered = engine
        .wait_deliveries(&format!("event_id={calm}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["attempts"], 1);
    let q = wait_quarantine(&engine, &faulty, |q| q["state"] == "closed").await;
    assert_eq!(q["opened"], 1, "{q}");
    assert_eq!(q["consecutive_faults"], 0, "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_or_copying_the_file_again_lifts_a_quarantine() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options
        .set("--plugin-quarantine-after", "2")
        .set("--plugin-quarantine-cooldown", "1h")
        .set("--retry-schedule", "");
    let engine = Engine::start_with(options).await;
    let mut receiver = Receiver::start().await;
    let bytes = read(guests::MISCHIEF);
    drop_plugin(&engine, "mischief.wasm", &bytes);
    wait_active(&engine, "mischief", "1.0.0").await;
    let app = engine.create_app("lift").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "mischief" }))
        .await;

    for round in ["operator", "copy"] {
        for i in 0..2 {
            engine
                .emit(
                    &app,
                    json!({ "id": format!("{round}-p{i}"), "source": "s", "type": "mischief.exit" }),
                )
                .await;
        }
        wait_quarantine(&engine, &app, |q| q["state"] == "open").await;
        let calm = engine
            .emit(
                &app,
                json!({ "id": format!("{round}-calm"), "source": "s", "type": "t" }),
            )
            .await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        engine
            .wait_deliveries(&format!("event_id={calm}&status=held"), 1)
            .await;
        match round {
            "operator" => {
                let (status, body) = engine
                    .post("/v1/plugins/mischief/lift", &json!({ "app_id": app }))
                    .await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["lifted_for"], json!([app]));
            }
            _ => drop_plugin(&engine, "mischief.wasm", &bytes),
        }
        // The waiting delivery goes at once, long before the hour's cool-down.
        assert_eq!(
            receiver.next(WAIT).await.body.as_ref(),
            format!("ok {round}-calm").as_bytes()
        );
        wait_quarantine(&engine, &app, |q| q["state"] == "closed").await;
    }
    let (status, body) = engine.post("/v1/plugins/nope/lift", &json!({})).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_a_call_leaves_for_one_app_is_never_seen_by_another() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_active(&engine, "mischief", "1.0.0").await;
    let a = engine.create_app("tenant a").await;
    let b = engine.create_app("tenant b").await;
    for app in [&a, &b] {
        engine
            .create_endpoint(app, json!({ "url": receiver.url, "plugin": "mischief" }))
            .await;
    }
    // One at a time, alternating, so that a shared instance would carry each
    // call's state straight into the other tenant's next call.
    let mut reused = 0;
    for i in 0..20 {
        for app in [&a, &b] {
            engine
                .emit(
                    app,
                    json!({ "id": format!("r{i}"), "source": "s", "type": "mischief.remember" }),
                )
                .await;
            let body = String::from_utf8(receiver.next(WAIT).await.body.to_vec()).unwrap();
            let (this, previous) = body
                .strip_prefix("app ")
                .and_then(|rest| rest.split_once(" after "))
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(this, app.as_str());
            assert!(
                previous == "nothing" || previous == app.as_str(),
                "a call for {app} saw state from {previous}"
            );
            if previous == app.as_str() {
                reused += 1;
            }
        }
    }
    // Warm instances are reused within an app (the guest does keep state),
    // so the check above could have caught a shared one.
    assert!(reused > 0, "no warm instance was ever reused");
}

/// Runs `hookline plugin test` on the mischief guest with an event of `ty`.
fn plugin_test(ty: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({ "specversion": "1.0", "id": "e1", "source": "s", "type": ty }).to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(hookline_bin())
        .args(["plugin", "test", guests::MISCHIEF, "--event"])
        .arg(&event)
        .args(extra)
        .env("HOOKLINE_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_test_reports_the_cost_and_fails_when_a_limit_is_broken() {
    hookline_tests::on_backend!(crate::BACKEND);
    // A call within the limits: the requests, the verdict and the cost.
    let (code, out, err) = plugin_test(
        "order.created",
        &[
            "--response-status",
            "503",
            "--response-header",
            "retry-after: 7",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("sdk:         {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("ok e1"), "{out}");
    assert!(
        out.contains("verdict on a 503 answer: standard rules: retry after 7 s"),
        "{out}"
    );
    for line in [
        "transform (fresh)",
        "transform (warm)",
        "interpret-response",
        "bytes out",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(out.contains("fuel") && out.contains("of 64 MiB"), "{out}");

    // Each budget, broken: exit status 1 and the limit named.
    for (ty, extra, words) in [
        ("mischief.loop", &[][..], "CPU budget of 500000000 fuel"),
        (
            "mischief.spin-clock",
            &["--timeout", "10s"][..],
            "200 ms of CPU time",
        ),
        (
            "mischief.sleep",
            &["--timeout", "200ms"][..],
            "deadline of 200 ms",
        ),
        ("mischief.hog", &[][..], "memory limit of 64 MiB"),
        ("mischief.big", &[][..], "more than"),
        ("mischief.big-error", &[][..], "more than"),
    ] {
        let (code, out, err) = plugin_test(ty, extra);
        assert_eq!(code, Some(1), "{ty}: {out}{err}");
        assert!(err.contains(words), "{ty}: {err}");
    }
}
