//! Hot reload and the sandbox, with real compiled components dropped into
//! the plugins directory of a running engine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hookline_tests::{Engine, EngineOptions, Receiver, eventually, guests};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Writes a plugin file the safe way: elsewhere, then renamed into place.
fn drop_plugin(engine: &Engine, file_name: &str, bytes: &[u8]) -> Instant {
    let dir = engine.data_dir.join("plugins");
    let tmp = dir.join(format!(".{file_name}.part"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(file_name)).unwrap();
    Instant::now()
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The same component with a custom section appended: new bytes, new hash,
/// same behaviour (what a rebuild of the same code looks like to the engine).
fn rebuilt(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"hookline-test";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128);
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0x00, size as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

async fn plugins(engine: &Engine) -> Vec<Value> {
    engine.get("/v1/plugins").await.1["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn wait_plugin_state(engine: &Engine, name: &str, version: &str, state: &str) -> Value {
    eventually(
        &format!("plugin {name} {version} to be {state}"),
        WAIT,
        || async {
            plugins(engine)
                .await
                .into_iter()
                .find(|p| p["name"] == name && p["version"] == version && p["state"] == state)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_plugin_under_traffic_loses_nothing() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    drop_plugin(&engine, "swap.wasm", &read(guests::SWAP_V1));
    wait_plugin_state(&engine, "swap", "1.0.0", "active").await;
    let app = engine.create_app("swap").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "swap" }))
        .await;

    // A steady stream, one event every 10 ms: 80 before the new version's
    // file lands, then on until the engine reports the new version active,
    // then 80 more. The swap is judged by what the engine says it did, not
    // by a wall-clock margin (compiling the new version takes what it takes
    // on a loaded machine).
    const BEFORE: usize = 80;
    const AFTER: usize = 80;
    let mut emitted_at = Vec::new();
    let mut landed = None;
    let mut active_at = None;
    let mut after_active = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let mut i = 0;
    while after_active < AFTER {
        pace.tick().await;
        if i == BEFORE {
            landed = Some(drop_plugin(&engine, "swap.wasm", &read(guests::SWAP_V2)));
        }
        if let Some(landed) = landed
            && active_at.is_none()
        {
            let now = plugins(&engine)
                .await
                .into_iter()
                .any(|p| p["name"] == "swap" && p["version"] == "2.0.0" && p["state"] == "active");
            if now {
                active_at = Some(i);
            } else {
                assert!(
                    landed.elapsed() < WAIT,
                    "version 2 was not active {WAIT:?} after its file landed"
                );
            }
        }
        if active_at.is_some() {
            after_active += 1;
        }
        emitted_at.push(Instant::now());
        engine
            .emit(
                &app,
                json!({ "id": format!("s{i}"), "source": "stream", "type": "tick" }),
            )
            .await;
        i += 1;
    }
    let n = i;
    let landed = landed.unwrap();
    let active_at = active_at.unwrap();

    let mut seen: HashMap<String, (u64, Instant)> = HashMap::new();
    for _ in 0..n {
        let r = receiver.next(WAIT).await;
        let body = r.json();
        let id = body["id"].as_str().unwrap().to_string();
        assert!(
            seen.insert(id, (body["version"].as_u64().unwrap(), r.at))
                .is_none(),
            "delivered twice"
        );
    }
    let failed = engine
        .deliveries(&format!("app_id={app}&status=failed"))
        .await;
    assert!(failed.is_empty(), "no delivery failed: {failed:?}");
    // All of them, page by page: a loaded machine compiles the new version
    // slowly, and the stream then holds more than one page (250).
    let delivered = eventually("every delivery recorded", WAIT, || async {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = engine
                .get(&format!(
                    "/v1/deliveries?app_id={app}&status=delivered&limit=250{cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{page}");
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        (all.len() >= n).then_some(all)
    })
    .await;
    assert!(
        delivered.iter().all(|d| d["attempts"] == 1),
        "every delivery went through on its first attempt"
    );

    let first_v2 = seen
        .values()
        .filter(|(v, _)| *v == 2)
        .map(|(_, at)| *at)
        .min()
        .expect("version 2 served");
    println!(
        "plugin swap latency: {} ms from the file landing to the first delivery by the new version",
        first_v2.saturating_duration_since(landed).as_millis()
    );
    // Before the file landed: the old version. Once the engine said the new
    // one was active: the new version, every time. In between, either
    // (deliveries run concurrently, so not in emission order).
    let mut v2_seen = false;
    for i in 0..n {
        let (version, _) = seen[&format!("s{i}")];
        if i < BEFORE {
            assert!(
                version == 1 || emitted_at[i] + Duration::from_millis(50) > landed,
                "s{i} predates the swap"
            );
        }
        if i >= active_at {
            assert_eq!(
                version, 2,
                "event s{i}, emitted after the engine reported version 2 active, used version 1"
            );
        }
        v2_seen |= version == 2;
    }
    assert!(v2_seen);
    let (_, attempts) = engine
        .get(&format!(
            "/v1/deliveries/{}/attempts",
            delivered[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(attempts["data"][0]["plugin"]["name"], "swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_while_deliveries_go_on() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("bad files").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;

    let good = read(guests::SWAP_V1);
    let bad: [(&str, Vec<u8>, &str); 5] = [
        (
            "garbage.wasm",
            b"this is not webassembly at all".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "truncated.wasm",
            good[..good.len() / 2].to_vec(),
            "not a valid WebAssembly component",
        ),
        // The 8-byte header alone is a valid, empty core module: not a component.
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "other-world.wasm",
            read(guests::OTHER_WORLD),
            "hookline:plugin@0.1.0",
        ),
        (
            "info-trap.wasm",
            read(guests::INFO_TRAP),
            "info call failed",
        ),
    ];
    for (i, (file, bytes, words)) in bad.iter().enumerate() {
        drop_plugin(&engine, file, bytes);
        let refused = eventually(&format!("{file} to be refused"), WAIT, || async {
            plugins(&engine)
                .await
                .into_iter()
                .find(|p| p["state"] == "refused" && p["file"] == *file)
        })
        .await;
        let error = refused["last_error"].as_str().unwrap();
        assert!(error.contains(words), "{file}: {error}");
        // Deliveries go on.
        engine
            .emit(
                &app,
                json!({ "id": format!("b{i}"), "source": "s", "type": "t" }),
            )
            .await;
        assert_eq!(receiver.next(WAIT).await.json()["id"], format!("b{i}"));
    }
    // Only the built-ins serve.
    let active: Vec<Value> = plugins(&engine)
        .await
        .into_iter()
        .filter(|p| p["state"] == "active")
        .collect();
    assert_eq!(active.len(), 6, "{active:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_plugin_is_contained_then_quarantined_and_a_new_version_lifts_it() {
    hookline_tests::on_backend!(crate::BACKEND);
    let mut options = EngineOptions::default();
    options
        .set("--plugin-quarantine-after", "4")
        .set("--retry-schedule", "");
    let engine = Engine::start_with(options).await;
    let mut mischief_rx = Receiver::start().await;
    let mut plain_rx = Receiver::start().await;
    drop_plugin(&engine, "mischief.wasm", &read(guests::MISCHIEF));
    wait_plugin_state(&engine, "mischief", "1.0.0", "active").await;
    let app = engine.create_app("mischief").await;
    engine
        .create_endpoint(
            &app,
            json!({ "url": mischief_rx.url, "plugin": "mischief" }),
        )
        .await;
    engine
        .create_endpoint(&app, json!({ "url": plain_rx.url }))
        .await;

    let cases = [
        ("mischief.loop", "CPU budget"),
        ("mischief.hog", "memory limit"),
        ("mischief.panic", "trapped"),
        ("mischief.huge", "memory limit"),
        // A plugin cannot end the engine: WASI's exit only ends the call.
        ("mischief.exit", "exit"),
    ];
    let mut event_ids = Vec::new();
    for (ty, _) in cases {
        let accepted = engine
            .emit(&app, json!({ "id": ty, "source": "s", "type": ty }))
            .await;
        event_ids.push(accepted[0]["id"].as_str().unwrap().to_string());
    }
    // The other endpoint is not held up by the misbehaving plugin.
    for _ in 0..cases.len() {
        plain_rx.next(WAIT).await;
    }
    for ((ty, words), event_id) in cases.iter().zip(&event_ids) {
        let failed = eventually(&format!("{ty} to fail"), WAIT, || async {
            let d = engine
                .deliveries(&format!("event_id={event_id}&status=failed"))
                .await;
            d.into_iter().next()
        })
        .await;
        let attempts = engine.attempts(failed["id"].as_str().unwrap()).await;
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(error.contains(words), "{ty}: {error}");
        assert_eq!(attempts[0]["plugin"]["name"], "mischief");
    }
    assert!(
        mischief_rx.drain().is_empty(),
        "nothing was sent for the failed calls"
    );

    // Five failures in a row: quarantined for this app, and its deliveries wait.
    eventually("mischief to be quarantined for the app", WAIT, || async {
        plugins(&engine).await.into_iter().find(|p| {
            p["name"] == "mischief"
                && p["quarantined_for"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == app.as_str()))
        })
    })
    .await;
    let accepted = engine
        .emit(
            &app,
            json!({ "id": "calm", "source": "s", "type": "mischief.calm" }),
        )
        .await;
    let calm = accepted[0]["id"].as_str().unwrap().to_string();
    plain_rx.next(WAIT).await;
    let waiting = eventually("the calm delivery to wait for the plugin", WAIT, || async {
        let d = engine
            .deliveries(&format!("event_id={calm}&status=held"))
            .await;
        d.into_iter().find(|d| {
            d["held_for"] == "plugin"
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("waiting for plugin"))
        })
    })
    .await;
    assert_eq!(waiting["attempts"], 0, "waiting is not an attempt");

    // A new build of the plugin lifts the quarantine and the delivery resumes at once.
    drop_plugin(
        &engine,
        "mischief.wasm",
        &rebuilt(&read(guests::MISCHIEF), "v1.0.0-rebuild"),
    );
    let r = mischief_rx.next(WAIT).await;
    assert_eq!(r.body.as_ref(), b"ok calm");
    engine
        .wait_deliveries(&format!("event_id={calm}&status=delivered"), 1)
        .await;
    wait_plugin_state(&engine, "mischief", "1.0.0", "active").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_plugin_makes_deliveries_wait_until_it_returns() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    drop_plugin(&engine, "swap.wasm", &read(guests::SWAP_V1));
    wait_plugin_state(&engine, "swap", "1.0.0", "active").await;
    let app = engine.create_app("removal").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url, "plugin": "swap" }))
        .await;

    std::fs::remove_file(engine.data_dir.join("plugins/swap.wasm")).unwrap();
    eventually("swap to be gone", WAIT, || async {
        (!plugins(&engine).await.iter().any(|p| p["name"] == "swap")).then_some(())
    })
    .await;
    let accepted = engine
        .emit(&app, json!({ "id": "r1", "source": "s", "type": "t" }))
        .await;
    let event = accepted[0]["id"].as_str().unwrap().to_string();
    eventually("the delivery to be held for its plugin", WAIT, || async {
        let d = engine
            .deliveries(&format!("event_id={event}&status=held"))
            .await;
        d.into_iter().find(|d| {
            d["held_for"] == "plugin"
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("not loaded"))
        })
    })
    .await;

    drop_plugin(&engine, "swap.wasm", &read(guests::SWAP_V2));
    assert_eq!(receiver.next(WAIT).await.json()["version"], 2);
    engine
        .wait_deliveries(&format!("event_id={event}&status=delivered"), 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_file_replaces_a_builtin_and_removing_it_brings_the_builtin_back() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let builtin = plugins(&engine)
        .await
        .into_iter()
        .find(|p| p["name"] == "webhook")
        .unwrap();
    // A rebuilt webhook plugin dropped in as a file takes over the name.
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-plugins/wasm32-wasip2/plugin/hookline_plugin_webhook.wasm");
    drop_plugin(
        &engine,
        "my-webhook.wasm",
        &rebuilt(&std::fs::read(&file).unwrap(), "mine"),
    );
    let replaced = eventually("the file to take over", WAIT, || async {
        let list = plugins(&engine).await;
        let shadowed = list.iter().any(|p| {
            p["name"] == "webhook" && p["source"] == "builtin" && p["state"] == "shadowed"
        });
        list.into_iter().find(|p| {
            p["name"] == "webhook" && p["source"] == "file" && p["state"] == "active" && shadowed
        })
    })
    .await;
    assert_ne!(replaced["hash"], builtin["hash"]);
    std::fs::remove_file(engine.data_dir.join("plugins/my-webhook.wasm")).unwrap();
    wait_plugin_state(
        &engine,
        "webhook",
        builtin["version"].as_str().unwrap(),
        "active",
    )
    .await;
    let now = plugins(&engine)
        .await
        .into_iter()
        .find(|p| p["name"] == "webhook")
        .unwrap();
    assert_eq!(now["source"], "builtin");
    assert!(Path::new(&engine.data_dir).join("plugins").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_twenty_plugins_from_the_cache() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    // 20 distinct components (each its own hash, so each its own artifact).
    let sources = [guests::SWAP_V1, guests::SWAP_V2, guests::MISCHIEF];
    for i in 0..20 {
        let bytes = rebuilt(&read(sources[i % sources.len()]), &format!("copy-{i}"));
        std::fs::write(plugins_dir.join(format!("p{i:02}.wasm")), bytes).unwrap();
    }
    let options = EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };

    let started = Instant::now();
    let mut cold = Engine::start_with(options.clone()).await;
    let cold_ms = started.elapsed().as_millis();
    cold.stop();
    let cold_log = cold.log();
    drop(cold);
    let started = Instant::now();
    let warm = Engine::start_with(options).await;
    let warm_ms = started.elapsed().as_millis();

    // The second start's "plugins ready" line: every component from the cache.
    let ready = |log: &str| {
        log.lines()
            .rfind(|l| l.contains("plugins ready"))
            .unwrap_or_default()
            .to_string()
    };
    let cold_line = ready(&cold_log);
    let warm_line = ready(&warm.log());
    assert!(
        cold_line.contains("compiled=26") && cold_line.contains("cached=0"),
        "{cold_line}"
    );
    assert!(
        warm_line.contains("compiled=0") && warm_line.contains("cached=26"),
        "{warm_line}"
    );
    println!(
        "restart with 20 plugin files + 6 built-ins: cold cache {cold_ms} ms to ready, warm cache {warm_ms} ms"
    );
}
