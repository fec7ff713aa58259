//! Delivery reliability, proven by breaking things on purpose: every kind of
//! bad answer, a black-holed endpoint beside a healthy one, a breaker that
//! opens and closes, auto-disable with an operational event sent through
//! Slack, recovery of dead letters, ordered delivery, and retention.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookline_tests::{Engine, EngineOptions, Fault, FaultReceiver, Received, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The test defaults with these `--flag value` pairs set.
fn options(pairs: &[&str]) -> EngineOptions {
    let mut o = EngineOptions::default();
    for pair in pairs.chunks(2) {
        o.set(pair[0], pair[1]);
    }
    o
}

fn event(id: &str, ty: &str) -> Value {
    json!({ "id": id, "source": "test", "type": ty, "data": { "n": id } })
}

/// Every delivery matching `query`, through all pages.
async fn all_deliveries(engine: &Engine, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = engine
            .get(&format!("/v1/deliveries?{query}&limit=250{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
}

async fn endpoint(engine: &Engine, app: &str, id: &str) -> Value {
    let (status, body) = engine.get(&format!("/v1/apps/{app}/endpoints/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// One endpoint per fault: its first request meets the fault, the next is
/// answered 200. Each must end delivered on its second attempt, with the
/// first attempt recorded as the fault it met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_answer_is_retried_and_recorded() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start_with(options(&[
        "--request-timeout",
        "700ms",
        "--connect-timeout",
        "700ms",
        "--retry-schedule",
        "200ms,200ms,200ms",
    ]))
    .await;
    let app = engine.create_app("faults").await;
    let mut elsewhere = FaultReceiver::start(Fault::ok()).await;
    let cases: Vec<(&str, Fault, Option<i64>, &str)> = vec![
        ("500", Fault::status(500), Some(500), "500"),
        (
            "503-retry-after",
            Fault::retry_after(503, 1),
            Some(503),
            "retry after 1 s",
        ),
        ("401", Fault::status(401), Some(401), "401"),
        ("400", Fault::status(400), Some(400), "400"),
        (
            "redirect",
            Fault::redirect(&format!("{}/elsewhere", elsewhere.url)),
            Some(307),
            "307",
        ),
        (
            "slow",
            Fault::Slow(Duration::from_secs(3)),
            None,
            "timed out",
        ),
        ("reset", Fault::Reset, None, "request failed"),
        ("black-hole", Fault::BlackHole, None, "timed out"),
        ("discord-429", Fault::discord_429(0.5), Some(429), "429"),
    ];
    let mut receivers = Vec::new();
    for (name, fault, _, _) in &cases {
        let receiver = FaultReceiver::start(Fault::ok()).await;
        receiver.script([fault.clone()]);
        engine
            .create_endpoint(
                &app,
                json!({ "url": receiver.url, "filter_types": [format!("fault.{name}")] }),
            )
            .await;
        receivers.push(receiver);
    }
    // A 100 MiB answer: read only as far as the cap, and delivered.
    let mut huge = FaultReceiver::start(Fault::HugeBody(100 << 20)).await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": huge.url, "filter_types": ["fault.huge"] }),
        )
        .await;
    // A receiver that is down for good: its delivery is a dead letter after
    // the whole schedule, with each attempt recorded.
    let mut down = FaultReceiver::start(Fault::status(502)).await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": down.url, "filter_types": ["fault.down"] }),
        )
        .await;

    let mut batch: Vec<Value> = cases
        .iter()
        .map(|(name, ..)| event(&format!("e-{name}"), &format!("fault.{name}")))
        .collect();
    batch.push(event("e-huge", "fault.huge"));
    batch.push(event("e-down", "fault.down"));
    engine.emit(&app, Value::Array(batch)).await;

    for ((name, _, status, words), receiver) in cases.iter().zip(receivers.iter_mut()) {
        let first = receiver.next(WAIT).await;
        let second = receiver.next(WAIT).await;
        assert_eq!(
            first.header("webhook-id"),
            second.header("webhook-id"),
            "{name}: the retry is the same message"
        );
        let id = first.header("webhook-id").to_string();
        let delivery = eventually(&format!("{name} delivered"), WAIT, || async {
            let (_, d) = engine.get(&format!("/v1/deliveries/{id}")).await;
            (d["status"] == "delivered").then_some(d)
        })
        .await;
        assert_eq!(delivery["attempts"], 2, "{name}: {delivery}");
        let attempts = engine.attempts(&id).await;
        assert_eq!(attempts[0]["outcome"], "retry", "{name}: {attempts:?}");
        assert_eq!(attempts[1]["outcome"], "success", "{name}: {attempts:?}");
        assert_eq!(
            attempts[0]["status_code"].as_i64(),
            *status,
            "{name}: {attempts:?}"
        );
        let error = attempts[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(words),
            "{name}: {error:?} should say {words:?}"
        );
        assert!(
            !error.contains("127.0.0.1"),
            "{name}: errors never carry the endpoint URL: {error}"
        );
        if *name == "503-retry-after" {
            let gap = second.at - first.at;
            assert!(
                gap >= Duration::from_millis(950),
                "Retry-After honoured: {gap:?}"
            );
        }
    }
    assert!(elsewhere.drain().is_empty(), "a redirect is never followed");

    let first = huge.next(WAIT).await;
    let id = first.header("webhook-id").to_string();
    let delivered = eventually("the huge answer delivered", WAIT, || async {
        let (_, d) = engine.get(&format!("/v1/deliveries/{id}")).await;
        (d["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered["attempts"], 1);
    let attempts = engine.attempts(&id).await;
    let excerpt = attempts[0]["response_excerpt"].as_str().unwrap_or_default();
    assert!(excerpt.len() <= 4096, "{} bytes kept", excerpt.len());

    for _ in 0..4 {
        down.next(WAIT).await;
    }
    let failed = engine
        .wait_deliveries(&format!("app_id={app}&status=failed"), 1)
        .await;
    assert_eq!(failed[0]["attempts"], 4);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 4 attempts"),
        "{failed:?}"
    );
    let attempts = engine.attempts(failed[0]["id"].as_str().unwrap()).await;
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "failed"]);
    assert!(down.drain().is_empty(), "no attempt after the last");
}

