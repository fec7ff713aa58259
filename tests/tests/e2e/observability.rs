//! What an operator's tools see: `/metrics` after a known load, and logs
//! that a file or a log pipeline can read (plain text without colour codes,
//! or JSON lines), each delivery's lines carrying its ids.

use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver, eventually};
use serde_json::{Value, json};

/// The value of one sample in an OpenMetrics text, e.g.
/// `hookline_attempts_total{outcome="success",plugin="webhook"}`; labels
/// are matched in any order. 0 when the sample is absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

async fn scrape(engine: &Engine) -> String {
    // No key: a scraper has no credentials.
    let r = reqwest::get(format!("{}/metrics", engine.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_a_known_load() {
    hookline_tests::on_backend!(crate::BACKEND);
    let ok = Receiver::start().await;
    let refusing = Receiver::answering(500, "down").await;
    let engine = Engine::start().await;
    let app = engine.create_app("metrics").await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/ok", ok.url), "filter_types": ["good"] }),
        )
        .await;
    // Its one retry is an hour away: its deliveries stay pending.
    engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/down", refusing.url), "filter_types": ["bad"], "retry_schedule": ["1h"] }),
        )
        .await;
    let events: Vec<Value> =
        (0..5)
            .map(|n| json!({ "id": format!("g{n}"), "source": "m", "type": "good", "data": {} }))
            .chain((0..2).map(
                |n| json!({ "id": format!("b{n}"), "source": "m", "type": "bad", "data": {} }),
            ))
            .collect();
    engine.emit(&app, Value::Array(events)).await;
    // One of them again: a duplicate, not a new event.
    engine
        .emit(
            &app,
            json!([{ "id": "g0", "source": "m", "type": "good", "data": {} }]),
        )
        .await;
    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 5)
        .await;
    let text = eventually(
        "both failed attempts counted",
        Duration::from_secs(30),
        || async {
            let text = scrape(&engine).await;
            let retries = sample(&text, "hookline_attempts_total", &[("outcome", "retry")]);
            (retries >= 2.0).then_some(text)
        },
    )
    .await;

    let webhook = [("plugin", "webhook")];
    assert_eq!(
        sample(&text, "hookline_events_ingested_total", &[]),
        7.0,
        "{text}"
    );
    assert_eq!(sample(&text, "hookline_events_duplicate_total", &[]), 1.0);
    assert_eq!(
        sample(&text, "hookline_ingest_batch_events_count", &[]),
        2.0
    );
    assert_eq!(sample(&text, "hookline_ingest_batch_events_sum", &[]), 8.0);
    assert_eq!(
        sample(
            &text,
            "hookline_attempts_total",
            &[("plugin", "webhook"), ("outcome", "success")]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "hookline_attempts_total",
            &[("plugin", "webhook"), ("outcome", "retry")]
        ),
        2.0
    );
    assert_eq!(
        sample(&text, "hookline_attempt_duration_seconds_count", &webhook),
        7.0
    );
    // One transform per attempt, none of them a fault.
    assert_eq!(
        sample(
            &text,
            "hookline_plugin_call_duration_seconds_count",
            &webhook
        ),
        7.0
    );
    assert_eq!(sample(&text, "hookline_plugin_faults_total", &[]), 0.0);
    assert_eq!(sample(&text, "hookline_queue_pending", &[]), 2.0);
    assert_eq!(sample(&text, "hookline_queue_held", &[]), 0.0);
    assert!(sample(&text, "hookline_oldest_pending_age_seconds", &[]) >= 0.0);
    assert_eq!(
        sample(&text, "hookline_endpoints_breaker", &[("state", "closed")]),
        2.0
    );
    assert_eq!(
        sample(&text, "hookline_endpoints_breaker", &[("state", "open")]),
        0.0
    );
    assert!(sample(&text, "hookline_store_commit_jobs_count", &[]) >= 1.0);

    // Readiness names what it checked.
    let (status, ready) = engine.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["store"], "ok");
    assert_eq!(ready["checks"]["writer"], "ok");
    assert!(ready["checks"]["plugins"].as_u64().unwrap() >= 6, "{ready}");
    assert!(sample(&text, "hookline_store_commit_duration_seconds_count", &[]) >= 1.0);
}

