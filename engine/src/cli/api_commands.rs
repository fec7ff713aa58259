//! The API commands: each turns its arguments into one or more API calls
//! and prints the answer as a table or as the API's JSON.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::api_args::*;
use super::api_client::{Client, encode};
use super::table::{self, Column};

const APP_COLUMNS: &[Column] = &[("ID", "/id"), ("NAME", "/name"), ("CREATED", "/created_at")];
const ENDPOINT_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("URL", "/url"),
    ("PLUGIN", "/plugin"),
    ("ENABLED", "/enabled"),
    ("BREAKER", "/health/breaker"),
    ("FAILURES", "/health/consecutive_failures"),
    ("LAST ERROR", "/health/last_error"),
];
const DELIVERY_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("STATUS", "/status"),
    ("ATTEMPTS", "/attempts"),
    ("TYPE", "/event_type"),
    ("ENDPOINT", "/endpoint_id"),
    ("EVENT", "/event_id"),
    ("NEXT ATTEMPT", "/next_attempt_at"),
    ("LAST ERROR", "/last_error"),
];
const ATTEMPT_COLUMNS: &[Column] = &[
    ("#", "/attempt"),
    ("STARTED", "/started_at"),
    ("OUTCOME", "/outcome"),
    ("STATUS", "/status_code"),
    ("MS", "/duration_ms"),
    ("PLUGIN", "/plugin/name"),
    ("ERROR", "/error"),
];
const ACCEPTED_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("EVENT ID", "/event_id"),
    ("SOURCE", "/source"),
    ("DUPLICATE", "/duplicate"),
    ("DELIVERIES", "/deliveries"),
];
const OPERATION_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("KIND", "/kind"),
    ("TARGET", "/target"),
    ("STATE", "/state"),
    ("DONE", "/done"),
    ("TOTAL", "/total"),
    ("CREATED", "/created_at"),
];
const KEY_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("PREFIX", "/prefix"),
    ("SCOPE", "/scope"),
    ("APP", "/app_id"),
    ("LAST USED", "/last_used_at"),
    ("REVOKED", "/revoked_at"),
];
const PLUGIN_COLUMNS: &[Column] = &[
    ("NAME", "/name"),
    ("VERSION", "/version"),
    ("STATE", "/state"),
    ("SOURCE", "/source"),
    ("QUARANTINED FOR", "/quarantined_for"),
    ("LAST ERROR", "/last_error"),
];

/// Prints what a command produced.
struct Printer(Output);

impl Printer {
    /// A paged list answer (`{"data": [...], "next_cursor": …}`).
    fn list(&self, answer: &Value, columns: &[Column]) {
        match self.0 {
            Output::Json => self.json(answer),
            Output::Table => {
                let rows = answer["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if rows.is_empty() {
                    println!("(none)");
                    return;
                }
                println!("{}", table::list(rows, columns));
                if let Some(cursor) = answer["next_cursor"].as_str() {
                    println!("(more: add --cursor {cursor})");
                }
            }
        }
    }

    /// One object.
    fn object(&self, answer: &Value) {
        match self.0 {
            Output::Json => self.json(answer),
            Output::Table => println!("{}", table::fields(answer)),
        }
    }

    fn json(&self, answer: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).expect("a JSON value serializes")
        );
    }
}

/// JSON text, or `@path` for a file's.
fn json_arg(flag: &str, text: &str) -> anyhow::Result<Value> {
    let (origin, text) = match text.strip_prefix('@') {
        Some(path) => (
            format!("{flag} file {path}"),
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?,
        ),
        None => (flag.to_string(), text.to_string()),
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("{origin} is not valid JSON: {e}"))
}

/// A file's text, or stdin's for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn page_query(page: &ListArgs, mut query: Vec<(&str, String)>) -> String {
    query.push(("limit", page.limit.to_string()));
    if let Some(cursor) = &page.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let pairs: Vec<String> = query
        .into_iter()
        .map(|(k, v)| format!("{k}={}", encode(&v)))
        .collect();
    format!("?{}", pairs.join("&"))
}

fn endpoint_path(e: &EndpointRef) -> String {
    format!(
        "/v1/apps/{}/endpoints/{}",
        encode(&e.app),
        encode(&e.endpoint)
    )
}

pub fn apps(cmd: Apps) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        AppsAction::List(page) => print.list(
            &client.get(&format!("/v1/apps{}", page_query(&page, vec![])))?,
            APP_COLUMNS,
        ),
        AppsAction::Create { name } => {
            print.object(&client.post("/v1/apps", &json!({ "name": name }))?)
        }
        AppsAction::Show { app } => {
            print.object(&client.get(&format!("/v1/apps/{}", encode(&app)))?)
        }
    }
    Ok(())
}