/// A black-holed endpoint (accepts, never answers) with thousands of
/// deliveries queued must not delay a healthy endpoint beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_does_not_delay_a_healthy_one() {
    hookline_tests::on_backend!(crate::BACKEND);
    const HEALTHY: usize = 2000;
    const STUCK: usize = 3000;
    let engine = Engine::start_with(options(&[
        "--request-timeout",
        "20s",
        "--breaker-threshold",
        "1000000",
    ]))
    .await;
    let app = engine.create_app("isolation").await;
    let mut healthy = FaultReceiver::start(Fault::ok()).await;
    let hole = FaultReceiver::start(Fault::BlackHole).await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": healthy.url, "filter_types": ["ok.*"] }),
        )
        .await;

    // Alone.
    let started = Instant::now();
    emit_all(&engine, &app, "alone", "ok.alone", HEALTHY).await;
    receive_all(&mut healthy, HEALTHY).await;
    let alone = started.elapsed();

    // Beside a black hole with thousands of deliveries waiting for it.
    engine
        .create_endpoint(
            &app,
            json!({ "url": hole.url, "filter_types": ["stuck.*"] }),
        )
        .await;
    emit_all(&engine, &app, "stuck", "stuck.x", STUCK).await;
    eventually("the black hole holding requests", WAIT, || async {
        (hole.count() >= 1).then_some(())
    })
    .await;
    let started = Instant::now();
    emit_all(&engine, &app, "beside", "ok.beside", HEALTHY).await;
    receive_all(&mut healthy, HEALTHY).await;
    let beside = started.elapsed();
    println!(
        "healthy endpoint, {HEALTHY} events: alone {alone:?}, beside a black hole with {STUCK} queued {beside:?}; the hole holds {} requests",
        hole.count()
    );
    assert!(
        beside <= alone * 5 + Duration::from_secs(5),
        "beside a black hole {beside:?}, alone {alone:?}"
    );
    assert!(
        hole.count() <= 8,
        "the black hole holds only its own slots: {}",
        hole.count()
    );
}

