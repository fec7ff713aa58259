//! The SSRF guard, tested on loopback only: with an empty allow-list every
//! form of a loopback address is refused, when an endpoint is saved and at
//! connect time (a name that resolves to loopback through `--resolve`
//! stands in for DNS rebinding); allow-listed, the same requests go.

use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Fault, FaultReceiver, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn guarded(dir: Option<&std::path::Path>) -> EngineOptions {
    let mut o = EngineOptions {
        data_dir: dir.map(|d| d.to_path_buf()),
        ..Default::default()
    };
    o.unset("--allow-network")
        .set("--resolve", "rebind.test=127.0.0.1");
    o
}

fn open(dir: &std::path::Path) -> EngineOptions {
    let mut o = guarded(Some(dir));
    o.set("--allow-network", "127.0.0.0/8,::1/128");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loopback_form_is_refused_when_saved() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start_with(guarded(None)).await;
    let receiver = FaultReceiver::start(Fault::ok()).await;
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    let app = engine.create_app("ssrf").await;
    for host in [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "127.1",
        "2130706433",
        "0x7f000001",
        "[::ffff:127.0.0.1]",
        "rebind.test",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let (status, body) = engine
            .post(&format!("/v1/apps/{app}/endpoints"), &json!({ "url": url }))
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("loopback") && message.contains("--allow-network"),
            "{url}: {message}"
        );
    }
    assert_eq!(receiver.connections(), 0, "nothing was sent to it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_checked_on_the_address_they_reach() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = FaultReceiver::start(Fault::ok()).await;
    let port = receiver.url.rsplit(':').next().unwrap().to_string();

    // Saved while loopback was allow-listed…
    let engine = Engine::start_with(open(dir.path())).await;
    let app = engine.create_app("rebind").await;
    for url in [
        receiver.url.clone(),
        format!("http://rebind.test:{port}/"),
        // A closed port: the refusal must read the same as for an open one.
        "http://127.0.0.1:1/".to_string(),
    ] {
        engine.create_endpoint(&app, json!({ "url": url })).await;
    }
    drop(engine);

    // …then the operator closes it: nothing goes, whatever the name resolves to.
    let engine = Engine::start_with(guarded(Some(dir.path()))).await;
    engine
        .emit(&app, json!({ "id": "r1", "source": "s", "type": "t" }))
        .await;
    let errors = eventually("three refused attempts", WAIT, || async {
        let d = engine.deliveries(&format!("app_id={app}")).await;
        let errors: Vec<String> = d
            .iter()
            .filter_map(|d| d["last_error"].as_str().map(str::to_string))
            .collect();
        (errors.len() == 3).then_some(errors)
    })
    .await;
    for e in &errors {
        assert!(
            e.contains("refused by the network policy")
                || e.contains("resolves only to refused addresses"),
            "{e}"
        );
        assert!(
            !e.contains("onnection refused"),
            "never whether a port is open: {e}"
        );
    }
    assert_eq!(
        receiver.connections(),
        0,
        "not even a connection was opened"
    );
    drop(engine);

    // Allow-listed again, the held-back deliveries go.
    let engine = Engine::start_with(open(dir.path())).await;
    receiver.next(WAIT).await;
    receiver.next(WAIT).await;
    engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 2)
        .await;
}