/// The id of the one delivery an app has, once it is delivered.
async fn one_delivery(engine: &Engine, receiver: &mut Receiver) -> String {
    let app = engine.create_app("logs").await;
    engine
        .create_endpoint(&app, json!({ "url": format!("{}/hook", receiver.url) }))
        .await;
    engine
        .emit(
            &app,
            json!([{ "id": "x", "source": "l", "type": "t", "data": {} }]),
        )
        .await;
    receiver.next(Duration::from_secs(30)).await;
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    delivered[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn logs_in_a_file_are_plain_and_name_the_delivery() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let engine = Engine::start().await;
    let delivery = one_delivery(&engine, &mut receiver).await;
    let line = eventually("the attempt's log line", Duration::from_secs(10), || {
        let log = engine.log();
        let line = log
            .lines()
            .find(|l| l.contains("attempt finished") && l.contains(&delivery))
            .map(str::to_string);
        async move { line }
    })
    .await;
    let log = engine.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {:?}",
        log.lines().find(|l| l.contains('\u{1b}'))
    );
    // The delivery's span: its id, event and endpoint on every line of it.
    assert!(line.contains(&format!("delivery{{id={delivery}")), "{line}");
    assert!(
        line.contains("event=evt_") && line.contains("endpoint=ep_"),
        "{line}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_delivery_ids() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let mut options = EngineOptions::default();
    options.set("--log-format", "json");
    let engine = Engine::start_with(options).await;
    let delivery = one_delivery(&engine, &mut receiver).await;
    let line: Value = eventually("the attempt's log line", Duration::from_secs(10), || {
        let found = engine
            .log()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .find(|v| v["fields"]["message"] == "attempt finished" && v["span"]["id"] == delivery);
        async move { found }
    })
    .await;
    assert_eq!(line["span"]["name"], "delivery");
    assert!(
        line["span"]["event"].as_str().unwrap().starts_with("evt_"),
        "{line}"
    );
    assert!(
        line["span"]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("ep_"),
        "{line}"
    );
    assert_eq!(line["fields"]["outcome"], "success");
    assert_eq!(line["level"], "DEBUG");
}

#[tokio::test]
async fn endpoint_stats_report_attempts_latency_queue_and_health() {
    hookline_tests::on_backend!(crate::BACKEND);
    // Three answers of 200, then 500s.
    let mut receiver = Receiver::answering(500, "down").await;
    receiver.script(&[(200, "ok"), (200, "ok"), (200, "ok")]);
    let engine = Engine::start().await;
    let app = engine.create_app("stats").await;
    let endpoint = engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/hook", receiver.url), "retry_schedule": ["1h"], "ordered": true }),
        )
        .await;
    let id = endpoint["id"].as_str().unwrap();
    let events: Vec<Value> = (0..5)
        .map(|n| json!({ "id": format!("s{n}"), "source": "st", "type": "t", "data": {} }))
        .collect();
    engine.emit(&app, Value::Array(events)).await;
    for _ in 0..3 {
        receiver.next(Duration::from_secs(30)).await;
    }
    let path = format!("/v1/apps/{app}/endpoints/{id}/stats?window=1h");
    let stats = eventually(
        "the attempts to be recorded",
        Duration::from_secs(30),
        || async {
            let (status, stats) = engine.get(&path).await;
            assert_eq!(status, 200, "{stats}");
            (stats["attempts"] == 4).then_some(stats)
        },
    )
    .await;
    // Ordered: the fourth failed and waits an hour, holding back the fifth.
    assert_eq!(stats["by_outcome"]["success"], 3, "{stats}");
    assert_eq!(stats["by_outcome"]["retry"], 1, "{stats}");
    assert_eq!(stats["success_rate"], 0.75);
    assert_eq!(stats["window_seconds"], 3600);
    assert_eq!(stats["latency_ms"]["sampled"], 4);
    assert!(stats["latency_ms"]["p50"].as_i64().unwrap() >= 0);
    assert!(
        stats["latency_ms"]["max"].as_i64().unwrap()
            >= stats["latency_ms"]["p50"].as_i64().unwrap()
    );
    assert_eq!(stats["queue"]["pending"], 2, "{stats}");
    assert_eq!(stats["health"]["consecutive_failures"], 1, "{stats}");
    assert!(stats["health"]["last_success_at"].is_string(), "{stats}");
    assert_eq!(stats["health"]["breaker"], "closed");
    // The chart's series: the window in 24 spans, the attempts in them.
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 24);
    let sum = |key: &str| series.iter().map(|b| b[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("success"), sum("failed")), (3, 1), "{stats}");

    let (status, error) = engine
        .get(&format!(
            "/v1/apps/{app}/endpoints/{id}/stats?window=forever"
        ))
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "window", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_test_goes_through_the_plugin_and_answers_with_the_attempt() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut receiver = Receiver::start().await;
    let engine = Engine::start().await;
    let app = engine.create_app("tests").await;
    // Filters that the test event does not match: a test goes anyway.
    let endpoint = engine
        .create_endpoint(
            &app,
            json!({ "url": format!("{}/hook", receiver.url), "filter_types": ["order.*"], "retry_schedule": ["1h"] }),
        )
        .await;
    let id = endpoint["id"].as_str().unwrap();
    let path = format!("/v1/apps/{app}/endpoints/{id}/test");

    // The default event: the answer carries the attempt.
    let (status, out) = engine.post_raw(&path, "").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["attempt"]["outcome"], "success", "{out}");
    assert_eq!(out["attempt"]["status_code"], 200, "{out}");
    assert_eq!(out["attempt"]["plugin"]["name"], "webhook", "{out}");
    assert_eq!(out["delivery"]["status"], "delivered", "{out}");
    assert_eq!(out["delivery"]["event_type"], "hookline.test", "{out}");
    let got = receiver.next(Duration::from_secs(30)).await;
    assert_eq!(got.json()["type"], "hookline.test");
    assert_eq!(got.json()["data"]["endpoint_id"], id);
    // Signed like any delivery, under the delivery's id.
    assert_eq!(got.header("webhook-id"), out["delivery"]["id"]);

    // An event of one's own, and a receiver that fails: the answer says why,
    // and the delivery keeps its retries.
    receiver.script(&[(503, "maintenance")]);
    let (status, out) = engine
        .post(
            &path,
            &json!({ "type": "order.created", "data": { "n": 7 } }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["attempt"]["outcome"], "retry", "{out}");
    assert_eq!(out["attempt"]["status_code"], 503, "{out}");
    assert_eq!(out["attempt"]["response_excerpt"], "maintenance", "{out}");
    assert_eq!(out["delivery"]["status"], "pending", "{out}");
    let got = receiver.next(Duration::from_secs(30)).await;
    assert_eq!(got.json()["data"], json!({ "n": 7 }));
    // It is a delivery like any other: listed with the endpoint's.
    let listed = engine.deliveries(&format!("endpoint_id={id}")).await;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // What cannot be tested is refused, naming why.
    let (status, out) = engine.post_raw(&path, "[1]").await;
    assert_eq!(status, 400, "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("body"),
        "{out}"
    );
    let (status, out) = engine
        .post_raw(&format!("/v1/apps/{app}/endpoints/ep_missing/test"), "")
        .await;
    assert_eq!(status, 404, "{out}");
    let (status, out) = engine
        .patch(
            &format!("/v1/apps/{app}/endpoints/{id}"),
            &json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = engine.post_raw(&path, "").await;
    assert_eq!(status, 409, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{out}"
    );
}