/// Emits `n` events of type `ty`, 100 to a request.
async fn emit_all(engine: &Engine, app: &str, prefix: &str, ty: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| event(&format!("{prefix}-{i}"), ty))
            .collect();
        engine.emit(app, Value::Array(batch)).await;
    }
}

/// Waits until `n` distinct events have arrived.
async fn receive_all(receiver: &mut FaultReceiver, n: usize) {
    let mut ids = std::collections::HashSet::new();
    while ids.len() < n {
        ids.insert(receiver.next(Duration::from_secs(120)).await.json()["id"].clone());
    }
}

/// A delivery of several requests whose second request fails resends only
/// what was not accepted, each request with its own stable webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_resends_only_the_requests_not_yet_accepted() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut o = options(&[]);
    o.plugin_files.push(hookline_tests::guests::FAN.into());
    let engine = Engine::start_with(o).await;
    let app = engine.create_app("fan").await;
    let mut receiver = FaultReceiver::start(Fault::ok()).await;
    receiver.script([Fault::ok(), Fault::status(500)]);
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "fan" }))
        .await;
    engine.emit(&app, event("m1", "t")).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = receiver.next(WAIT).await;
        got.push((
            r.json()["part"].as_i64().unwrap(),
            r.header("webhook-id").to_string(),
        ));
    }
    let parts: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        parts,
        [0, 1, 1, 2],
        "part 0 was accepted and is not sent again"
    );
    let id = &got[0].1;
    assert_eq!(got[1].1, format!("{id}_1"));
    assert_eq!(
        got[2].1,
        format!("{id}_1"),
        "the resent request keeps its id"
    );
    assert_eq!(got[3].1, format!("{id}_2"));
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["attempts"], 2);
    assert!(receiver.drain().is_empty());
}

/// A rate-limited endpoint receives at its rate, and a Discord-style 429
/// pauses only that endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_429s_slow_only_their_endpoint() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("rates").await;
    let mut limited = FaultReceiver::start(Fault::ok()).await;
    let mut paused = FaultReceiver::start(Fault::ok()).await;
    paused.script([Fault::discord_429(1.5)]);
    let mut free = FaultReceiver::start(Fault::ok()).await;
    engine
        .create_endpoint(
            &app,
            json!({
                "url": limited.url,
                "filter_types": ["limited"],
                "rate_limit": { "per_second": 10, "burst": 1 },
            }),
        )
        .await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": paused.url, "filter_types": ["paused"], "max_in_flight": 1 }),
        )
        .await;
    engine
        .create_endpoint(&app, json!({ "url": free.url, "filter_types": ["free"] }))
        .await;
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.push(event(&format!("l{i}"), "limited"));
        batch.push(event(&format!("f{i}"), "free"));
    }
    for i in 0..5 {
        batch.push(event(&format!("p{i}"), "paused"));
    }
    engine.emit(&app, Value::Array(batch)).await;

    let mut at = Vec::new();
    for _ in 0..20 {
        at.push(limited.next(WAIT).await.at);
    }
    let span = at[19] - at[0];
    assert!(
        span >= Duration::from_millis(1700),
        "20 requests at 10/s with a burst of 1 take about 1.9 s: {span:?}"
    );
    let mut free_at = Vec::new();
    for _ in 0..20 {
        free_at.push(free.next(WAIT).await.at);
    }
    assert!(
        free_at[19] - free_at[0] < span,
        "the unlimited endpoint is not held to another's rate"
    );
    let first = paused.next(WAIT).await;
    let second = paused.next(WAIT).await;
    assert!(
        second.at - first.at >= Duration::from_millis(1400),
        "after a 429 with retry_after 1.5 s, the endpoint waits: {:?}",
        second.at - first.at
    );
}

