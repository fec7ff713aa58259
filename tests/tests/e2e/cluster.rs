//! Several engine processes on one PostgreSQL database: the work shared
//! without double-sending, a process killed mid-load and its work finished
//! by the others, and the database going away under load. Compiled only
//! into `e2e_postgres` (a SQLite file has one process).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hookline_tests::{Engine, EngineOptions, Received, Receiver, TcpProxy, eventually};
use serde_json::{Value, json};

const ENDPOINTS: usize = 50;

/// An app with `ENDPOINTS` endpoints on `receiver`, endpoint `i` taking the
/// events of type `t<i>`.
async fn fan(engine: &Engine, receiver: &Receiver) -> String {
    let app = engine.create_app("cluster").await;
    for i in 0..ENDPOINTS {
        engine
            .create_endpoint(
                &app,
                json!({ "url": format!("{}/ep{i}", receiver.url), "filter_types": [format!("t{i}")] }),
            )
            .await;
    }
    app
}

fn events(from: usize, to: usize) -> Value {
    Value::Array(
        (from..to)
            .map(|n| json!({ "id": format!("e{n}"), "source": "load", "type": format!("t{}", n % ENDPOINTS), "data": { "n": n } }))
            .collect(),
    )
}

/// Requests received, by `webhook-id`.
type ById = HashMap<String, Vec<Received>>;

fn record(by_id: &mut ById, r: Received) {
    by_id
        .entry(r.header("webhook-id").to_string())
        .or_default()
        .push(r);
}

/// Receives `n` requests and counts them by `webhook-id`.
async fn receive(receiver: &mut Receiver, n: usize, by_id: &mut ById) {
    for _ in 0..n {
        record(by_id, receiver.next(Duration::from_secs(120)).await);
    }
}

/// Records whatever has arrived meanwhile.
fn record_arrived(receiver: &mut Receiver, by_id: &mut ById) {
    for r in receiver.drain() {
        record(by_id, r);
    }
}