/// The body that `add` or `update` sends: `--json`, then the flags over it.
fn endpoint_body(fields: EndpointFields) -> anyhow::Result<Map<String, Value>> {
    let mut body = match fields
        .json
        .as_deref()
        .map(|j| json_arg("--json", j))
        .transpose()?
    {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => bail!("--json must be a JSON object of endpoint fields"),
    };
    if let Some(plugin) = fields.plugin {
        body.insert("plugin".into(), json!(plugin));
    }
    if let Some(config) = fields.config {
        body.insert("plugin_config".into(), json_arg("--config", &config)?);
    }
    if !fields.filter_types.is_empty() {
        body.insert("filter_types".into(), json!(fields.filter_types));
    }
    if let Some(filter) = fields.filter {
        body.insert("filter".into(), json!(filter));
    }
    if let Some(description) = fields.description {
        body.insert("description".into(), json!(description));
    }
    Ok(body)
}

pub fn endpoints(cmd: Endpoints) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        EndpointsAction::List { app, page } => print.list(
            &client.get(&format!(
                "/v1/apps/{}/endpoints{}",
                encode(&app),
                page_query(&page, vec![])
            ))?,
            ENDPOINT_COLUMNS,
        ),
        EndpointsAction::Add {
            app,
            url,
            fields,
            secret,
            signature,
            handshake,
        } => {
            let mut body = endpoint_body(fields)?;
            body.insert("url".into(), json!(url));
            if let Some(secret) = secret {
                body.insert("secret".into(), json!(secret));
            }
            if let Some(signature) = signature {
                body.insert("signature".into(), json!(signature));
            }
            if handshake {
                body.insert("handshake".into(), json!(true));
            }
            let path = format!("/v1/apps/{}/endpoints", encode(&app));
            print.object(&client.post(&path, &Value::Object(body))?);
        }
        EndpointsAction::Show(e) => print.object(&client.get(&endpoint_path(&e))?),
        EndpointsAction::Update {
            endpoint,
            url,
            fields,
        } => {
            let mut body = endpoint_body(fields)?;
            if let Some(url) = url {
                body.insert("url".into(), json!(url));
            }
            if body.is_empty() {
                bail!(
                    "nothing to change: give --url, --plugin, --config, --filter-type, --filter, --description or --json"
                );
            }
            let answer = client.call(
                Method::PATCH,
                &endpoint_path(&endpoint),
                Some(&Value::Object(body)),
            )?;
            print.object(&answer.body);
        }
        EndpointsAction::Enable(e) => {
            let answer = client.call(
                Method::PATCH,
                &endpoint_path(&e),
                Some(&json!({ "enabled": true })),
            )?;
            print.object(&answer.body);
        }
        EndpointsAction::Disable(e) => {
            let answer = client.call(
                Method::PATCH,
                &endpoint_path(&e),
                Some(&json!({ "enabled": false })),
            )?;
            print.object(&answer.body);
        }
        EndpointsAction::Remove(e) => {
            client.call(Method::DELETE, &endpoint_path(&e), None)?;
            match print.0 {
                Output::Json => print.json(&json!({ "removed": e.endpoint })),
                Output::Table => println!("removed endpoint {}", e.endpoint),
            }
        }
        EndpointsAction::Secret(e) => {
            print.object(&client.get(&format!("{}/secret", endpoint_path(&e)))?)
        }
        EndpointsAction::RotateSecret { endpoint, secret } => {
            let body = match secret {
                Some(s) => json!({ "secret": s }),
                None => json!({}),
            };
            print.object(&client.post(
                &format!("{}/secret/rotate", endpoint_path(&endpoint)),
                &body,
            )?);
        }
        EndpointsAction::Recover { endpoint, since } => {
            let since = since_arg(&since)?;
            let path = format!("{}/recover", endpoint_path(&endpoint));
            print.object(&client.post(&path, &json!({ "since": since }))?);
        }
        EndpointsAction::Test { endpoint, event } => {
            let body = match event {
                Some(path) => {
                    let text = read_input(&path)?;
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow!("--event {} is not valid JSON: {e}", path.display()))?
                }
                None => json!({}),
            };
            let path = format!("{}/test", endpoint_path(&endpoint));
            let answer = client.call(Method::POST, &path, Some(&body))?;
            match print.0 {
                Output::Json => print.json(&answer.body),
                Output::Table => {
                    let delivery = &answer.body["delivery"];
                    let attempt = &answer.body["attempt"];
                    println!(
                        "delivery {} to {}: {}",
                        table::cell(&delivery["id"]),
                        table::cell(&delivery["endpoint_id"]),
                        table::cell(&delivery["status"])
                    );
                    if attempt.is_null() {
                        println!(
                            "not attempted yet (held or waiting); follow it with `hookline deliveries show {}`",
                            table::cell(&delivery["id"])
                        );
                    } else {
                        println!("{}", table::fields(attempt));
                    }
                }
            }
        }
        EndpointsAction::Stats { endpoint, window } => {
            let path = format!(
                "{}/stats?window={}",
                endpoint_path(&endpoint),
                encode(&window)
            );
            print.object(&client.get(&path)?);
        }
    }
    Ok(())
}

