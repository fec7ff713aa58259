//! Bad input is refused with a 4xx that names the field, and nothing is stored.

use hookline_tests::{Engine, Receiver};
use serde_json::{Value, json};

fn error_of(body: &serde_json::Value) -> (String, String) {
    let e = &body["error"];
    (
        e["field"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn bad_events_are_refused_before_anything_is_stored() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let receiver = Receiver::start().await;
    let app = engine.create_app("strict").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let path = format!("/v1/events?app_id={app}");

    let (status, body) = engine.post_raw(&path, r#"{"id": "1", "source": "#).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).1.starts_with("body: not valid JSON"),
        "{body}"
    );

    let cases = [
        (
            json!({ "id": "1", "source": "s", "data": {} }),
            "type",
            "is required",
        ),
        (
            json!({ "id": "1", "source": "s", "type": "t", "data_base64": "not base64!" }),
            "data_base64",
            "not valid base64",
        ),
        (
            json!({ "id": "1", "source": "s", "type": "t", "data": {}, "data_base64": "AA==" }),
            "data_base64",
            "not both",
        ),
        (json!({ "source": "s", "type": "t" }), "id", "is required"),
        (
            json!({ "id": "1", "source": "s", "type": "t", "time": "noon" }),
            "time",
            "RFC 3339",
        ),
        // One bad event in a batch refuses the whole batch, naming its index.
        (
            json!([{ "id": "1", "source": "s", "type": "ok" }, { "id": "2", "source": "s" }]),
            "[1].type",
            "is required",
        ),
        (
            json!({ "id": "1", "source": "s", "type": "t", "data": { "x": "y".repeat(600 * 1024) } }),
            "data",
            "limit is 524288 bytes",
        ),
    ];
    for (event, field, words) in cases {
        let (status, body) = engine.post(&path, &event).await;
        assert_eq!(status, 422, "{body}");
        let (got_field, message) = error_of(&body);
        assert_eq!(got_field, field, "{body}");
        assert!(message.contains(words), "{body}");
        assert!(
            message.starts_with(field),
            "the message names the field: {message}"
        );
    }

    let (status, body) = engine
        .post(
            "/v1/events?app_id=app_nope",
            &json!({ "id": "1", "source": "s", "type": "t" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_of(&body).0, "app_id");
    let (status, body) = engine
        .post(
            "/v1/events",
            &json!({ "id": "1", "source": "s", "type": "t" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_of(&body).0, "app_id");

    // Nothing was stored: a valid event with id "1" is new, and no delivery exists but its own.
    let accepted = engine
        .emit(&app, json!({ "id": "1", "source": "s", "type": "t" }))
        .await;
    assert_eq!(accepted[0]["duplicate"], false);
    assert_eq!(engine.deliveries(&format!("app_id={app}")).await.len(), 1);
}

#[tokio::test]
async fn bad_endpoints_are_refused_naming_the_field() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("strict").await;
    let path = format!("/v1/apps/{app}/endpoints");
    let cases = [
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "ftp://example.test/x" }), "url"),
        (json!({ "url": "http://127.0.0.1:9/x#frag" }), "url"),
        (
            json!({ "url": "http://127.0.0.1:9/x", "plugin": "nope" }),
            "plugin",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/x", "secret": "hunter2" }),
            "secret",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/x", "filter_types": ["ok.*", "bad*"] }),
            "filter_types[1]",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/x", "plugin_config": { "colour": "red" } }),
            "plugin_config",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/x", "plugin_config": [1] }),
            "plugin_config",
        ),
    ];
    for (body, field) in cases {
        let (status, out) = engine.post(&path, &body).await;
        assert_eq!(status, 422, "{body} -> {out}");
        assert_eq!(error_of(&out).0, field, "{body} -> {out}");
    }
    let (status, out) = engine
        .post(
            &path,
            &json!({ "url": "http://127.0.0.1:9/x", "colour": 1 }),
        )
        .await;
    assert_eq!(status, 400, "{out}");
    assert!(error_of(&out).1.contains("colour"), "{out}");
    let (status, out) = engine
        .post(
            "/v1/apps/app_nope/endpoints",
            &json!({ "url": "http://127.0.0.1:9/x" }),
        )
        .await;
    assert_eq!(status, 404, "{out}");

    let (_, list) = engine.get(&path).await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn endpoints_can_be_read_changed_and_deleted() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("crud").await;
    let created = engine
        .create_endpoint(&app, json!({ "url": "http://127.0.0.1:9/a", "description": "first", "filter_types": ["a.*"] }))
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/apps/{app}/endpoints/{id}");

    let (status, fetched) = engine.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["url"], "http://127.0.0.1:9/a");
    assert_eq!(fetched["plugin"], "webhook");
    assert!(
        fetched.get("secret").is_none(),
        "the secret is not shown on reads"
    );
    let (_, secret) = engine.get(&format!("{path}/secret")).await;
    assert_eq!(secret["secret"], created["secret"]);

    let (status, updated) = engine
        .patch(
            &path,
            &json!({ "url": "http://127.0.0.1:9/b", "enabled": false }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["url"], "http://127.0.0.1:9/b");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["description"], "first");
    let (status, out) = engine
        .patch(&path, &json!({ "filter_types": ["*x"] }))
        .await;
    assert_eq!(status, 422, "{out}");

    let (_, list) = engine.get(&format!("/v1/apps/{app}/endpoints")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(engine.delete(&path).await, 204);
    assert_eq!(engine.get(&path).await.0, 404);
    assert_eq!(engine.delete(&path).await, 404);

    let (_, apps) = engine.get("/v1/apps").await;
    assert!(
        apps["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == app.as_str())
    );
    assert_eq!(engine.get(&format!("/v1/apps/{app}")).await.0, 200);
    assert_eq!(engine.get("/v1/apps/app_nope").await.0, 404);
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_in_pages() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let receiver = Receiver::start().await;
    let app = engine.create_app("pages").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    for i in 0..5 {
        engine
            .emit(
                &app,
                json!({ "id": format!("p{i}"), "source": "s", "type": "t" }),
            )
            .await;
    }
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for expected in [2, 2, 1] {
        let (status, page) = engine
            .get(&format!("/v1/deliveries?app_id={app}&limit=2{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), expected, "{page}");
        ids.extend(data.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => assert_eq!(expected, 1, "only the last page has no cursor"),
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(ids, sorted, "newest first");
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "every delivery exactly once across pages");

    let (status, out) = engine.get("/v1/deliveries?limit=0").await;
    assert_eq!(status, 422);
    assert_eq!(out["error"]["field"], "limit");
    let (status, out) = engine.get("/v1/deliveries?status=lost").await;
    assert_eq!(status, 422);
    assert_eq!(out["error"]["field"], "status");
}

/// Every error the API sends is the documented JSON shape, including the ones
/// axum's extractors and router would answer in plain text or empty.
#[tokio::test]
async fn malformed_queries_unknown_routes_and_methods_answer_in_the_error_shape() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let http = engine.http.clone();
    let cases = [
        ("GET", "/v1/deliveries?limit=abc", 400, Some("limit")),
        ("GET", "/v1/apps?limit=1e3", 400, Some("limit")),
        ("GET", "/v1/no-such-thing", 404, None),
        ("PUT", "/v1/apps", 405, None),
    ];
    for (method, path, status, field) in cases {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", engine.url))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "application/json", "{method} {path}");
        let body: serde_json::Value = r.json().await.expect("a JSON body");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{method} {path}: {body}");
        assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{method} {path}: {body}");
            assert!(message.starts_with(field), "{body}");
        }
    }
}

/// Every route has a body limit: 256 KiB, except `POST /v1/events`, whose
/// limit is `--max-body-kib` (8 MiB by default).
#[tokio::test]
async fn bodies_are_limited_on_every_route() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let big_name = "n".repeat(300 << 10);
    let (status, out) = engine.post("/v1/apps", &json!({ "name": big_name })).await;
    assert_eq!(status, 413, "{out}");
    assert_eq!(out["error"]["code"], "too_large");
    let app = engine.create_app("limits").await;
    let (status, out) = engine
        .post(
            &format!("/v1/apps/{app}/endpoints"),
            &json!({ "url": "http://127.0.0.1:9/", "description": "d".repeat(300 << 10) }),
        )
        .await;
    assert_eq!(status, 413, "{out}");
    // Events take more: ten events of 100 KiB each, 1 MiB in all.
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({ "id": format!("big-{i}"), "source": "s", "type": "t", "data": { "blob": "b".repeat(100 << 10) } }))
        .collect();
    let (status, out) = engine
        .post(&format!("/v1/events?app_id={app}"), &Value::Array(batch))
        .await;
    assert_eq!(status, 202, "{out}");
}
