//! The plain Rust values a plugin sees; `adapter` converts them to and from WIT.

use std::cell::OnceCell;
use std::fmt;

use serde_json::{Map, Value};

/// A CloudEvents 1.0 event as the engine stored it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The CloudEvents `id`.
    pub id: String,
    /// The CloudEvents `type`, e.g. `order.created`.
    pub ty: String,
    /// The CloudEvents `source`.
    pub source: String,
    /// The CloudEvents `subject`.
    pub subject: Option<String>,
    /// RFC 3339 time of the event.
    pub time: String,
    /// The app (tenant) the event belongs to.
    pub app_id: String,
    /// `data` as JSON text, exactly as the producer sent it (any JSON value),
    /// or `null` when there is none or it is not JSON. Use [`Event::data`]
    /// to read it parsed, [`Event::binary_data`] for data that is not JSON.
    pub data_json: String,
    /// The other attributes as JSON object text: `datacontenttype`,
    /// `dataschema`, `data_base64` (data that is not JSON, base64) and the
    /// extension attributes. Use [`Event::attributes`] to read it.
    pub extensions_json: String,
    pub(crate) data: OnceCell<Value>,
    pub(crate) attributes: OnceCell<Map<String, Value>>,
}

impl Event {
    /// Builds an event; `data_json` is JSON text.
    pub fn new(
        id: impl Into<String>,
        ty: impl Into<String>,
        source: impl Into<String>,
        time: impl Into<String>,
        data_json: impl Into<String>,
    ) -> Self {
        Event {
            id: id.into(),
            ty: ty.into(),
            source: source.into(),
            subject: None,
            time: time.into(),
            app_id: String::new(),
            data_json: data_json.into(),
            extensions_json: "{}".into(),
            data: OnceCell::new(),
            attributes: OnceCell::new(),
        }
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the other attributes and extensions (JSON object text).
    pub fn with_extensions(mut self, extensions_json: impl Into<String>) -> Self {
        self.extensions_json = extensions_json.into();
        self.attributes = OnceCell::new();
        self
    }

    /// Sets the app id.
    pub fn with_app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// The event's `data`, parsed once. `Value::Null` when absent or not JSON.
    pub fn data(&self) -> &Value {
        self.data
            .get_or_init(|| serde_json::from_str(&self.data_json).unwrap_or(Value::Null))
    }

    /// The optional attributes and the extensions, parsed once
    /// (`traceparent`, `datacontenttype`, `data_base64`, …).
    pub fn attributes(&self) -> &Map<String, Value> {
        self.attributes
            .get_or_init(|| match serde_json::from_str(&self.extensions_json) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            })
    }

    /// The `datacontenttype` the producer gave (in binary mode, its
    /// `Content-Type`), e.g. `application/json` or `image/png`.
    pub fn content_type(&self) -> Option<&str> {
        self.attributes().get("datacontenttype")?.as_str()
    }

    /// The bytes of data that is not JSON (sent in binary mode with another
    /// content type, or as `data_base64`); `None` when the data is JSON or
    /// there is none.
    pub fn binary_data(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let encoded = self.attributes().get("data_base64")?.as_str()?;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
    }
}

/// An endpoint's plugin config: a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config(pub Map<String, Value>);

impl Config {
    /// Parses config JSON text; it must be an object (or empty / `null`).
    pub fn parse(text: &str) -> Result<Config, PluginError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Config(map)),
            Ok(Value::Null) => Ok(Config::default()),
            Ok(_) => Err(PluginError::BadConfig(
                "config must be a JSON object".into(),
            )),
            Err(e) => Err(PluginError::BadConfig(format!(
                "config is not valid JSON: {e}"
            ))),
        }
    }

    /// The raw value of an option.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string option; `Err` names the option when it is present but not a string.
    pub fn str(&self, key: &str) -> Result<Option<&str>, PluginError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(PluginError::BadConfig(format!("{key}: must be a string"))),
        }
    }

    /// A boolean option; `Err` names the option when it is present but not a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, PluginError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(PluginError::BadConfig(format!(
                "{key}: must be true or false"
            ))),
        }
    }

    /// A non-negative integer option; `Err` names the option when it is not one.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, PluginError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                PluginError::BadConfig(format!("{key}: must be a non-negative integer"))
            }),
        }
    }

    /// An integer option within `min..=max`; `Err` names the option and the range.
    pub fn u64_in(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, PluginError> {
        match self.u64(key)? {
            Some(n) if !(min..=max).contains(&n) => Err(PluginError::BadConfig(format!(
                "{key}: must be between {min} and {max}, not {n}"
            ))),
            n => Ok(n),
        }
    }

    /// A title template option (see [`crate::text::check_template`]); `Err`
    /// names the option and the fault.
    pub fn template(&self, key: &str) -> Result<Option<&str>, PluginError> {
        let template = self.str(key)?;
        if let Some(t) = template {
            crate::text::check_template(t)
                .map_err(|e| PluginError::BadConfig(format!("{key}: {e}")))?;
        }
        Ok(template)
    }

    /// An absolute `http(s)` URL option (see [`crate::text::is_http_url`]) of
    /// at most `max_len` characters.
    pub fn http_url(&self, key: &str, max_len: usize) -> Result<Option<&str>, PluginError> {
        match self.str(key)? {
            Some(url) if url.len() > max_len || !crate::text::is_http_url(url) => {
                Err(PluginError::BadConfig(format!(
                    "{key}: must be an http(s) URL of at most {max_len} characters"
                )))
            }
            url => Ok(url),
        }
    }

    /// Refuses options this plugin does not know, naming the first one.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), PluginError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(PluginError::BadConfig(format!(
                "{k}: unknown option (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))),
        }
    }
}

