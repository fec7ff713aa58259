//! API keys and tenant isolation: every route, called with no key, a revoked
//! key, an app key on another app's objects, an app key on its own, and the
//! admin key.

use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver, client, hookline_bin};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// One tenant's objects, made with the admin key.
struct Tenant {
    app: String,
    endpoint: String,
    event: String,
    delivery: String,
    operation: String,
}

async fn tenant(engine: &Engine, name: &str, receiver: &mut Receiver) -> Tenant {
    let app = engine.create_app(name).await;
    let endpoint = engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let event = engine
        .emit(
            &app,
            json!({ "id": format!("{name}-1"), "source": "s", "type": "t" }),
        )
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    receiver.next(WAIT).await;
    let delivery = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, replayed) = engine
        .post(&format!("/v1/events/{event}/replay"), &json!({}))
        .await;
    assert_eq!(status, 200, "{replayed}");
    receiver.next(WAIT).await;
    Tenant {
        operation: replayed["operation"]["id"].as_str().unwrap().to_string(),
        app,
        endpoint,
        event,
        delivery,
    }
}

/// Every route that takes a key, with `t`'s ids filled in.
fn routes(t: &Tenant) -> Vec<(&'static str, String, Option<Value>)> {
    let (app, ep) = (&t.app, &t.endpoint);
    vec![
        ("GET", format!("/v1/apps/{app}"), None),
        ("GET", format!("/v1/apps/{app}/endpoints"), None),
        (
            "POST",
            format!("/v1/apps/{app}/endpoints"),
            Some(json!({ "url": "http://127.0.0.1:9/" })),
        ),
        ("GET", format!("/v1/apps/{app}/endpoints/{ep}"), None),
        (
            "PATCH",
            format!("/v1/apps/{app}/endpoints/{ep}"),
            Some(json!({ "description": "touched" })),
        ),
        ("GET", format!("/v1/apps/{app}/endpoints/{ep}/secret"), None),
        (
            "POST",
            format!("/v1/apps/{app}/endpoints/{ep}/recover"),
            Some(json!({ "since": "2026-01-01T00:00:00Z" })),
        ),
        ("GET", format!("/v1/apps/{app}/operations"), None),
        (
            "POST",
            format!("/v1/events?app_id={app}"),
            Some(json!({ "id": "x", "source": "s", "type": "t" })),
        ),
        ("GET", format!("/v1/events/{}", t.event), None),
        ("GET", format!("/v1/events/{}?app_id={app}", t.event), None),
        (
            "POST",
            format!("/v1/events/{}/replay", t.event),
            Some(json!({})),
        ),
        ("GET", format!("/v1/deliveries?app_id={app}"), None),
        ("GET", format!("/v1/deliveries/{}", t.delivery), None),
        (
            "GET",
            format!("/v1/deliveries/{}/attempts", t.delivery),
            None,
        ),
        (
            "POST",
            format!("/v1/deliveries/{}/retry", t.delivery),
            Some(json!({})),
        ),
        ("GET", format!("/v1/operations/{}", t.operation), None),
        (
            "POST",
            "/v1/plugins/webhook/lift".to_string(),
            Some(json!({ "app_id": app })),
        ),
        // Last: deleting the endpoint.
        ("DELETE", format!("/v1/apps/{app}/endpoints/{ep}"), None),
    ]
}