/// `--since`: RFC 3339 as it is, or a duration ago.
fn since_arg(since: &str) -> anyhow::Result<String> {
    if humantime::parse_rfc3339_weak(since).is_ok() {
        return Ok(since.to_string());
    }
    let ago = humantime::parse_duration(since).map_err(|_| {
        anyhow!("--since {since:?}: give an RFC 3339 time (2026-12-01T00:00:00Z) or how long ago (6h, 2d)")
    })?;
    let at = std::time::SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| anyhow!("--since {since:?} is too long ago"))?;
    Ok(humantime::format_rfc3339_seconds(at).to_string())
}

/// The events of a file: one object, an array, or one object per line.
fn events_of(text: &str) -> anyhow::Result<Vec<Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(events)) => Ok(events),
        Ok(event @ Value::Object(_)) => Ok(vec![event]),
        Ok(_) => bail!("events must be JSON objects: one, an array of them, or one per line"),
        Err(whole) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        anyhow!("not one JSON value ({whole}), nor one event object per line (line {} is not)", n + 1)
                    })
            })
            .collect(),
    }
}

pub fn events(cmd: Events) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        EventsAction::Emit {
            app,
            file,
            event_type,
            source,
            id,
            subject,
            data,
            batch,
        } => {
            let events = match file {
                Some(path) => events_of(&read_input(&path)?)?,
                None => {
                    let Some(event_type) = event_type else {
                        bail!("give a file of events (or `-` for stdin), or at least --type");
                    };
                    let mut event = json!({
                        "specversion": "1.0",
                        "id": id.unwrap_or_else(|| crate::id::new_id("cli")),
                        "source": source.unwrap_or_else(|| "hookline-cli".into()),
                        "type": event_type,
                    });
                    if let Some(subject) = subject {
                        event["subject"] = json!(subject);
                    }
                    if let Some(data) = data {
                        event["data"] = json_arg("--data", &data)?;
                    }
                    vec![event]
                }
            };
            if events.is_empty() {
                bail!("no events to emit");
            }
            let path = format!("/v1/events?app_id={}", encode(&app));
            let batch = batch.clamp(1, 1000);
            // A progress bar on a terminal when there is more than one request.
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(events.len() as u64),
                if events.len() > batch {
                    indicatif::ProgressDrawTarget::stderr()
                } else {
                    indicatif::ProgressDrawTarget::hidden()
                },
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events {per_sec} {eta}",
                )
                .expect("a valid template"),
            );
            let mut accepted = Vec::with_capacity(events.len());
            for chunk in events.chunks(batch) {
                let answer = client
                    .post(&path, &Value::Array(chunk.to_vec()))
                    .with_context(|| {
                        format!(
                            "{} of {} events were accepted before this request failed",
                            accepted.len(),
                            events.len()
                        )
                    })?;
                let data = answer["data"].as_array().cloned().unwrap_or_default();
                bar.inc(chunk.len() as u64);
                accepted.extend(data);
            }
            bar.finish_and_clear();
            let answer = json!({ "data": accepted });
            match print.0 {
                Output::Json => print.json(&answer),
                Output::Table => {
                    let duplicates = accepted.iter().filter(|a| a["duplicate"] == true).count();
                    let deliveries: u64 = accepted
                        .iter()
                        .filter_map(|a| a["deliveries"].as_u64())
                        .sum();
                    if accepted.len() <= 20 {
                        println!("{}", table::list(&accepted, ACCEPTED_COLUMNS));
                    }
                    println!(
                        "{} events accepted ({duplicates} duplicates), {deliveries} deliveries",
                        accepted.len()
                    );
                }
            }
        }
        EventsAction::Show { event } => {
            print.object(&client.get(&format!("/v1/events/{}", encode(&event)))?)
        }
        EventsAction::Replay { event } => print
            .object(&client.post(&format!("/v1/events/{}/replay", encode(&event)), &json!({}))?),
    }
    Ok(())
}

