//! `hookline plugin check FILE`: loads a component exactly as the engine
//! does and shows its info and the request(s) it makes for an event.

use std::sync::Arc;

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::args::PluginCheckArgs;
use crate::cloudevent::{self, EventLimits};
use crate::plugins::{Limits, PluginEvent, PluginHost};

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

pub fn check(args: PluginCheckArgs) -> anyhow::Result<()> {
    let host: Arc<PluginHost> = PluginHost::new(Limits::default(), None)?;
    let plugin = host.load_file(&args.file)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "plugin:      {} {}",
        plugin.info.name, plugin.info.version
    )?;
    writeln!(out, "description: {}", plugin.info.description)?;
    writeln!(out, "world:       hookline:plugin@{}", plugin.world)?;
    writeln!(out, "sha256:      {}", plugin.hash)?;
    writeln!(out, "config:      {}", plugin.info.config_schema)?;

    plugin
        .validate_config(&args.config)
        .map_err(|e| anyhow::anyhow!("config refused: {e}"))?;
    let event_text = match &args.event {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?,
        None => SAMPLE_EVENT.to_string(),
    };
    let events = cloudevent::parse_body(event_text.as_bytes(), &EventLimits::default())
        .map_err(|e| anyhow::anyhow!("event refused: {e}"))?;
    for e in &events {
        let requests = plugin
            .transform(
                &PluginEvent {
                    id: &e.ce_id,
                    ty: &e.event_type,
                    source: &e.source,
                    subject: e.subject.as_deref(),
                    time: &e.time,
                    data: &e.data,
                    extensions: &e.extensions,
                    app_id: "app_check",
                },
                &args.config,
            )
            .map_err(|err| anyhow::anyhow!("transform of event {:?} failed: {err}", e.ce_id))?;
        writeln!(
            out,
            "\nevent {:?} ({}): {} request(s)",
            e.ce_id,
            e.event_type,
            requests.len()
        )?;
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
    }
    Ok(())
}