async fn call(
    http: &reqwest::Client,
    engine: &Engine,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = http.request(method.parse().unwrap(), format!("{}{path}", engine.url));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_key_and_an_app_key_reaches_only_its_own_app() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    // The first admin key: in the data directory, readable by its owner only.
    assert!(engine.key.starts_with("hlk_"), "{}", engine.key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(engine.data_dir.join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let mut receiver = Receiver::start().await;
    let a = tenant(&engine, "tenant a", &mut receiver).await;
    let b = tenant(&engine, "tenant b", &mut receiver).await;

    let (status, made) = engine
        .post(
            "/v1/api-keys",
            &json!({ "name": "a's key", "app_id": a.app }),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let key_a = client(made["key"].as_str().unwrap());
    let (status, doomed) = engine
        .post(
            "/v1/api-keys",
            &json!({ "name": "doomed", "app_id": a.app }),
        )
        .await;
    assert_eq!(status, 201);
    let revoked = client(doomed["key"].as_str().unwrap());
    let (status, _) = call(
        &revoked,
        &engine,
        "GET",
        &format!("/v1/apps/{}", a.app),
        None,
    )
    .await;
    assert_eq!(status, 200, "works before it is revoked");
    let (status, _) = call(
        &engine.http,
        &engine,
        "DELETE",
        &format!("/v1/api-keys/{}", doomed["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let nobody = client("");
    let forged = client(&format!("{}x", &engine.key[..engine.key.len() - 1]));

    for ((method, b_path, b_body), (_, a_path, a_body)) in routes(&b).into_iter().zip(routes(&a)) {
        let body = b_body.as_ref();
        for (who, http) in [
            ("no key", &nobody),
            ("a revoked key", &revoked),
            ("a forged key", &forged),
        ] {
            let (status, out) = call(http, &engine, method, &b_path, body).await;
            assert_eq!(status, 401, "{method} {b_path} with {who}: {out}");
            assert_eq!(out["error"]["code"], "unauthorized");
        }
        // Another tenant's objects do not exist for an app key.
        let (status, out) = call(&key_a, &engine, method, &b_path, body).await;
        assert_eq!(status, 404, "{method} {b_path} with a's key: {out}");
        // Its own do, and so do everyone's for the admin.
        for (who, http, path, body) in [
            ("a's key", &key_a, &a_path, a_body.as_ref()),
            ("the admin key", &engine.http, &b_path, body),
        ] {
            let (status, out) = call(http, &engine, method, path, body).await;
            // A delivered delivery cannot be retried (409): the handler was reached.
            assert!(
                (200..300).contains(&status) || status == 409,
                "{method} {path} with {who}: {status} {out}"
            );
        }
    }
    // b's endpoint was deleted by the admin above, not by a's key.
    let (status, _) = engine
        .get(&format!("/v1/apps/{}/endpoints/{}", b.app, b.endpoint))
        .await;
    assert_eq!(status, 404);

    // Lists are filtered to the key's app.
    let (_, apps) = call(&key_a, &engine, "GET", "/v1/apps", None).await;
    let ids: Vec<&str> = apps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.app.as_str()]);
    let (_, deliveries) = call(&key_a, &engine, "GET", "/v1/deliveries?limit=250", None).await;
    let deliveries = deliveries["data"].as_array().unwrap();
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d["app_id"] == a.app.as_str()),
        "{deliveries:?}"
    );
    // An app key emits into its own app when it names none.
    let (status, out) = call(
        &key_a,
        &engine,
        "POST",
        "/v1/events",
        Some(&json!({ "id": "own", "source": "s", "type": "t" })),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let (_, event) = call(
        &key_a,
        &engine,
        "GET",
        &format!("/v1/events/{}", out["data"][0]["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(event["app_id"], a.app.as_str());
    // Plugins: visible, without the operator's details.
    let (status, plugins) = call(&key_a, &engine, "GET", "/v1/plugins", None).await;
    assert_eq!(status, 200);
    assert_eq!(plugins["sandbox"], Value::Null);
    let (_, plugins) = engine.get("/v1/plugins").await;
    assert!(plugins["sandbox"]["instance_slots"].is_number());

    // Admin-only routes refuse an app key with 403.
    for (method, path, body) in [
        ("POST", "/v1/apps", Some(json!({ "name": "c" }))),
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/api-keys", Some(json!({ "name": "more" }))),
        ("DELETE", "/v1/api-keys/whatever", None),
    ] {
        let (status, out) = call(&key_a, &engine, method, path, body.as_ref()).await;
        assert_eq!(status, 403, "{method} {path}: {out}");
        let (status, _) = call(&nobody, &engine, method, path, body.as_ref()).await;
        assert_eq!(status, 401, "{method} {path}");
    }
    // Health and readiness need no key.
    for path in ["/healthz", "/readyz"] {
        let (status, _) = call(&nobody, &engine, "GET", path, None).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_without_their_secret_and_the_first_key_is_made_once() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let mut engine = Engine::start_with(options.clone()).await;
    let first = engine.key.clone();
    let app = engine.create_app("listed").await;
    let (_, made) = engine
        .post("/v1/api-keys", &json!({ "name": "ci", "app_id": app }))
        .await;
    let secret = made["key"].as_str().unwrap().to_string();
    assert_eq!(made["scope"], "app");
    assert!(secret.starts_with(made["prefix"].as_str().unwrap()));
    // Using it records when it was last used.
    let (status, _) = call(
        &client(&secret),
        &engine,
        "GET",
        &format!("/v1/apps/{app}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let listed = hookline_tests::eventually("the key's last use", WAIT, || async {
        let (_, keys) = engine.get("/v1/api-keys").await;
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == made["id"] && k["last_used_at"].is_string())
            .cloned()
    })
    .await;
    let (_, keys) = engine.get("/v1/api-keys").await;
    let text = keys.to_string();
    assert!(
        !text.contains(&secret[20..]) && !text.contains(&first[20..]),
        "no secret is listed"
    );
    assert!(
        listed.get("key").is_none() && listed.get("hash").is_none(),
        "{listed}"
    );
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);

    // A restart keeps the keys, and makes no new admin key.
    engine.stop();
    let engine = Engine::start_with(options).await;
    assert_eq!(engine.key, first);
    let (status, _) = call(
        &client(&secret),
        &engine,
        "GET",
        &format!("/v1/apps/{app}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, keys) = engine.get("/v1/api-keys").await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_only_on_loopback() {
    hookline_tests::on_backend!(crate::BACKEND);
    // Refused before it listens anywhere.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(hookline_bin())
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("HOOKLINE_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure-no-auth") && err.contains("loopback"),
        "{err}"
    );

    // On loopback it serves without a key, and makes none.
    let mut options = EngineOptions::default();
    options.args.push("--insecure-no-auth".into());
    let engine = Engine::start_with(options).await;
    assert!(engine.key.is_empty());
    assert!(!engine.data_dir.join("admin.key").exists());
    let (status, _) = call(
        &client(""),
        &engine,
        "POST",
        "/v1/apps",
        Some(&json!({ "name": "dev" })),
    )
    .await;
    assert_eq!(status, 201);
}