/// An endpoint that is down stops getting requests once its breaker opens,
/// gets one probe per cool-down, and receives everything it missed when it
/// is back, with no attempts burned while the breaker was open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_probes_and_closes_without_burning_attempts() {
    hookline_tests::on_backend!(crate::BACKEND);
    const EVENTS: usize = 30;
    let engine = Engine::start_with(options(&[
        "--breaker-threshold",
        "3",
        "--breaker-cooldown",
        "400ms",
        "--breaker-max-cooldown",
        "800ms",
        "--endpoint-max-in-flight",
        "1",
    ]))
    .await;
    let app = engine.create_app("breaker").await;
    let mut receiver = FaultReceiver::start(Fault::status(503)).await;
    let ep = engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let ep = ep["id"].as_str().unwrap().to_string();
    let batch: Vec<Value> = (0..EVENTS).map(|i| event(&format!("b{i}"), "t")).collect();
    engine.emit(&app, Value::Array(batch)).await;

    let open = eventually("the breaker open", WAIT, || async {
        let e = endpoint(&engine, &app, &ep).await;
        (e["health"]["breaker"] == "open").then_some(e)
    })
    .await;
    assert!(
        open["health"]["consecutive_failures"].as_i64().unwrap() >= 3,
        "{open}"
    );
    assert!(open["health"]["breaker_retry_at"].is_string(), "{open}");

    // Down for three seconds: only probes get through. The sleep is the
    // behaviour under test (a window of time), not a wait for a signal.
    let before = receiver.count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = receiver.count() - before;
    assert!(
        (1..=8).contains(&during),
        "while open, only probes are sent (one per cool-down of 0.4–0.8 s): {during} in 3 s"
    );

    // Back up: the next probe closes the breaker and everything goes.
    receiver.set_default(Fault::ok());
    let delivered = eventually("every delivery delivered", WAIT, || async {
        let d = all_deliveries(&engine, &format!("app_id={app}&status=delivered")).await;
        (d.len() == EVENTS).then_some(d)
    })
    .await;
    let closed = endpoint(&engine, &app, &ep).await;
    assert_eq!(closed["health"]["breaker"], "closed", "{closed}");
    assert_eq!(closed["health"]["consecutive_failures"], 0, "{closed}");
    let attempts: i64 = delivered
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .sum();
    let sent = receiver.drain().len();
    assert_eq!(
        attempts, sent as i64,
        "every request is an attempt, and only those"
    );
    // After it came back: each delivery once, plus at most the probe that
    // was in flight when it did. Nothing was spent on retries while open.
    let after = sent - before - during;
    assert!(
        after <= EVENTS + 2,
        "{after} requests after the window for {EVENTS} deliveries ({before} before it, {during} during it): attempts were burned while open"
    );
}

/// An endpoint failing past the window is disabled; `failing` and
/// `disabled` arrive at an operator's endpoint that uses the `slack` plugin;
/// enabling it again delivers what was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_disable_notifies_the_operator_through_slack_and_enabling_resumes() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start_with(options(&[
        "--breaker-threshold",
        "2",
        "--breaker-cooldown",
        "200ms",
        "--breaker-max-cooldown",
        "300ms",
        "--disable-after",
        "1500ms",
    ]))
    .await;
    // The operator routes operational events to "Slack" (imitated on loopback).
    let mut slack = FaultReceiver::start(Fault::ok()).await;
    engine
        .create_endpoint(
            "app_system",
            json!({
                "url": format!("{}/services/T000/B000/XXXX", slack.url),
                "plugin": "slack",
                "filter_types": ["hookline.endpoint.*"],
            }),
        )
        .await;
    let app = engine.create_app("flaky").await;
    let mut receiver = FaultReceiver::start(Fault::status(500)).await;
    let ep = engine
        .create_endpoint(
            &app,
            json!({ "url": receiver.url, "description": "orders hook" }),
        )
        .await;
    let ep = ep["id"].as_str().unwrap().to_string();
    engine
        .emit(
            &app,
            Value::Array((0..5).map(|i| event(&format!("f{i}"), "t")).collect()),
        )
        .await;

    let mut seen = Vec::new();
    let disabled_msg = loop {
        let Some(message) = slack.next_within(WAIT).await else {
            panic!(
                "no hookline.endpoint.disabled at the operator's Slack; got {seen:?}\n{}",
                engine.log()
            );
        };
        let text = String::from_utf8_lossy(&message.body).to_string();
        // The Slack plugin titles an event by its humanized type.
        if text.contains("Endpoint disabled") {
            break message;
        }
        seen.push(text);
    };
    assert!(
        seen.iter().any(|t| t.contains("Endpoint failing")),
        "failing came first: {seen:?}"
    );
    let body = disabled_msg.json();
    assert!(
        body["blocks"].is_array(),
        "a Slack Block Kit message: {body}"
    );
    let text = disabled_msg.body.clone();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains(&ep), "names the endpoint: {text}");
    assert!(
        !text.contains(&receiver.url),
        "never the endpoint's URL: {text}"
    );

    let e = endpoint(&engine, &app, &ep).await;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabled_reason"].as_str().unwrap().contains("failing"),
        "{e}"
    );
    let held = all_deliveries(&engine, &format!("app_id={app}&status=held")).await;
    assert_eq!(held.len(), 5, "disabling holds, never fails: {held:?}");
    let failed = all_deliveries(&engine, &format!("app_id={app}&status=failed")).await;
    assert!(failed.is_empty(), "{failed:?}");

    // The endpoint is fixed; the operator enables it.
    receiver.set_default(Fault::ok());
    receiver.drain();
    let (status, e) = engine
        .patch(
            &format!("/v1/apps/{app}/endpoints/{ep}"),
            &json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["health"]["breaker"], "closed");
    let delivered = eventually("the held deliveries delivered", WAIT, || async {
        let d = all_deliveries(&engine, &format!("app_id={app}&status=delivered")).await;
        (d.len() == 5).then_some(d)
    })
    .await;
    let mut ids: Vec<&str> = delivered
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let mut got: Vec<String> = receiver
        .drain()
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    ids.sort();
    got.sort();
    got.dedup();
    assert_eq!(ids, got);
}