/// What a process says it did when it stops: (attempts, delivered).
fn work_done(engine: &Engine) -> (u64, u64) {
    let log = engine.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("dispatcher finished its work"))
        .unwrap_or_else(|| panic!("no summary in the log:\n{log}"));
    let field = |name: &str| -> u64 {
        let at = line
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("{name} in {line}"));
        line[at + name.len() + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    (field("attempts"), field("delivered"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_thirty_thousand_deliveries_exactly_once() {
    hookline_tests::on_backend!(crate::BACKEND);
    const EVENTS: usize = 30_000;
    let mut receiver = Receiver::start().await;
    // Few deliveries in flight per process, so the one that takes the
    // events in cannot send them all itself.
    let mut options = EngineOptions::default();
    options.set("--max-in-flight", "32");
    let a = Engine::start_with(options.clone()).await;
    let b = a.join(options.clone()).await;
    let c = a.join(options).await;
    let app = fan(&a, &receiver).await;

    // Every event goes in through the first process, which leases to itself
    // only what it can send soon; the rest is announced, and the three
    // claim it from the database. So the claim path is what shares the
    // work, with SKIP LOCKED keeping the claims apart.
    let mut engines = [a, b, c];
    let started = Instant::now();
    let emitter = {
        let (urls, key) = (
            engines.iter().map(|e| e.url.clone()).collect::<Vec<_>>(),
            engines[0].key.clone(),
        );
        let app = app.clone();
        tokio::spawn(async move {
            let http = hookline_tests::client(&key);
            for from in (0..EVENTS).step_by(250) {
                let url = format!("{}/v1/events?app_id={app}", urls[0]);
                let r = http
                    .post(url)
                    .json(&events(from, from + 250))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            }
        })
    };
    let mut by_id = HashMap::new();
    receive(&mut receiver, EVENTS, &mut by_id).await;
    emitter.await.unwrap();
    let elapsed = started.elapsed();

    // Stop the three (each finishes what it has); nothing else may come.
    for engine in &mut engines {
        engine.stop();
    }
    record_arrived(&mut receiver, &mut by_id);
    assert_eq!(by_id.len(), EVENTS, "one webhook-id per delivery");
    let twice: Vec<_> = by_id.iter().filter(|(_, v)| v.len() > 1).collect();
    if !twice.is_empty() {
        // What the processes warned about.
        for (i, engine) in engines.iter().enumerate() {
            for line in engine
                .log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("stopp"))
                .take(20)
            {
                println!("  process {}: {line}", i + 1);
            }
        }
        for (id, copies) in twice.iter().take(3) {
            let gap = copies[1].at.duration_since(copies[0].at);
            println!("{id}: second copy {gap:?} after the first");
        }
    }
    assert!(
        twice.is_empty(),
        "{} deliveries arrived more than once",
        twice.len()
    );
    let events_seen: HashSet<u64> = by_id
        .values()
        .map(|v| v[0].json()["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(events_seen.len(), EVENTS, "every event delivered");

    let counts: Vec<(u64, u64)> = engines.iter().map(work_done).collect();
    println!(
        "{EVENTS} deliveries over {ENDPOINTS} endpoints by 3 processes in {:.1} s: {}",
        elapsed.as_secs_f64(),
        counts
            .iter()
            .enumerate()
            .map(|(i, (_, d))| format!("process {} delivered {d}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(
        counts.iter().map(|(_, d)| d).sum::<u64>(),
        EVENTS as u64,
        "the processes' own counts add up: {counts:?}"
    );
    assert!(
        counts.iter().all(|(_, d)| *d > 0),
        "every process did some of the work: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_s_work_is_finished_by_the_others() {
    hookline_tests::on_backend!(crate::BACKEND);
    const EVENTS: usize = 6_000;
    // Short leases, so the survivors take the victim's work within the test;
    // not so short that a survivor's own send outlives its lease on a loaded
    // machine (it starts only with 4 s of lease left), which would send a
    // third copy. Generous request timeouts: a receiver answering slowly on
    // a loaded machine must not turn a survivor's send into a retry (the
    // receiver has the first copy already: at-least-once, not this test).
    let mut options = EngineOptions::default();
    options
        .set("--lease", "8s")
        .set("--request-timeout", "10s")
        .set("--connect-timeout", "10s");
    let mut receiver = Receiver::start().await;
    let victim = Engine::start_with(options.clone()).await;
    let app = fan(&victim, &receiver).await;
    let b = victim.join(options.clone()).await;
    let c = victim.join(options.clone()).await;

    // The victim takes half the events; the others a quarter each.
    let mut victim = victim;
    for (i, from) in (0..EVENTS).step_by(250).enumerate() {
        let engine = match i % 4 {
            0 | 1 => &victim,
            2 => &b,
            _ => &c,
        };
        engine.emit(&app, events(from, from + 250)).await;
    }
    let mut by_id = ById::new();
    receive(&mut receiver, EVENTS / 5, &mut by_id).await;
    victim.kill();
    let killed_at = Instant::now();

    // Everything arrives: the survivors send what the victim held once its
    // leases run out.
    eventually("every delivery to arrive", Duration::from_secs(120), || {
        record_arrived(&mut receiver, &mut by_id);
        let done = by_id.len() >= EVENTS;
        async move { done.then_some(()) }
    })
    .await;
    let (mut b, mut c) = (b, c);
    b.stop();
    c.stop();
    record_arrived(&mut receiver, &mut by_id);
    assert_eq!(by_id.len(), EVENTS, "nothing lost");
    // Duplicates: only deliveries the victim had sent before it died (a
    // first copy received before the kill), each under its own webhook-id.
    let twice: Vec<&Vec<Received>> = by_id.values().filter(|v| v.len() > 1).collect();
    for copies in &twice {
        assert_eq!(copies.len(), 2, "sent at most twice");
        assert!(
            copies[0].at <= killed_at + Duration::from_millis(200),
            "a duplicate whose first copy came after the kill: not the victim's"
        );
        assert_eq!(copies[0].body, copies[1].body, "the same request again");
    }
    println!(
        "killed one of three processes after {} deliveries: {} of {EVENTS} were sent twice (in flight at the kill)",
        EVENTS / 5,
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_for_ten_seconds_loses_nothing() {
    hookline_tests::on_backend!(crate::BACKEND);
    // The engine reaches the database through a proxy this test can cut.
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = hookline_tests::database::database_url_for(dir.path()).unwrap();
    let mut via_proxy = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        via_proxy.host_str().unwrap(),
        via_proxy.port().unwrap_or(5432)
    );
    let proxy = TcpProxy::start(
        tokio::net::lookup_host(&target)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await;
    via_proxy.set_port(Some(proxy.port)).unwrap();
    std::fs::write(dir.path().join("test-database-url"), via_proxy.as_str()).unwrap();

    let mut receiver = Receiver::start().await;
    let engine = Engine::start_with(EngineOptions {
        data_dir: Some(dir.path().to_path_buf()),
        ..EngineOptions::default()
    })
    .await;
    let app = engine.create_app("outage").await;
    engine
        .create_endpoint(&app, json!({ "url": receiver.url }))
        .await;

    // One event every 10 ms for 16 s; the database is away from 3 s to 13 s.
    let mut accepted = HashSet::new();
    let (mut refused, mut ready_during_outage) = (0, None);
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    let mut cut = false;
    let mut restored = false;
    let mut accepted_after = 0;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(16) {
        pace.tick().await;
        if !cut && started.elapsed() >= Duration::from_secs(3) {
            proxy.cut();
            cut = true;
        }
        if cut
            && !restored
            && ready_during_outage.is_none()
            && started.elapsed() >= Duration::from_secs(6)
        {
            ready_during_outage = Some(engine.get("/readyz").await.0);
        }
        if cut && !restored && started.elapsed() >= Duration::from_secs(13) {
            proxy.restore();
            restored = true;
        }
        let id = format!("o{n}");
        n += 1;
        let r = engine
            .http
            .post(format!("{}/v1/events?app_id={app}", engine.url))
            .json(&json!({ "id": id, "source": "outage", "type": "t" }))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => {
                accepted.insert(id);
                if restored {
                    accepted_after += 1;
                }
            }
            503 => {
                assert!(
                    r.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                );
                refused += 1;
            }
            other => panic!("{id}: {other} {}", r.text().await.unwrap()),
        }
    }
    assert!(
        refused > 0,
        "the outage was felt: some events were refused with 503"
    );
    assert_eq!(
        ready_during_outage,
        Some(503),
        "/readyz said the store is away"
    );
    assert!(
        accepted_after > 0,
        "the engine took events again after the database came back, without a restart"
    );

    // Every event accepted arrives, those accepted just before the cut too.
    let mut seen = HashSet::new();
    eventually(
        "every accepted event to arrive",
        Duration::from_secs(60),
        || {
            for r in receiver.drain() {
                seen.insert(r.json()["id"].as_str().unwrap().to_string());
            }
            let done = accepted.is_subset(&seen);
            async move { done.then_some(()) }
        },
    )
    .await;
    println!(
        "database away for 10 s: {} events accepted and delivered, {refused} refused with 503",
        accepted.len()
    );
    let (status, _) = engine.get("/readyz").await;
    assert_eq!(status, 200);
    let mut engine = engine;
    engine.stop();
    hookline_tests::database::drop_database_of(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_or_revoked_through_one_process_holds_in_the_others() {
    hookline_tests::on_backend!(crate::BACKEND);
    let a = Engine::start().await;
    let b = a.join(EngineOptions::default()).await;
    let app = a.create_app("keys").await;
    let (status, made) = a
        .post("/v1/api-keys", &json!({ "name": "app key", "app_id": app }))
        .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap();
    let app_client = hookline_tests::client(key);

    // At once, through the other process.
    let r = app_client
        .get(format!("{}/v1/apps/{app}", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a new key works through every process at once"
    );

    // Revoked through the first process: refused by the second shortly
    // after (it reloads keys every 2 s).
    let id = made["id"].as_str().unwrap();
    assert_eq!(a.delete(&format!("/v1/api-keys/{id}")).await, 200);
    let revoked_at = Instant::now();
    eventually(
        "the revocation to reach the other process",
        Duration::from_secs(10),
        || {
            let (client, url) = (app_client.clone(), format!("{}/v1/apps/{app}", b.url));
            async move {
                let status = client.get(url).send().await.unwrap().status();
                (status == 401).then_some(())
            }
        },
    )
    .await;
    println!(
        "a revocation through one process was enforced by another after {} ms",
        revoked_at.elapsed().as_millis()
    );
}

/// Three processes, each with deliveries of one endpoint leased to itself.
async fn three_sharing_one_endpoint(
    receiver: &Receiver,
    endpoint: Value,
    events: usize,
) -> [Engine; 3] {
    let a = Engine::start().await;
    let b = a.join(EngineOptions::default()).await;
    let c = a.join(EngineOptions::default()).await;
    let app = a.create_app("shared-limits").await;
    let mut body = endpoint;
    body["url"] = json!(format!("{}/limited", receiver.url));
    a.create_endpoint(&app, body).await;
    // Each process ingests a third and leases those deliveries to itself, so
    // all three send to the endpoint at once unless the database keeps them
    // to its limits.
    let engines = [a, b, c];
    for n in 0..events {
        engines[n % 3]
            .emit(
                &app,
                json!([{ "id": format!("l{n}"), "source": "limits", "type": "t", "data": { "n": n } }]),
            )
            .await;
    }
    engines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_s_rate_limit_holds_for_the_cluster() {
    hookline_tests::on_backend!(crate::BACKEND);
    const EVENTS: usize = 15;
    let mut receiver = Receiver::start().await;
    // 5 per second, no burst: 200 ms apart, for the three processes together
    // (each alone would send 5 a second: 15 a second for the three).
    let mut engines = three_sharing_one_endpoint(
        &receiver,
        json!({ "rate_limit": { "per_second": 5, "burst": 1 } }),
        EVENTS,
    )
    .await;
    let mut arrivals = Vec::new();
    for _ in 0..EVENTS {
        arrivals.push(receiver.next(Duration::from_secs(60)).await.at);
    }
    for engine in &mut engines {
        engine.stop();
    }
    assert!(receiver.drain().is_empty(), "nothing sent twice");
    // Sends are booked 200 ms apart; arrival adds a few ms of jitter each.
    let span = arrivals[EVENTS - 1].duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_millis(200 * (EVENTS as u64 - 1) * 9 / 10),
        "{EVENTS} requests at 5/s took only {span:?}"
    );
    for (i, at) in arrivals.iter().enumerate() {
        let within_a_second = arrivals[i..]
            .iter()
            .take_while(|later| later.duration_since(*at) < Duration::from_secs(1))
            .count();
        assert!(
            within_a_second <= 6,
            "{within_a_second} requests within one second at 5/s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_s_max_in_flight_holds_for_the_cluster() {
    hookline_tests::on_backend!(crate::BACKEND);
    const EVENTS: usize = 12;
    const MAX: usize = 2;
    // The receiver answers only when the test lets it, so the requests in
    // flight are exactly those received and not yet released.
    let mut receiver = Receiver::holding().await;
    let mut engines = three_sharing_one_endpoint(
        &receiver,
        json!({ "max_in_flight": MAX, "rate_limit": { "per_second": 0 } }),
        EVENTS,
    )
    .await;
    let mut seen = HashSet::new();
    while seen.len() < EVENTS {
        // The endpoint fills up to its limit...
        let mut in_flight = Vec::new();
        while in_flight.len() < MAX.min(EVENTS - seen.len()) {
            in_flight.push(receiver.next(Duration::from_secs(60)).await);
        }
        // ...and no process sends more while those are held (each alone
        // would send up to MAX, and a process finds new room within its
        // 200 ms retry, or at once when woken).
        let more = tokio::time::timeout(
            Duration::from_millis(1500),
            receiver.next(Duration::from_secs(60)),
        )
        .await;
        assert!(
            more.is_err(),
            "a request beyond max_in_flight {MAX} arrived while {} were in flight",
            in_flight.len()
        );
        for r in &in_flight {
            assert!(
                seen.insert(r.header("webhook-id").to_string()),
                "sent twice"
            );
        }
        receiver.release(in_flight.len());
    }
    for engine in &mut engines {
        engine.stop();
    }
    assert!(receiver.drain().is_empty(), "nothing sent twice");
}