/// One HTTP request for the engine to sign and POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The exact bytes to send.
    pub body: Vec<u8>,
    /// The `Content-Type` header.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Query string to append to the endpoint URL, without `?`.
    pub query: Option<String>,
}

impl Request {
    /// A request with a JSON body (`application/json`).
    pub fn json(value: &Value) -> Request {
        Request::bytes(value.to_string().into_bytes(), "application/json")
    }

    /// A request with the given body and content type.
    pub fn bytes(body: Vec<u8>, content_type: impl Into<String>) -> Request {
        Request {
            body,
            content_type: content_type.into(),
            headers: Vec::new(),
            query: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the query string to append to the endpoint URL.
    pub fn query(mut self, query: impl Into<String>) -> Request {
        self.query = Some(query.into());
        self
    }

    /// The body as text (lossy), for tests and logs.
    pub fn body_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON, for tests.
    pub fn body_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a plugin could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The endpoint's config is wrong; the message names the option.
    BadConfig(String),
    /// This event cannot be turned into a request; retrying will not help.
    BadEvent(String),
    /// A bug in the plugin; the engine retries.
    Internal(String),
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::BadConfig(m) => write!(f, "bad config: {m}"),
            PluginError::BadEvent(m) => write!(f, "bad event: {m}"),
            PluginError::Internal(m) => write!(f, "plugin error: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// Short lowercase name used in endpoint configs.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One line for operators.
    pub description: String,
    /// JSON Schema of the config, as JSON.
    pub config_schema: Value,
}

impl PluginInfo {
    /// Info with an empty config schema.
    pub fn new(name: &str, version: &str, description: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            config_schema: Value::Object(Map::new()),
        }
    }

    /// Sets the config schema.
    pub fn with_config_schema(mut self, schema: Value) -> PluginInfo {
        self.config_schema = schema;
        self
    }
}

/// The endpoint's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The start of the body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response for tests.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (name lowercased), for tests.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body as trimmed text of at most `max_chars` characters, for a
    /// verdict's reason.
    pub fn body_excerpt(&self, max_chars: usize) -> String {
        crate::text::truncate_chars(self.body_str().trim(), max_chars).into_owned()
    }

    /// The `Retry-After` header as whole seconds (fractions rounded up).
    /// `None` when absent, negative or an HTTP date (the engine's standard
    /// rules read those).
    pub fn retry_after(&self) -> Option<u32> {
        seconds(self.header("retry-after")?.trim().parse().ok()?)
    }
}

/// Whole seconds from a delay in seconds, rounded up; `None` when not a
/// finite non-negative number.
fn seconds(delay: f64) -> Option<u32> {
    (delay.is_finite() && delay >= 0.0).then(|| delay.ceil().min(f64::from(u32::MAX)) as u32)
}

/// A plugin's reading of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Try again after this many seconds.
    RetryAfter(u32),
    /// Will never succeed; the reason is recorded.
    Fail(String),
    /// The URL is gone for good; disable the endpoint with this reason.
    DisableEndpoint(String),
}

/// Log level of a plugin's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something is wrong.
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_header() {
        let r = |v: &str| {
            Response::new(429, "")
                .with_header("Retry-After", v)
                .retry_after()
        };
        assert_eq!(r("30"), Some(30));
        assert_eq!(r(" 1.2 "), Some(2));
        assert_eq!(r("-1"), None);
        assert_eq!(r("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(Response::new(429, "").retry_after(), None);
    }

    #[test]
    fn typed_options_name_the_option() {
        let c = Config::parse(r#"{"n": 5, "t": "{x}", "u": "ftp://x", "ok": "https://x.test"}"#)
            .unwrap();
        assert_eq!(c.u64_in("n", 0, 10), Ok(Some(5)));
        assert!(
            matches!(c.u64_in("n", 6, 10), Err(PluginError::BadConfig(m)) if m.starts_with("n:"))
        );
        assert!(matches!(c.template("t"), Err(PluginError::BadConfig(m)) if m.starts_with("t:")));
        assert!(
            matches!(c.http_url("u", 100), Err(PluginError::BadConfig(m)) if m.starts_with("u:"))
        );
        assert_eq!(c.http_url("ok", 100), Ok(Some("https://x.test")));
        assert!(c.http_url("ok", 5).is_err());
        assert_eq!(c.template("missing"), Ok(None));
    }
}
