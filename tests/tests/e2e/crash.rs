//! Crash safety under load: the engine is killed with SIGKILL at random
//! moments while events pour in and deliveries are in flight, and restarted
//! on the same database each time. Afterwards every accepted event has been
//! received at least once, and every duplicate carries its original's
//! `webhook-id` (so a receiver de-duplicating on it sees each event once).
//!
//! `HOOKLINE_CRASH_EVENTS` and `HOOKLINE_CRASH_KILLS` scale it up (see
//! docs/reliability.md for a larger run).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_tests::{Engine, EngineOptions, Fault, FaultReceiver};
use rand::Rng;
use serde_json::{Value, json};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options(dir: &std::path::Path) -> EngineOptions {
    let mut o = EngineOptions {
        data_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    // A short lease, so what the killed process held is claimed again soon.
    o.set("--lease", "3s").set("--request-timeout", "1s");
    o
}

/// Sends events `from..to` in batches; marks each batch accepted on a 202.
/// Stops at the first error (the engine was killed): what was not confirmed
/// is sent again later, and idempotency keeps it from being stored twice.
async fn produce(
    url: String,
    key: String,
    app: String,
    todo: Vec<usize>,
    accepted: Arc<Mutex<HashSet<usize>>>,
) {
    let http = hookline_tests::client(&key);
    for chunk in todo.chunks(50) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({ "id": format!("c{i}"), "source": "crash", "type": "t", "data": { "i": i } }))
            .collect();
        let sent = http
            .post(format!("{url}/v1/events?app_id={app}"))
            .json(&batch)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => {
                accepted.lock().unwrap().extend(chunk.iter().copied());
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    hookline_tests::on_backend!(crate::BACKEND);
    let total = env_or("HOOKLINE_CRASH_EVENTS", 20_000);
    let kills = env_or("HOOKLINE_CRASH_KILLS", 10);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = FaultReceiver::start(Fault::ok()).await;
    let accepted: Arc<Mutex<HashSet<usize>>> = Arc::default();

    let engine = Engine::start_with(options(dir.path())).await;
    let app = engine.create_app("crash").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;
    let mut engine = Some(engine);
    let per_round = total.div_ceil(kills + 1);
    let mut rng = rand::rng();
    for round in 0..=kills {
        let running = match engine.take() {
            Some(e) => e,
            None => Engine::start_with(options(dir.path())).await,
        };
        // This round's share of the load, plus whatever an earlier round
        // did not get confirmed.
        let done = accepted.lock().unwrap().clone();
        let todo: Vec<usize> = (0..total.min((round + 1) * per_round))
            .filter(|i| !done.contains(i))
            .collect();
        let producer = tokio::spawn(produce(
            running.url.clone(),
            running.key.clone(),
            app.clone(),
            todo,
            accepted.clone(),
        ));
        if round == kills {
            producer.await.unwrap();
            engine = Some(running);
            break;
        }
        // Kill it at a random moment while it ingests and delivers.
        let at = Duration::from_millis(rng.random_range(100..900));
        tokio::time::sleep(at).await;
        let mut running = running;
        running.kill();
        let _ = producer.await;
    }
    let engine = engine.expect("the last engine runs");
    // Whatever is still unconfirmed goes now, to the last engine.
    let done = accepted.lock().unwrap().clone();
    let rest: Vec<usize> = (0..total).filter(|i| !done.contains(i)).collect();
    produce(
        engine.url.clone(),
        engine.key.clone(),
        app.clone(),
        rest,
        accepted.clone(),
    )
    .await;
    assert_eq!(
        accepted.lock().unwrap().len(),
        total,
        "every event accepted"
    );

    // Every accepted event arrives; duplicates keep their webhook-id.
    let mut webhook_ids: HashMap<u64, HashSet<String>> = HashMap::new();
    let mut received = 0usize;
    while webhook_ids.len() < total {
        let r = receiver.next(Duration::from_secs(120)).await;
        received += 1;
        let i = r.json()["data"]["i"].as_u64().expect("the event's index");
        webhook_ids
            .entry(i)
            .or_default()
            .insert(r.header("webhook-id").to_string());
    }
    // Stragglers already on their way.
    received += receiver.drain().len();
    let unique = webhook_ids.len();
    println!(
        "crash test: {kills} kills, sent {total}, received {received}, unique {unique}, duplicates {}",
        received - unique
    );
    assert!(
        (0..total as u64).all(|i| webhook_ids.contains_key(&i)),
        "none lost"
    );
    let split: Vec<_> = webhook_ids
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        split.is_empty(),
        "a duplicate must carry its original's webhook-id: {:?}",
        &split[..split.len().min(5)]
    );
    drop(engine);
}
