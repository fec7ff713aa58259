//! `hookline plugin test FILE` (alias `check`): loads a component exactly as
//! the engine does, runs one event through `validate-config`, `transform`
//! and `interpret-response` on the engine's call path, and prints the
//! requests, the verdict, and a cost report against the limits, in the
//! manner of Shopify's function-runner. A call that breaks a limit makes the
//! command exit with status 1.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::args::PluginTestArgs;
use crate::cloudevent::{self, EventLimits};
use crate::plugins::{
    CallCost, CallError, Limits, PluginEvent, PluginHost, PluginResponse, Verdict,
};

const SAMPLE_EVENT: &str = r#"{
  "specversion": "1.0",
  "id": "evt-sample-1",
  "source": "https://shop.example.test",
  "type": "order.created",
  "subject": "ord_8812",
  "time": "2026-11-23T12:00:00Z",
  "data": {
    "order_id": "ord_8812",
    "status": "paid",
    "total": "149.90",
    "currency": "EUR",
    "customer": {"name": "Ada Lovelace", "email": "ada@example.test"},
    "url": "https://shop.example.test/orders/ord_8812"
  }
}"#;

/// The app the command's calls run as.
const APP: &str = "app_test";

/// A call broke a limit: the command exits with status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

/// Text from `arg` if it is a readable file, else `arg` itself.
pub(super) fn file_or_text(arg: &str) -> anyhow::Result<String> {
    let path = Path::new(arg);
    if !arg.trim_start().starts_with(['{', '[']) && path.is_file() {
        return std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()));
    }
    Ok(arg.to_string())
}