/// 1,000 dead letters, an endpoint recovery, and all 1,000 arrive, each with
/// its original `webhook-id`; the operation reports its progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_an_endpoint_delivers_its_dead_letters_with_their_ids() {
    hookline_tests::on_backend!(crate::BACKEND);
    const N: usize = 1000;
    let engine = Engine::start_with(options(&[
        "--retry-schedule",
        "",
        "--breaker-threshold",
        "1000000",
    ]))
    .await;
    let app = engine.create_app("recover").await;
    let mut receiver = FaultReceiver::start(Fault::status(500)).await;
    let ep = engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let ep = ep["id"].as_str().unwrap().to_string();
    let since = chrono_now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
        let batch: Vec<Value> = chunk.iter().map(|i| event(&format!("r{i}"), "t")).collect();
        engine.emit(&app, Value::Array(batch)).await;
    }
    let failed = eventually("1,000 dead letters", Duration::from_secs(60), || async {
        let d = all_deliveries(&engine, &format!("app_id={app}&status=failed")).await;
        (d.len() == N).then_some(d)
    })
    .await;
    receiver.drain();

    receiver.set_default(Fault::ok());
    let (status, op) = engine
        .post(
            &format!("/v1/apps/{app}/endpoints/{ep}/recover"),
            &json!({ "since": since }),
        )
        .await;
    assert_eq!(status, 202, "{op}");
    assert_eq!(op["total"], N, "{op}");
    let op_id = op["id"].as_str().unwrap().to_string();
    let done = eventually("the recovery done", Duration::from_secs(60), || async {
        let (_, op) = engine.get(&format!("/v1/operations/{op_id}")).await;
        (op["state"] == "done").then_some(op)
    })
    .await;
    assert_eq!(done["done"], N, "{done}");

    let mut got = std::collections::HashSet::new();
    while got.len() < N {
        let r = receiver.next(Duration::from_secs(60)).await;
        got.insert(r.header("webhook-id").to_string());
    }
    let want: std::collections::HashSet<String> = failed
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want, "each with its original webhook-id");
    let (_, ops) = engine.get(&format!("/v1/apps/{app}/operations")).await;
    assert_eq!(ops["data"][0]["kind"], "recover", "{ops}");
}

