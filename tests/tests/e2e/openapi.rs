//! `/openapi.json`: generated from the handlers, and every operation it
//! documents is served (the unit test `api::openapi::tests` checks that no
//! route is left out of it).

use hookline_tests::Engine;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    // Without a key, like the health checks: tools fetch it.
    let doc: Value = reqwest::get(format!("{}/openapi.json", engine.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc["info"]["title"], "Hookline");
    let paths = doc["paths"].as_object().unwrap();
    // The routes the README's table lists, among others.
    for path in [
        "/v1/apps",
        "/v1/apps/{app_id}/endpoints/{endpoint_id}",
        "/v1/apps/{app_id}/endpoints/{endpoint_id}/test",
        "/v1/events",
        "/v1/deliveries/{delivery_id}/retry",
        "/v1/api-keys/{key_id}",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    assert!(doc["components"]["schemas"]["EndpointOut"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());

    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace('{', "missing_").replace('}', "");
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let request = engine.http.request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{concrete}", engine.url),
            );
            let request = match method {
                "post" | "patch" => request.json(&json!({})),
                _ => request,
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            // The router's own refusals: no such route, or not this method.
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(
                !(status == 404 && body.contains("no route")),
                "{method} {path} is documented but not served: {body}"
            );
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");
}
