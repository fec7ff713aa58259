//! A plugin made by `hookline plugin new` passes its own tests, builds for
//! wasm32-wasip2, and delivers once dropped into the plugins directory.
//! (The directory is read at start-up; hot reload is tested on its own.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver, hookline_bin};
use serde_json::json;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs cargo in `dir` the way a plugin author would, with a target dir of
/// its own under the workspace's `target/` so repeated runs are incremental.
fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target/scaffold-e2e"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_new_plugin_builds_tests_and_delivers() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(hookline_bin())
        .args(["plugin", "new", "greeter", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.path().join("hookline-plugin-greeter");
    // Resolve the same dependency versions as this workspace, without the network.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();

    let tests = tokio::task::spawn_blocking({
        let krate = krate.clone();
        move || {
            cargo(&krate, &["test", "--quiet"]);
            cargo(&krate, &["build", "--release", "--target", "wasm32-wasip2"]);
        }
    });
    tests.await.unwrap();
    let wasm = workspace_root()
        .join("target/scaffold-e2e/wasm32-wasip2/release/hookline_plugin_greeter.wasm");
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    // An unusable file next to it is refused while the good one serves.
    let garbage = dir.path().join("broken.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let engine = Engine::start_with(EngineOptions {
        plugin_files: vec![wasm, garbage],
        ..Default::default()
    })
    .await;

    let (_, plugins) = engine.get("/v1/plugins").await;
    let list = plugins["data"].as_array().unwrap();
    let greeter = list
        .iter()
        .find(|p| p["name"] == "greeter")
        .expect("greeter is loaded");
    assert_eq!(greeter["source"], "file");
    assert_eq!(greeter["state"], "active");
    let broken = list
        .iter()
        .find(|p| p["state"] == "refused")
        .expect("broken.wasm is refused");
    assert!(broken["file"] == "broken.wasm");
    assert!(!broken["last_error"].as_str().unwrap().is_empty());

    let mut receiver = Receiver::start().await;
    let app = engine.create_app("scaffold").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "greeter", "plugin_config": { "prefix": "[test]" } }))
        .await;
    engine
        .emit(&app, json!({ "id": "g1", "source": "s", "type": "order.created", "subject": "ord_1", "data": {} }))
        .await;
    let body = receiver.next(Duration::from_secs(20)).await.json();
    assert_eq!(body["event"], "order.created");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[test]") && text.contains("Order created") && text.contains("ord_1"),
        "{text}"
    );
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    let attempts = engine.attempts(delivered[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts[0]["plugin"]["name"], "greeter");
}
