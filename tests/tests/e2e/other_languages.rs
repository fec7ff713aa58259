//! Plugins written in Python and JavaScript against the WIT alone (no
//! Hookline SDK), built here with their own toolchains and run by the real
//! engine: `examples/plugins/ntfy-python` (componentize-py) and
//! `examples/plugins/pushover-js` (ComponentizeJS).
//!
//! The toolchains come from PyPI and npm; `.ci/run` installs them the way
//! each example's README says. Where one is missing outside CI the test says
//! so and passes. In CI (`CI` set, or `HOOKLINE_EXAMPLE_TOOLCHAINS=required`
//! as `.ci/run` sets it) a missing toolchain fails it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hookline_tests::{Engine, Receiver, eventually};
use serde_json::{Value, json};

/// Compiling an 18 MB component takes a while in a debug engine.
const LOAD_WAIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(30);

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/plugins")
        .join(name)
}

/// The tool at the first of `candidates` that exists, or on PATH.
fn find_tool(name: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Some(found.clone());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Says why the test cannot run here; fails in CI, where `.ci/run` installs
/// the toolchain.
fn missing(tool: &str, how: &str) {
    let message = format!("{tool} is not installed ({how}); .ci/run installs it");
    if std::env::var_os("CI").is_some()
        || std::env::var("HOOKLINE_EXAMPLE_TOOLCHAINS").is_ok_and(|v| v == "required")
    {
        panic!("{message}");
    }
    eprintln!("not run: {message}");
}

fn run(mut command: Command) {
    let shown = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops the component into a fresh engine and waits until it serves.
async fn engine_with(file: &Path, name: &str) -> Engine {
    let engine = Engine::start().await;
    let plugins = engine.data_dir.join("plugins");
    std::fs::copy(file, plugins.join(".incoming")).unwrap();
    std::fs::rename(
        plugins.join(".incoming"),
        plugins.join(format!("{name}.wasm")),
    )
    .unwrap();
    let plugin = eventually(&format!("{name} to load"), LOAD_WAIT, || async {
        let (_, body) = engine.get("/v1/plugins").await;
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name && p["state"] == "active")
            .cloned()
    })
    .await;
    assert_eq!(plugin["world"], "hookline:plugin@0.1.0", "{plugin}");
    assert_eq!(
        plugin["sdk_version"],
        Value::Null,
        "built without the SDK: {plugin}"
    );
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_built_with_componentize_py_delivers() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = example_dir("ntfy-python");
    let Some(tool) = find_tool("componentize-py", &[dir.join(".venv/bin/componentize-py")]) else {
        return missing(
            "componentize-py",
            "pip install -r examples/plugins/ntfy-python/requirements.txt",
        );
    };
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("ntfy-python.wasm");
    let mut build = Command::new(tool);
    build
        .current_dir(&dir)
        .args([
            "-d",
            "../../../sdk/wit/v0.1",
            "-w",
            "plugin",
            "componentize",
            "app",
            "-o",
        ])
        .arg(&wasm);
    run(build);

    let engine = engine_with(&wasm, "ntfy-python").await;
    let app = engine.create_app("python").await;
    // validate-config runs in Python and names the option.
    let (status, body) = engine
        .post(
            &format!("/v1/apps/{app}/endpoints"),
            &json!({ "url": "http://127.0.0.1:9/", "plugin": "ntfy-python", "plugin_config": { "priority": 9 } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("priority"),
        "{body}"
    );

    let mut receiver = Receiver::start().await;
    engine
        .create_endpoint(
            &app,
            json!({
                "url": receiver.url,
                "plugin": "ntfy-python",
                "plugin_config": { "priority": 4, "tags": ["moneybag", "shop"], "title_prefix": "shop" }
            }),
        )
        .await;
    engine
        .emit(
            &app,
            json!({ "id": "py-1", "source": "https://shop.example", "type": "order.paid",
                    "subject": "ord_1", "data": { "message": "Order ord_1 was paid" } }),
        )
        .await;
    let r = receiver.next(WAIT).await;
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.header("title"), "shop: ord_1");
    assert_eq!(r.header("priority"), "4");
    assert_eq!(r.header("tags"), "moneybag,shop");
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        text.starts_with("Order ord_1 was paid\n\norder.paid from https://shop.example"),
        "{text}"
    );
    assert!(
        !r.header("webhook-signature").is_empty(),
        "the engine signs it"
    );

    // interpret-response runs in Python too: 413 fails for good, with its reason.
    let small = Receiver::answering(413, "too large").await;
    let app2 = engine.create_app("python 413").await;
    engine
        .create_endpoint(&app2, json!({ "url": small.url, "plugin": "ntfy-python" }))
        .await;
    engine
        .emit(
            &app2,
            json!({ "id": "py-2", "source": "s", "type": "t", "data": {} }),
        )
        .await;
    let failed = engine
        .wait_deliveries(&format!("app_id={app2}&status=failed"), 1)
        .await;
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("ntfy refused the message as too large"),
        "{}",
        failed[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_built_with_componentize_js_delivers() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = example_dir("pushover-js");
    let Some(tool) = find_tool(
        "componentize-js",
        &[dir.join("node_modules/.bin/componentize-js")],
    ) else {
        return missing("componentize-js", "npm ci in examples/plugins/pushover-js");
    };
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("pushover-js.wasm");
    // The same command as the example's `npm run build`, into a temp dir.
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let script = package["scripts"]["build"].as_str().unwrap();
    let args: Vec<&str> = script.split_whitespace().skip(1).collect();
    let out_flag = args.iter().position(|a| *a == "-o").unwrap();
    let mut build = Command::new(tool);
    build
        .current_dir(&dir)
        .args(&args[..out_flag])
        .arg("-o")
        .arg(&wasm);
    run(build);

    let engine = engine_with(&wasm, "pushover-js").await;
    let app = engine.create_app("javascript").await;
    let (status, body) = engine
        .post(
            &format!("/v1/apps/{app}/endpoints"),
            &json!({ "url": "http://127.0.0.1:9/", "plugin": "pushover-js", "plugin_config": { "token": "short" } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("token"),
        "{body}"
    );

    let mut receiver = Receiver::start().await;
    let config = json!({
        "token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
        "user": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
        "priority": 1,
        "sound": "cashregister"
    });
    engine
        .create_endpoint(
            &app,
            json!({ "url": receiver.url, "plugin": "pushover-js", "plugin_config": config }),
        )
        .await;
    engine
        .emit(
            &app,
            json!({ "id": "js-1", "source": "https://shop.example", "type": "order.paid",
                    "subject": "ord_1", "time": "2026-11-23T12:00:00Z",
                    "data": { "message": "Order ord_1 was paid" } }),
        )
        .await;
    let r = receiver.next(WAIT).await;
    assert_eq!(
        r.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = form_urlencoded::parse(&r.body).into_owned().collect();
    let field = |k: &str| {
        form.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} in {form:?}"))
    };
    assert_eq!(field("token"), "azGDORePK8gMaC0QOYAMyEEuzJnyUi");
    assert_eq!(field("title"), "ord_1");
    assert_eq!(
        field("message"),
        "Order ord_1 was paid\norder.paid from https://shop.example"
    );
    assert_eq!(field("priority"), "1");
    assert_eq!(field("sound"), "cashregister");
    assert_eq!(field("timestamp"), "1795435200");

    // interpret-response runs in JavaScript: a refused token disables the endpoint.
    let refusing = Receiver::answering(
        400,
        r#"{"status":0,"errors":["application token is invalid"]}"#,
    )
    .await;
    let app2 = engine.create_app("javascript 400").await;
    let endpoint = engine
        .create_endpoint(
            &app2,
            json!({ "url": refusing.url, "plugin": "pushover-js", "plugin_config": config }),
        )
        .await;
    engine
        .emit(
            &app2,
            json!({ "id": "js-2", "source": "s", "type": "t", "data": {} }),
        )
        .await;
    let path = format!(
        "/v1/apps/{app2}/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    let disabled = eventually("the endpoint to be disabled", WAIT, || async {
        let (_, e) = engine.get(&path).await;
        (e["enabled"] == false).then_some(e)
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("application token is invalid"),
        "{disabled}"
    );
}