pub fn deliveries(cmd: Deliveries) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        DeliveriesAction::List {
            app,
            endpoint,
            event,
            status,
            event_type,
            page,
        } => {
            let filters = [
                ("app_id", app),
                ("endpoint_id", endpoint),
                ("event_id", event),
                ("status", status),
                ("event_type", event_type),
            ];
            let query = filters
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let answer = client.get(&format!("/v1/deliveries{}", page_query(&page, query)))?;
            print.list(&answer, DELIVERY_COLUMNS);
        }
        DeliveriesAction::Show { delivery } => {
            let id = encode(&delivery);
            let mut found = client.get(&format!("/v1/deliveries/{id}"))?;
            let attempts = client.get(&format!("/v1/deliveries/{id}/attempts"))?;
            match print.0 {
                Output::Json => {
                    found["attempts_list"] = attempts["data"].clone();
                    print.json(&found);
                }
                Output::Table => {
                    println!("{}", table::fields(&found));
                    let rows = attempts["data"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    if rows.is_empty() {
                        println!("\nno attempts yet");
                    } else {
                        println!("\n{}", table::list(rows, ATTEMPT_COLUMNS));
                    }
                }
            }
        }
        DeliveriesAction::Retry { delivery } => {
            let path = format!("/v1/deliveries/{}/retry", encode(&delivery));
            let answer = client.post(&path, &json!({}))?;
            match print.0 {
                Output::Json => print.json(&answer),
                Output::Table => println!(
                    "delivery {} is {} again (operation {})",
                    table::cell(&answer["delivery"]["id"]),
                    table::cell(&answer["delivery"]["status"]),
                    table::cell(&answer["operation"]["id"])
                ),
            }
        }
    }
    Ok(())
}

pub fn operations(cmd: Operations) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        OperationsAction::List { app, page } => print.list(
            &client.get(&format!(
                "/v1/apps/{}/operations{}",
                encode(&app),
                page_query(&page, vec![])
            ))?,
            OPERATION_COLUMNS,
        ),
        OperationsAction::Show { operation } => {
            print.object(&client.get(&format!("/v1/operations/{}", encode(&operation)))?)
        }
    }
    Ok(())
}

pub fn keys(cmd: Keys) -> anyhow::Result<()> {
    let client = Client::new(&cmd.connection)?;
    let print = Printer(cmd.connection.output);
    match cmd.action {
        KeysAction::List => print.list(&client.get("/v1/api-keys")?, KEY_COLUMNS),
        KeysAction::Create { name, app } => {
            let answer = client.post("/v1/api-keys", &json!({ "name": name, "app_id": app }))?;
            print.object(&answer);
            if print.0 == Output::Table {
                eprintln!("the key is shown this once: keep it now");
            }
        }
        KeysAction::Revoke { key } => {
            client.call(
                Method::DELETE,
                &format!("/v1/api-keys/{}", encode(&key)),
                None,
            )?;
            match print.0 {
                Output::Json => print.json(&json!({ "revoked": key })),
                Output::Table => println!("revoked key {key}"),
            }
        }
    }
    Ok(())
}

/// `plugin list` and `plugin lift`.
pub fn plugins(
    connection: &Connection,
    lift: Option<(String, Option<String>)>,
) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let print = Printer(connection.output);
    match lift {
        None => print.list(&client.get("/v1/plugins")?, PLUGIN_COLUMNS),
        Some((name, app)) => {
            let body = match app {
                Some(app) => json!({ "app_id": app }),
                None => json!({}),
            };
            print.object(&client.post(&format!("/v1/plugins/{}/lift", encode(&name)), &body)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_events_is_one_an_array_or_one_per_line() {
        assert_eq!(events_of(r#"{"type":"a"}"#).unwrap().len(), 1);
        assert_eq!(
            events_of(r#"[{"type":"a"},{"type":"b"}]"#).unwrap().len(),
            2
        );
        assert_eq!(
            events_of("{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n")
                .unwrap()
                .len(),
            2
        );
        let e = events_of("{\"type\":\"a\"}\n[1]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(events_of("3").is_err());
    }

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        assert_eq!(
            since_arg("2026-12-01T00:00:00Z").unwrap(),
            "2026-12-01T00:00:00Z"
        );
        let ago = since_arg("2h").unwrap();
        let at = humantime::parse_rfc3339(&ago).unwrap();
        let age = std::time::SystemTime::now().duration_since(at).unwrap();
        assert!(age.as_secs() >= 7199 && age.as_secs() < 7300, "{ago}");
        assert!(
            since_arg("yesterday")
                .unwrap_err()
                .to_string()
                .contains("RFC 3339")
        );
    }
}
