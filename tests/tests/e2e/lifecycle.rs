//! Shutdown and restart: deliveries in flight finish or are handed back,
//! and nothing accepted is lost across a restart.

use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Receiver};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn options(dir: &std::path::Path, grace: &str) -> EngineOptions {
    let mut o = EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    o.args
        .extend(["--shutdown-grace".to_string(), grace.to_string()]);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_delivery_in_flight_finish() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::holding().await;
    let mut engine = Engine::start_with(options(dir.path(), "20s")).await;
    let app = engine.create_app("graceful").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    engine
        .emit(&app, json!({ "id": "g1", "source": "s", "type": "t" }))
        .await;

    let held = receiver.next(WAIT).await; // in flight now
    engine.terminate();
    receiver.release(1);
    let status = tokio::task::block_in_place(|| engine.stop()).expect("was running");
    assert!(status.success(), "{}", engine.log());
    drop(engine);

    // After a restart on the same database the delivery is done, attempted once.
    let engine = Engine::start_with(options(dir.path(), "20s")).await;
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["id"], held.header("webhook-id"));
    assert_eq!(delivered[0]["attempts"], 1);
    assert!(receiver.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_still_in_flight_at_the_deadline_is_sent_after_restart() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::holding().await;
    // The request would wait a minute: shutdown must not.
    let mut slow = options(dir.path(), "300ms");
    slow.set("--request-timeout", "60s").set("--lease", "90s");
    let mut engine = Engine::start_with(slow).await;
    let app = engine.create_app("deadline").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    engine
        .emit(&app, json!({ "id": "d1", "source": "s", "type": "t" }))
        .await;

    let first = receiver.next(WAIT).await;
    let stopping = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| engine.stop()).expect("was running");
    let took = stopping.elapsed();
    assert!(status.success(), "{}", engine.log());
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?} with a grace of 300ms: the grace period is not enforced"
    );
    assert!(
        engine.log().contains("leases are given back"),
        "{}",
        engine.log()
    );
    drop(engine);

    // Its lease was given back, so the next start sends it at once.
    let engine = Engine::start_with(options(dir.path(), "20s")).await;
    let second = receiver.next(WAIT).await;
    assert_eq!(
        second.header("webhook-id"),
        first.header("webhook-id"),
        "same delivery, same webhook-id"
    );
    receiver.release(2);
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["id"], first.header("webhook-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_engine_is_killed() {
    hookline_tests::on_backend!(crate::BACKEND);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::holding().await;
    let mut opts = options(dir.path(), "20s");
    opts.args
        .extend(["--lease", "2s", "--max-in-flight", "4"].map(String::from));
    let mut engine = Engine::start_with(opts.clone()).await;
    let app = engine.create_app("crash").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    const N: usize = 20;
    let events: Vec<_> = (0..N)
        .map(|i| json!({ "id": format!("k{i}"), "source": "s", "type": "t" }))
        .collect();
    engine.emit(&app, json!(events)).await;

    // Four deliveries are in flight (held by the receiver), the rest queued: kill -9.
    for _ in 0..4 {
        receiver.next(WAIT).await;
    }
    engine.kill();
    drop(engine);

    // A new process on the same database delivers everything once the dead
    // process's leases run out, including the four that were in flight.
    receiver.release(1000);
    let engine = Engine::start_with(opts).await;
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), N)
        .await;
    assert_eq!(delivered.len(), N);
    let mut got: Vec<String> = receiver
        .drain()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(
        got.len(),
        N,
        "every event reached the receiver after the crash: {got:?}"
    );
}
