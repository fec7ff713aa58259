//! Events in, in every mode of the CloudEvents HTTP binding (structured,
//! batch, binary), with `data` delivered byte for byte: what the receiver
//! gets through the `webhook` plugin is compared as bytes, not as parsed
//! JSON. And the limits, each named in its refusal.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookline_tests::{Engine, EngineOptions, Receiver};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Data a re-encoding would change: unsorted keys, a 20-digit integer, a
/// float past f64's precision, escaped unicode, odd spacing.
const FAITHFUL: &str = r#"{"zebra": 1, "apple": {"n": 12345678901234567890, "f": 0.1000000000000000055511151231257827}, "text": "caf\u00e9 \ud83d\ude00 \"q\"",  "list":[3,1,2]}"#;

async fn setup() -> (Engine, Receiver, String) {
    let engine = Engine::start().await;
    let receiver = Receiver::start().await;
    let app = engine.create_app("events-in").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "webhook" }))
        .await;
    (engine, receiver, app)
}

async fn send(
    engine: &Engine,
    app: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = engine
        .http
        .post(format!("{}/v1/events?app_id={app}", engine.url))
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The raw bytes of the `data` member of a structured body, as sent.
fn raw_data(body: &[u8]) -> String {
    let fields: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(body).unwrap();
    fields["data"].get().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_delivers_data_byte_for_byte() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (engine, mut receiver, app) = setup().await;
    let body = format!(
        r#"{{"specversion":"1.0","id":"s1","source":"/shop","type":"order.created","traceparent":"00-abc-01","data":{FAITHFUL}}}"#
    );
    let (status, out) = send(
        &engine,
        &app,
        &[(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )],
        body,
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let r = receiver.next(WAIT).await;
    assert_eq!(raw_data(&r.body), FAITHFUL);
    let delivered = r.json();
    assert_eq!(delivered["traceparent"], "00-abc-01");
    assert_eq!(delivered["datacontenttype"], "application/json");

    // The API shows it as sent, too.
    let id = out["data"][0]["id"].as_str().unwrap();
    let shown = engine
        .http
        .get(format!("{}/v1/events/{id}?app_id={app}", engine.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw_data(&shown), FAITHFUL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_json_value_is_data() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (engine, mut receiver, app) = setup().await;
    let values = [
        r#"[1, "two", 3.0]"#,
        r#""just text""#,
        "12345678901234567890123",
    ];
    for (i, data) in values.iter().enumerate() {
        let body = format!(r#"{{"id":"v{i}","source":"s","type":"t","data":{data}}}"#);
        let (status, out) =
            send(&engine, &app, &[("content-type", "application/json")], body).await;
        assert_eq!(status, 202, "{out}");
    }
    let mut got = Vec::new();
    for _ in 0..values.len() {
        got.push(raw_data(&receiver.next(WAIT).await.body));
    }
    got.sort();
    let mut want: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_takes_an_array_of_events() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (engine, mut receiver, app) = setup().await;
    let body = format!(
        r#"[{{"specversion":"1.0","id":"b1","source":"s","type":"t","data":{FAITHFUL}}},
            {{"specversion":"1.0","id":"b2","source":"s","type":"t","data":{{"b":2,"a":1}}}}]"#
    );
    let (status, out) = send(
        &engine,
        &app,
        &[("content-type", "application/cloudevents-batch+json")],
        body,
    )
    .await;
    assert_eq!(status, 202, "{out}");
    assert_eq!(out["data"].as_array().unwrap().len(), 2);
    let mut by_id = std::collections::HashMap::new();
    for _ in 0..2 {
        let r = receiver.next(WAIT).await;
        by_id.insert(
            r.json()["id"].as_str().unwrap().to_string(),
            raw_data(&r.body),
        );
    }
    assert_eq!(by_id["b1"], FAITHFUL);
    assert_eq!(by_id["b2"], r#"{"b":2,"a":1}"#);

    // A batch content type with one object, or a structured one with an
    // array, is refused.
    let (status, _) = send(
        &engine,
        &app,
        &[("content-type", "application/cloudevents-batch+json")],
        r#"{"id":"x","source":"s","type":"t"}"#,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &engine,
        &app,
        &[("content-type", "application/cloudevents+json")],
        r#"[{"id":"x","source":"s","type":"t"}]"#,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_reads_ce_headers_and_keeps_the_body() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (engine, mut receiver, app) = setup().await;
    // JSON data: kept as JSON text, exactly.
    let (status, out) = send(
        &engine,
        &app,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "bin-1"),
            ("ce-source", "/shop/eu"),
            ("ce-type", "order.created"),
            // Percent-encoded, as the binding says: "café au lait".
            ("ce-subject", "caf%C3%A9%20au%20lait"),
            ("ce-time", "2026-12-01T10:00:00Z"),
            ("ce-traceparent", "00-abc-01"),
            ("content-type", "application/json"),
        ],
        FAITHFUL,
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let r = receiver.next(WAIT).await;
    let delivered = r.json();
    assert_eq!(delivered["id"], "bin-1");
    assert_eq!(delivered["source"], "/shop/eu");
    assert_eq!(delivered["subject"], "café au lait");
    assert_eq!(delivered["time"], "2026-12-01T10:00:00Z");
    assert_eq!(delivered["traceparent"], "00-abc-01");
    assert_eq!(delivered["datacontenttype"], "application/json");
    assert_eq!(raw_data(&r.body), FAITHFUL);

    // Bytes of another type: every byte value, delivered as data_base64.
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let (status, out) = send(
        &engine,
        &app,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "bin-2"),
            ("ce-source", "/camera"),
            ("ce-type", "image.taken"),
            ("content-type", "image/png"),
        ],
        bytes.clone(),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let delivered = receiver.next(WAIT).await.json();
    assert_eq!(delivered["datacontenttype"], "image/png");
    assert!(delivered.get("data").is_none(), "{delivered}");
    let got = STANDARD
        .decode(delivered["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, bytes);

    // A missing attribute is named by its header.
    let (status, out) = send(
        &engine,
        &app,
        &[
            ("ce-specversion", "1.0"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(out["error"]["field"], "ce-id", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_data_base64_is_delivered_intact() {
    hookline_tests::on_backend!(crate::BACKEND);
    let (engine, mut receiver, app) = setup().await;
    let bytes: Vec<u8> = (0..=255u8).collect();
    let encoded = STANDARD.encode(&bytes);
    let (status, out) = send(
        &engine,
        &app,
        &[("content-type", "application/cloudevents+json")],
        json!({
            "specversion": "1.0", "id": "b64", "source": "s", "type": "t",
            "datacontenttype": "application/octet-stream", "data_base64": encoded,
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let delivered = receiver.next(WAIT).await.json();
    assert_eq!(delivered["datacontenttype"], "application/octet-stream");
    assert_eq!(
        STANDARD
            .decode(delivered["data_base64"].as_str().unwrap())
            .unwrap(),
        bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_settings_named_in_every_refusal() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options
        .set("--max-data-kib", "1")
        .set("--max-batch", "2")
        .set("--max-body-kib", "4");
    let engine = Engine::start_with(options).await;
    let app = engine.create_app("limits").await;
    let receiver = Receiver::start().await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let json_ct = [("content-type", "application/json")];

    let big = json!({ "id": "1", "source": "s", "type": "t", "data": { "x": "a".repeat(1100) } });
    let (status, out) = send(&engine, &app, &json_ct, big.to_string()).await;
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error"]["field"], "data");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-data-kib"),
        "{out}"
    );

    let binary = vec![7u8; 1100];
    let (status, out) = send(
        &engine,
        &app,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("content-type", "application/octet-stream"),
        ],
        binary,
    )
    .await;
    assert_eq!(status, 422, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-data-kib"),
        "{out}"
    );

    let batch: Vec<Value> = (0..3)
        .map(|i| json!({ "id": format!("{i}"), "source": "s", "type": "t" }))
        .collect();
    let (status, out) = send(&engine, &app, &json_ct, Value::Array(batch).to_string()).await;
    assert_eq!(status, 400, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-batch"),
        "{out}"
    );

    let huge = json!({ "id": "1", "source": "s", "type": "t", "pad": "a".repeat(5000) });
    let (status, out) = send(&engine, &app, &json_ct, huge.to_string()).await;
    assert_eq!(status, 413, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-kib"),
        "{out}"
    );

    let (status, out) = send(
        &engine,
        &app,
        &[("content-type", "application/cloudevents+avro")],
        "x",
    )
    .await;
    assert_eq!(status, 415, "{out}");
    assert_eq!(out["error"]["field"], "content-type");

    // Nothing of the refused requests was stored.
    assert!(engine.deliveries(&format!("app_id={app}")).await.is_empty());
}