/// Retrying one dead letter sends it now with a fresh schedule; replaying an
/// event fans it out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_one_and_replay_an_event() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start_with(options(&["--retry-schedule", ""])).await;
    let app = engine.create_app("retry").await;
    let mut receiver = FaultReceiver::start(Fault::ok()).await;
    receiver.script([Fault::status(500)]);
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let accepted = engine.emit(&app, event("one", "t")).await;
    let failed = engine
        .wait_deliveries(&format!("app_id={app}&status=failed"), 1)
        .await;
    let id = failed[0]["id"].as_str().unwrap().to_string();
    let (status, out) = engine
        .post(&format!("/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["operation"]["kind"], "retry");
    receiver.next(WAIT).await;
    let again = receiver.next(WAIT).await;
    assert_eq!(again.header("webhook-id"), id);
    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    let (status, out) = engine
        .post(&format!("/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 409, "a delivered delivery is not retried: {out}");

    let event_id = accepted[0]["id"].as_str().unwrap();
    let (status, out) = engine
        .post(&format!("/v1/events/{event_id}/replay"), &json!({}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["deliveries"], 1, "{out}");
    let replayed = receiver.next(WAIT).await;
    assert_ne!(
        replayed.header("webhook-id"),
        id,
        "a replay is a new delivery"
    );
    assert_eq!(replayed.json()["id"], "one");
}

/// 1,000 events to an ordered endpoint that fails every 7th request once
/// arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_endpoint_receives_in_order_through_failures() {
    hookline_tests::on_backend!(crate::BACKEND);
    const N: usize = 1000;
    let engine = Engine::start_with(options(&["--retry-schedule", "10ms,10ms,10ms"])).await;
    let app = engine.create_app("ordered").await;
    let mut receiver = FaultReceiver::start_with_rule(|i, _| {
        if i % 7 == 6 {
            Fault::status(500)
        } else {
            Fault::ok()
        }
    })
    .await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "ordered": true }))
        .await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk.iter().map(|i| event(&format!("{i}"), "t")).collect();
        engine.emit(&app, Value::Array(batch)).await;
    }
    let mut accepted_order = Vec::new();
    let mut index = 0usize;
    let mut in_flight_ids: HashMap<String, usize> = HashMap::new();
    while accepted_order.len() < N {
        let r: Received = receiver.next(Duration::from_secs(60)).await;
        let n: usize = r.json()["id"].as_str().unwrap().parse().unwrap();
        *in_flight_ids
            .entry(r.header("webhook-id").to_string())
            .or_default() += 1;
        if index % 7 != 6 {
            accepted_order.push(n);
        }
        index += 1;
    }
    let expected: Vec<usize> = (0..N).collect();
    assert_eq!(accepted_order, expected, "accepted in event order");
    assert!(
        in_flight_ids.values().all(|&n| n <= 2),
        "each failed at most once"
    );
}

/// Delivered deliveries are pruned after the retention; failed ones are kept
/// longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_delivered_and_keeps_failed_longer() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start_with(options(&[
        "--retry-schedule",
        "",
        "--retention",
        "1s",
        "--retention-failed",
        "1h",
        "--retention-interval",
        "200ms",
    ]))
    .await;
    let app = engine.create_app("retention").await;
    let mut receiver = FaultReceiver::start(Fault::ok()).await;
    receiver.script([Fault::status(500)]);
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let accepted = engine
        .emit(&app, Value::Array(vec![event("a", "t"), event("b", "t")]))
        .await;
    receiver.next(WAIT).await;
    receiver.next(WAIT).await;
    eventually("the delivered one pruned", WAIT, || async {
        let all = all_deliveries(&engine, &format!("app_id={app}")).await;
        (all.len() == 1).then_some(())
    })
    .await;
    let left = all_deliveries(&engine, &format!("app_id={app}")).await;
    assert_eq!(left[0]["status"], "failed", "{left:?}");
    // The delivered event went with it; the failed one's event stays.
    let statuses = futures_statuses(&engine, &accepted).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
}

async fn futures_statuses(engine: &Engine, accepted: &[Value]) -> Vec<u16> {
    let mut out = Vec::new();
    for a in accepted {
        let id = a["id"].as_str().unwrap();
        out.push(engine.get(&format!("/v1/events/{id}")).await.0);
    }
    out
}

/// RFC 3339 of a second ago.
fn chrono_now() -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339()
}