pub fn test(args: PluginTestArgs) -> anyhow::Result<()> {
    let limits = Limits {
        call_timeout: args.timeout,
        validate_timeout: args.timeout,
        fuel: args.fuel,
        cpu_time: args.cpu_time,
        memory_bytes: args.memory_mib.max(1) << 20,
        memory_budget: (args.memory_mib.max(1) << 20) * 8,
        output_bytes: args.output_kib.max(1) << 10,
        ..Limits::default()
    };
    let config = file_or_text(&args.config)?;
    serde_json::from_str::<serde_json::Value>(&config)
        .map_err(|e| anyhow::anyhow!("--config is not JSON: {e}"))?;
    let host: Arc<PluginHost> = PluginHost::new(limits.clone(), None)?;
    let plugin = host.load_file(&args.file)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "plugin:      {} {}",
        plugin.info.name, plugin.info.version
    )?;
    writeln!(out, "description: {}", plugin.info.description)?;
    writeln!(out, "world:       hookline:plugin@{}", plugin.world)?;
    writeln!(
        out,
        "sdk:         {}",
        plugin.sdk_version.as_deref().unwrap_or("(not recorded)")
    )?;
    writeln!(out, "sha256:      {}", plugin.hash)?;
    writeln!(out, "config:      {}", plugin.info.config_schema)?;

    let mut exceeded: Vec<String> = Vec::new();
    match plugin.validate_config(APP, &config, None) {
        Ok(()) => {}
        Err(CallError::Guest(g)) => anyhow::bail!("config refused: {g}"),
        Err(e) => exceeded.push(format!("validate-config: {e}")),
    }
    let event_text = match &args.event {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?,
        None => SAMPLE_EVENT.to_string(),
    };
    let events = cloudevent::parse_body(event_text.as_bytes(), &EventLimits::default())
        .map_err(|e| anyhow::anyhow!("event refused: {e}"))?;
    let response = PluginResponse {
        status: args.response_status,
        headers: args
            .response_headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.trim().to_string())),
                None => Err(anyhow::anyhow!(
                    "--response-header {h:?}: expected `name: value`"
                )),
            })
            .collect::<anyhow::Result<_>>()?,
        body: match &args.response_body {
            Some(b) => file_or_text(b)?.into_bytes(),
            None => Vec::new(),
        },
    };
    for e in &events {
        let event = PluginEvent {
            id: &e.ce_id,
            ty: &e.event_type,
            source: &e.source,
            subject: e.subject.as_deref(),
            time: &e.time,
            data: &e.data,
            extensions: &e.extensions,
            app_id: APP,
        };
        // A fresh instance first, then a warm one: the report shows both.
        plugin.drop_warm();
        let (first, fresh_cost) = plugin.transform_measured(&event, &config);
        let (_, warm_cost) = plugin.transform_measured(&event, &config);
        writeln!(out, "\nevent {:?} ({}):", e.ce_id, e.event_type)?;
        let requests = match first {
            Ok(r) => r,
            Err(CallError::Guest(g)) => {
                writeln!(out, "transform answered an error: {g}")?;
                Vec::new()
            }
            Err(err) => {
                writeln!(out, "transform failed: {err}")?;
                exceeded.push(format!("transform of {:?}: {err}", e.ce_id));
                Vec::new()
            }
        };
        let bytes_out: usize = requests.iter().map(|r| r.body.len()).sum();
        writeln!(out, "{} request(s)", requests.len())?;
        for (i, r) in requests.iter().enumerate() {
            writeln!(
                out,
                "--- request {i}: {} bytes, content-type {}",
                r.body.len(),
                r.content_type
            )?;
            if let Some(q) = &r.query {
                writeln!(out, "query: {q}")?;
            }
            for (k, v) in &r.headers {
                writeln!(out, "{k}: {v}")?;
            }
            let body = String::from_utf8_lossy(&r.body);
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?,
                Err(_) => writeln!(out, "{body}")?,
            }
        }
        let (verdict, verdict_cost) = plugin.interpret_response_measured(APP, &response, &config);
        let verdict = match verdict {
            Ok(Some(v)) => describe(&v),
            Ok(None) => format!(
                "standard rules: {}",
                describe(&crate::delivery::verdict::standard(
                    response.status,
                    &response.headers
                ))
            ),
            Err(err) => {
                exceeded.push(format!("interpret-response: {err}"));
                format!("failed: {err}")
            }
        };
        writeln!(
            out,
            "--- verdict on a {} answer: {verdict}",
            response.status
        )?;
        writeln!(out, "--- cost")?;
        report(&mut out, "transform (fresh)", &fresh_cost, &limits)?;
        report(&mut out, "transform (warm)", &warm_cost, &limits)?;
        report(&mut out, "interpret-response", &verdict_cost, &limits)?;
        writeln!(
            out,
            "{:<20} {:>12} of {} bytes ({:.1}%)",
            "bytes out",
            bytes_out,
            limits.output_bytes,
            percent(bytes_out as f64, limits.output_bytes as f64)
        )?;
    }
    if !exceeded.is_empty() {
        return Err(LimitExceeded(format!(
            "{} call(s) broke a limit: {}",
            exceeded.len(),
            exceeded.join("; ")
        ))
        .into());
    }
    Ok(())
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Success => "success".into(),
        Verdict::RetryAfter(0) => "retry".into(),
        Verdict::RetryAfter(s) => format!("retry after {s} s"),
        Verdict::Fail(m) => format!("fail: {m}"),
        Verdict::DisableEndpoint(m) => format!("disable the endpoint: {m}"),
    }
}

fn percent(used: f64, limit: f64) -> f64 {
    if limit == 0.0 {
        0.0
    } else {
        used * 100.0 / limit
    }
}

fn report(
    out: &mut impl std::io::Write,
    what: &str,
    cost: &CallCost,
    limits: &Limits,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{what:<20} wall {:>8.3} ms of {} ms ({:.1}%)   cpu {:>8.3} ms of {} ms ({:.1}%)   fuel {:>11} of {} ({:.2}%)   memory {:>6} KiB of {} MiB ({:.1}%)",
        cost.wall.as_secs_f64() * 1e3,
        limits.call_timeout.as_millis(),
        percent(cost.wall.as_secs_f64(), limits.call_timeout.as_secs_f64()),
        cost.cpu.as_secs_f64() * 1e3,
        limits.cpu_time.as_millis(),
        percent(cost.cpu.as_secs_f64(), limits.cpu_time.as_secs_f64()),
        cost.fuel,
        limits.fuel,
        percent(cost.fuel as f64, limits.fuel as f64),
        cost.memory_bytes >> 10,
        limits.memory_bytes >> 20,
        percent(cost.memory_bytes as f64, limits.memory_bytes as f64),
    )
}
