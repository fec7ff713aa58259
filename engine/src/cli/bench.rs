//! `hookline bench`: end-to-end throughput and latency on this machine.
//!
//! Starts the engine as a child process (this same binary, `serve`) on a
//! fresh SQLite file (or `--processes N` of them on one PostgreSQL database), a receiver on 127.0.0.1 in this process, creates one
//! endpoint (or `--endpoints N`, optionally with a payload `--filter`), emits
//! N events with bounded concurrency and waits until every delivery has been
//! received. Prints deliveries/s end to end, emit→received
//! latency percentiles and the engine's peak RSS. Everything stays on
//! loopback, and the run ends by itself (all received, or the timeout).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::cli::args::BenchArgs;

struct Received {
    start: Instant,
    count: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
    seen: Mutex<Vec<u8>>,
    duplicates: AtomicUsize,
    /// Events emitted.
    events: usize,
    /// Deliveries expected: events × endpoints.
    target: usize,
    all: Notify,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.events >= 1 && args.batch >= 1 && args.concurrency >= 1,
        "--events, --batch and --concurrency must be at least 1"
    );
    anyhow::ensure!(
        (1..=100).contains(&args.endpoints),
        "--endpoints must be 1 to 100"
    );
    anyhow::ensure!(
        (1..=8).contains(&args.processes),
        "--processes must be 1 to 8"
    );
    anyhow::ensure!(
        args.processes == 1
            || args
                .database_url
                .as_ref()
                .is_some_and(|url| url.backend() == crate::store::Backend::Postgres),
        "--processes above 1 needs --database-url postgres://… (a SQLite file has one process)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hookline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let received = Arc::new(Received {
        start: Instant::now(),
        count: AtomicUsize::new(0),
        latencies_us: Mutex::new(Vec::with_capacity(args.events)),
        seen: Mutex::new(vec![0; args.events * args.endpoints]),
        duplicates: AtomicUsize::new(0),
        events: args.events,
        target: args.events * args.endpoints,
        all: Notify::new(),
    });
    let receiver_url = start_receiver(received.clone()).await?;
    let mut engines = vec![Engine::start(args, &dir.join("0"))?];
    // The first engine wrote its first admin key into its data directory;
    // the others find it in the database they share.
    let key = std::fs::read_to_string(dir.join("0").join(crate::auth::ADMIN_KEY_FILE))
        .context("the engine wrote no admin key")?;
    for i in 1..args.processes {
        engines.push(Engine::start(args, &dir.join(i.to_string()))?);
    }
    let urls: Vec<&str> = engines.iter().map(|e| e.url.as_str()).collect();
    let result = drive(args, &urls, key.trim(), &receiver_url, &received).await;
    let peak_rss = engines.iter().map(Engine::peak_rss_kib).max().flatten();
    let engine_cpu = engines
        .iter()
        .map(|e| cpu_secs(&format!("/proc/{}/stat", e.child.id())))
        .sum::<Option<f64>>();
    let own_cpu = cpu_secs("/proc/self/stat");
    for engine in &mut engines {
        engine.stop();
    }
    // Who delivered what: each process logs its count when it stops.
    let shares: Vec<String> = engines.iter().map(Engine::delivered).collect();
    let stats = result?;

    let mut lat = received.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let got = received.count.load(Ordering::Relaxed);
    println!(
        "hookline bench: {} events of {} B data, batch {}, concurrency {}, plugin {}, durability {:?}, {} endpoint(s), filter {}, database {}, {} process(es)",
        args.events,
        args.data_bytes,
        args.batch,
        args.concurrency,
        args.plugin,
        args.durability,
        args.endpoints,
        args.filter.as_deref().unwrap_or("none"),
        args.database_url
            .as_ref()
            .map_or_else(|| "a SQLite file".to_string(), ToString::to_string),
        args.processes
    );
    println!(
        "  emitted in        {:>8.2} s  ({:.0} events/s accepted)",
        stats.emit_secs,
        args.events as f64 / stats.emit_secs
    );
    println!(
        "  all received in   {:>8.2} s  ({:.0} deliveries/s end to end)",
        stats.total_secs,
        got as f64 / stats.total_secs
    );
    if lat.is_empty() {
        println!(
            "  latency: not measured (this plugin's payload does not carry the bench's timestamps)"
        );
    } else {
        println!(
            "  latency emit→received  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            pct(0.50) as f64 / 1000.0,
            pct(0.99) as f64 / 1000.0,
            lat.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
    println!(
        "  received {} of {}, duplicates {}",
        got,
        received.target,
        received.duplicates.load(Ordering::Relaxed)
    );
    if let (Some(engine_cpu), Some(own_cpu)) = (engine_cpu, own_cpu) {
        println!(
            "  CPU time          engine {engine_cpu:.1} s, load generator + receiver {own_cpu:.1} s (of {:.1} s × 2 cores)",
            stats.total_secs
        );
        println!(
            "  engine CPU per delivery {:.0} µs",
            engine_cpu * 1e6 / got.max(1) as f64
        );
    }
    if args.processes > 1 {
        println!("  delivered by each process  {}", shares.join(" / "));
    }
    match peak_rss {
        Some(kib) => println!("  engine peak RSS   {:.1} MiB", kib as f64 / 1024.0),
        None => println!("  engine peak RSS   unknown (no /proc)"),
    }
    if got < received.target {
        bail!(
            "only {got} of {} deliveries were received within {:?}",
            received.target,
            args.timeout
        );
    }
    Ok(())
}

struct Stats {
    emit_secs: f64,
    total_secs: f64,
}

async fn drive(
    args: &BenchArgs,
    engines: &[&str],
    key: &str,
    receiver: &str,
    received: &Arc<Received>,
) -> anyhow::Result<Stats> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .default_headers(headers)
        .build()?;
    let engine = engines[0];
    let app: serde_json::Value = http
        .post(format!("{engine}/v1/apps"))
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let app = app["id"].as_str().context("no app id")?.to_string();
    for i in 0..args.endpoints {
        // Endpoints that take all the engine can send: the bench measures
        // the engine, not the per-endpoint caps that protect other endpoints
        // (nor a chat platform's rate limit, when --plugin names one). The
        // cap is each engine's default (`--endpoint-max-in-flight`), not the
        // endpoint's own, which several processes would share through the
        // database.
        let mut body = json!({
            "url": format!("{receiver}/hook/{i}"),
            "plugin": args.plugin,
            "rate_limit": {"per_second": 0},
        });
        if let Some(filter) = &args.filter {
            body["filter"] = json!(filter);
        }
        let ep = http
            .post(format!("{engine}/v1/apps/{app}/endpoints"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            ep.status().is_success(),
            "creating the endpoint failed: {}",
            ep.text().await?
        );
    }

    let filler = "x".repeat(args.data_bytes.saturating_sub(120));
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let urls: Vec<Arc<str>> = engines
        .iter()
        .map(|engine| format!("{engine}/v1/events?app_id={app}").into())
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0;
    while i < args.events {
        let n = args.batch.min(args.events - i);
        let mut events = Vec::with_capacity(n);
        for k in i..i + n {
            // The receiver reads `bench_seq` and `bench_t` (µs since start) back.
            let t = received.start.elapsed().as_micros() as u64;
            events.push(json!({
                "specversion": "1.0", "id": format!("bench-{k}"), "source": "hookline-bench",
                "type": "bench.event", "time": "2026-11-23T12:00:00Z",
                "data": {"bench_seq": k, "bench_t": t, "customer": "Ada Lovelace", "status": "paid", "filler": filler}
            }));
        }
        i += n;
        let body = if n == 1 {
            events.pop().unwrap()
        } else {
            serde_json::Value::Array(events)
        };
        let permit = limit.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), urls[tasks.len() % urls.len()].clone());
        tasks.push(tokio::spawn(async move {
            let r = http.post(&*url).json(&body).send().await;
            drop(permit);
            match r {
                Ok(r) if r.status().as_u16() == 202 => Ok(()),
                Ok(r) => Err(anyhow::anyhow!("emit answered {}", r.status())),
                Err(e) => Err(anyhow::anyhow!("emit failed: {e}")),
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let emit_secs = started.elapsed().as_secs_f64();
    let wait = received.all.notified();
    if received.count.load(Ordering::Relaxed) < received.target {
        let _ = tokio::time::timeout(args.timeout, wait).await;
    }
    Ok(Stats {
        emit_secs,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

async fn start_receiver(received: Arc<Received>) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/hook/{endpoint}", axum::routing::post(receive))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn receive(
    State(r): State<Arc<Received>>,
    axum::extract::Path(endpoint): axum::extract::Path<usize>,
    body: Bytes,
) -> StatusCode {
    let now = r.start.elapsed().as_micros() as u64;
    let (Some(seq), Some(t)) = (
        number_after(&body, b"\"bench_seq\":"),
        number_after(&body, b"\"bench_t\":"),
    ) else {
        // A chat plugin's message does not carry the raw data: count it,
        // without latency or duplicate detection.
        if r.count.fetch_add(1, Ordering::Relaxed) + 1 == r.target {
            r.all.notify_one();
        }
        return StatusCode::NO_CONTENT;
    };
    {
        // One slot per (endpoint, event).
        let slot = endpoint * r.events + seq as usize;
        let mut seen = r.seen.lock().unwrap();
        match seen.get_mut(slot) {
            Some(0) => seen[slot] = 1,
            Some(_) => {
                r.duplicates.fetch_add(1, Ordering::Relaxed);
                return StatusCode::NO_CONTENT;
            }
            None => return StatusCode::BAD_REQUEST,
        }
    }
    r.latencies_us.lock().unwrap().push(now.saturating_sub(t));
    if r.count.fetch_add(1, Ordering::Relaxed) + 1 == r.target {
        r.all.notify_one();
    }
    StatusCode::NO_CONTENT
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
fn cpu_secs(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// The unsigned integer after `key` in `body` (cheaper than parsing the JSON).
fn number_after(body: &[u8], key: &[u8]) -> Option<u64> {
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Where each engine's log goes, in its data directory.
const LOG_FILE: &str = "engine.log";

struct Engine {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Engine {
    fn start(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Engine> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join(LOG_FILE))?;
        let durability = match args.durability {
            crate::store::Durability::Full => "full",
            crate::store::Durability::Normal => "normal",
        };
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--durability",
                durability,
                // The bench's receiver is on loopback.
                "--allow-network",
                "127.0.0.0/8",
                "--endpoint-max-in-flight",
                &args.endpoint_max_in_flight.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(
                args.database_url
                    .iter()
                    .flat_map(|url| ["--database-url".to_string(), url.expose()]),
            )
            .env(
                "HOOKLINE_LOG",
                // Warnings, and the dispatcher's count of its work at the end.
                std::env::var("HOOKLINE_LOG")
                    .unwrap_or_else(|_| "warn,hookline::delivery::dispatcher=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("failed to start the engine")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            if let Some(url) = line?.strip_prefix("hookline listening on ") {
                let url = url.to_string();
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(Engine {
                    child,
                    url,
                    dir: dir.to_path_buf(),
                });
            }
        }
        bail!("the engine exited before it was ready")
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The deliveries this engine says it made (after it stopped), or "?".
    fn delivered(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default();
        log.lines()
            .rfind(|l| l.contains("dispatcher finished its work"))
            .and_then(|line| {
                let at = line.find("delivered=")? + "delivered=".len();
                Some(
                    line[at..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>(),
                )
            })
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "?".into())
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
    }
}
