//! `hookline plugin bench`: load time and per-call cost of each plugin's
//! transform through wasmtime, on the engine's own call path (the app's warm
//! instances, deadline, fuel, memory cap, output checks), for a typical
//! 1 KiB event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::args::PluginBenchArgs;
use crate::plugins::{Limits, LoadedPlugin, PluginEvent, PluginHost, PluginSource, builtin};

/// The typical event: an order of about 1 KiB of `data`.
const DATA: &str = r#"{"order_id":"ord_8812","status":"paid","total":"149.90","currency":"EUR","customer":{"name":"Ada Lovelace","email":"ada@example.test"},"items":[{"sku":"BK-001","name":"Notes on the Analytical Engine","qty":1,"price":"99.90"},{"sku":"PN-204","name":"Fountain pen","qty":2,"price":"25.00"}],"shipping":{"method":"express","address":"12 St James's Square, London"},"url":"https://shop.example.test/orders/ord_8812","note":"Please gift-wrap the book and include a card that says: congratulations on the first program. Deliver before noon if possible; the recipient leaves for Paris in the afternoon and will not be back for a fortnight.","tags":["gift","express","vip"],"channel":"web","coupon":null,"placed_at":"2026-11-23T11:58:31Z","payment":{"method":"card","brand":"visa","last4":"4242"},"referrer":"newsletter-2026-11","gift_message":"Happy birthday, Ada! With love from all of us at the Analytical Society, see you at the next meeting.","loyalty_points":1499,"warehouse":"LDN-2"}"#;

pub fn run(args: PluginBenchArgs) -> anyhow::Result<()> {
    let host = PluginHost::new(Limits::default(), None)?;
    let config = super::plugin::file_or_text(&args.config)?;
    // Each load compiles (no cache) and runs the load-time checks.
    let timed_load = |load: &dyn Fn() -> anyhow::Result<LoadedPlugin>| {
        let started = Instant::now();
        load().map(|p| (Arc::new(p), started.elapsed()))
    };
    let plugins: Vec<(Arc<LoadedPlugin>, Duration)> = if args.files.is_empty() {
        builtin::BUILTIN
            .iter()
            .map(|(_, bytes)| timed_load(&|| host.load(bytes, PluginSource::Builtin)))
            .collect::<Result<_, _>>()?
    } else {
        args.files
            .iter()
            .map(|f| timed_load(&|| host.load_file(f)))
            .collect::<Result<_, _>>()?
    };
    let event = PluginEvent {
        id: "evt-bench-1",
        ty: "order.created",
        source: "https://shop.example.test",
        subject: Some("ord_8812"),
        time: "2026-11-23T12:00:00Z",
        data: DATA,
        extensions: "{}",
        app_id: "app_bench",
    };
    println!(
        "plugin transform through wasmtime, {}-byte data, {} calls each",
        DATA.len(),
        args.calls
    );
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>10} {:>11} {:>10} {:>12}",
        "plugin",
        "load",
        "warm p50",
        "warm p99",
        "fresh p50",
        "fuel/call",
        "bytes out",
        "2 threads/s"
    );
    for (plugin, load) in &plugins {
        let (out, cost) = plugin.transform_measured(&event, &config);
        let out = out.map_err(|e| anyhow::anyhow!("{}: {e}", plugin.info.name))?;
        let bytes: usize = out.iter().map(|r| r.body.len()).sum();
        for _ in 0..1000 {
            plugin.transform(&event, &config).ok();
        }
        let warm = time_calls(args.calls, || {
            plugin.transform(&event, &config).ok();
        });
        let fresh = time_calls(args.calls.min(5_000), || {
            plugin.drop_warm();
            plugin.transform(&event, &config).ok();
        });
        let rate = parallel_rate(plugin, &event, &config, 2, args.calls);
        println!(
            "{:<12} {:>7.0}ms {:>8.1}µs {:>8.1}µs {:>8.1}µs {:>11} {:>10} {:>12.0}",
            plugin.info.name,
            load.as_secs_f64() * 1e3,
            micros(percentile(&warm, 0.5)),
            micros(percentile(&warm, 0.99)),
            micros(percentile(&fresh, 0.5)),
            cost.fuel,
            bytes,
            rate
        );
    }
    Ok(())
}

fn time_calls(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Calls per second with `threads` threads calling at once.
fn parallel_rate(
    plugin: &Arc<LoadedPlugin>,
    event: &PluginEvent<'_>,
    config: &str,
    threads: usize,
    calls: usize,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..calls {
                    plugin.transform(event, config).ok();
                }
            });
        }
    });
    (threads * calls) as f64 / start.elapsed().as_secs_f64()
}
