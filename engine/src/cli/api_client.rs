//! The HTTP client of the API commands: one request, its JSON answer, and
//! errors that say what went wrong and what to do about it.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::Method;
use serde_json::Value;

use super::api_args::Connection;

/// How long one request may take (an endpoint test waits for its attempt).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The API refused a request (a 4xx or 5xx answer); exit code 1.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A connection to a running engine.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    runtime: tokio::runtime::Runtime,
}

/// A request's answer: its status and JSON body (`null` when empty).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Client {
    pub fn new(connection: &Connection) -> anyhow::Result<Client> {
        let base = connection.url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|e| {
            anyhow!("--url {base:?} is not a URL ({e}); e.g. http://127.0.0.1:4665")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("--url {base:?} must start with http:// or https://");
        }
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("hookline-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base,
            key: connection.key.clone().filter(|k| !k.is_empty()),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Sends a request; a 2xx answer is returned, any other is an error
    /// that names what was refused and why.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let answer = self.send(method.clone(), path, body)?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        Err(Refused(refusal(&method, path, &answer, self.key.is_some())).into())
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.call(Method::GET, path, None)?.body)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::POST, path, Some(body))?.body)
    }

    fn send(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| {
                let why = if e.is_connect() {
                    "nothing answers there; is `hookline serve` running, and is --url (HOOKLINE_URL) right?"
                } else if e.is_timeout() {
                    "no answer in time"
                } else {
                    "the request failed"
                };
                anyhow!("{} {url}: {why} ({e})", "cannot reach the engine at")
            })?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            Ok(Answer { status, body })
        })
    }
}

/// What to tell the user about a refused request: the API's own message,
/// the field it names, and a hint for the usual causes.
fn refusal(method: &Method, path: &str, answer: &Answer, had_key: bool) -> String {
    let error = &answer.body["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.body.to_string());
    let mut out = format!("{method} {path}: {} {message}", answer.status);
    if let Some(field) = error["field"].as_str() {
        out.push_str(&format!(" (field `{field}`)"));
    }
    let hint = match answer.status {
        401 if !had_key => Some("give an API key with --key or HOOKLINE_KEY".to_string()),
        401 => Some("the key was not accepted: check --key / HOOKLINE_KEY".to_string()),
        403 => Some("this key may not do that: an admin key can".to_string()),
        404 => not_found_hint(path),
        503 => Some("the engine is busy or its store is away; try again shortly".to_string()),
        _ => None,
    };
    if let Some(hint) = hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}

/// Which list shows the ids that a 404 path refers to.
fn not_found_hint(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split(['/', '?']).collect();
    match parts.as_slice() {
        ["", "v1", "apps", app, "endpoints", ..] => Some(format!(
            "see the ids with `hookline endpoints list {app}` (and `hookline apps list`)"
        )),
        ["", "v1", "apps", ..] => Some("see the ids with `hookline apps list`".into()),
        ["", "v1", "deliveries", ..] => Some("see the ids with `hookline deliveries list`".into()),
        ["", "v1", "events", ..] => {
            Some("see event ids with `hookline deliveries list` (its event_id column)".into())
        }
        ["", "v1", "api-keys", ..] => Some("see the ids with `hookline keys list`".into()),
        ["", "v1", "plugins", ..] => Some("see the names with `hookline plugin list`".into()),
        _ => None,
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_names_the_field_and_suggests_the_fix() {
        let answer = Answer {
            status: 404,
            body: json!({ "error": { "code": "not_found", "message": "no endpoint ep_9" } }),
        };
        let text = refusal(&Method::GET, "/v1/apps/app_1/endpoints/ep_9", &answer, true);
        assert!(text.starts_with("GET /v1/apps/app_1/endpoints/ep_9: 404 no endpoint ep_9"));
        assert!(text.contains("hookline endpoints list app_1"), "{text}");
        let answer = Answer {
            status: 422,
            body: json!({ "error": { "message": "must be a URL", "field": "url" } }),
        };
        let text = refusal(&Method::POST, "/v1/apps/a/endpoints", &answer, true);
        assert!(text.contains("(field `url`)"), "{text}");
        let answer = Answer {
            status: 401,
            body: json!({ "error": { "message": "an API key is needed" } }),
        };
        assert!(refusal(&Method::GET, "/v1/apps", &answer, false).contains("HOOKLINE_KEY"));
    }
}
