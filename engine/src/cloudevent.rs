//! Incoming CloudEvents 1.0 in every mode of the HTTP protocol binding:
//! structured (`application/cloudevents+json`), batch
//! (`application/cloudevents-batch+json`, or a plain JSON array) and binary
//! (attributes in `ce-*` headers, the body is `data`). Every error names the
//! field (with the event's index in a batch) and the rule or limit it broke;
//! nothing is stored unless the whole request is valid.
//!
//! `data` is kept exactly as it came. JSON data is validated but never
//! re-encoded: the stored text is the producer's bytes (key order, number
//! spelling, escapes and all). Data that is not JSON (a binary-mode body of
//! another content type, or `data_base64`) is kept as `data_base64`, the
//! CloudEvents JSON format's own form for bytes, beside the other optional
//! attributes (`datacontenttype`, `dataschema`) and the extensions. Plugins
//! see the event in that same shape (see `sdk/wit`).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::store::events::NewEvent;

/// Limits on incoming events (`--max-batch`, `--max-data-kib`; the body
/// limit is the API's `--max-body-kib`).
#[derive(Debug, Clone)]
pub struct EventLimits {
    /// Events in one request.
    pub max_batch: usize,
    /// Bytes of one event's `data`: the JSON text as sent, or the decoded
    /// bytes of binary data.
    pub max_data_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> EventLimits {
        EventLimits {
            max_batch: 1000,
            max_data_bytes: 512 << 10,
        }
    }
}

/// A field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

const MAX_ID: usize = 256;
const MAX_TYPE: usize = 256;
const MAX_SOURCE: usize = 1024;
const MAX_SUBJECT: usize = 1024;
const MAX_URI: usize = 1024;
const MAX_CONTENT_TYPE: usize = 256;
const MAX_EXTENSIONS: usize = 32;
const MAX_EXTENSION_VALUE: usize = 1024;

/// How a request carries its events, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/cloudevents+json`: one event.
    Structured,
    /// `application/cloudevents-batch+json`: an array of events.
    Batch,
    /// `ce-*` headers with the data as the body.
    Binary,
    /// `application/json` (or no content type): one event or an array.
    Json,
}

/// The mode of a request. A structured or batch content type wins over
/// `ce-*` headers, as the binding says; formats other than JSON are refused.
pub fn mode(headers: &HeaderMap) -> Result<Mode, FieldError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(essence)
        .unwrap_or_default();
    if let Some(format) = content_type.strip_prefix("application/cloudevents-batch") {
        return match format {
            "+json" | "" => Ok(Mode::Batch),
            other => Err(FieldError::new(
                "content-type",
                format!(
                    "batch format {other:?} is not supported; use application/cloudevents-batch+json"
                ),
            )),
        };
    }
    if let Some(format) = content_type.strip_prefix("application/cloudevents") {
        return match format {
            "+json" | "" => Ok(Mode::Structured),
            other => Err(FieldError::new(
                "content-type",
                format!(
                    "event format {other:?} is not supported; use application/cloudevents+json"
                ),
            )),
        };
    }
    if headers.contains_key("ce-specversion") {
        return Ok(Mode::Binary);
    }
    Ok(Mode::Json)
}

/// The media type without parameters, lowercase.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether data of this content type is JSON (and so kept as JSON text).
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Parses a request in `mode`.
pub fn parse(
    mode: Mode,
    headers: &HeaderMap,
    body: &[u8],
    limits: &EventLimits,
) -> Result<Vec<NewEvent>, FieldError> {
    match mode {
        Mode::Binary => Ok(vec![parse_binary(headers, body, limits)?]),
        Mode::Structured => match first_byte(body) {
            Some(b'{') => parse_body(body, limits),
            _ => Err(FieldError::new(
                "body",
                "must be one CloudEvent object (application/cloudevents+json)",
            )),
        },
        Mode::Batch => match first_byte(body) {
            Some(b'[') => parse_body(body, limits),
            _ => Err(FieldError::new(
                "body",
                "must be an array of CloudEvents (application/cloudevents-batch+json)",
            )),
        },
        Mode::Json => parse_body(body, limits),
    }
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Parses a JSON body: one event object or an array of them.
pub fn parse_body(body: &[u8], limits: &EventLimits) -> Result<Vec<NewEvent>, FieldError> {
    let not_json = |e: serde_json::Error| FieldError::new("body", format!("not valid JSON: {e}"));
    match first_byte(body) {
        Some(b'{') => {
            let fields: BTreeMap<String, &RawValue> =
                serde_json::from_slice(body).map_err(not_json)?;
            Ok(vec![parse_event(fields, "", limits)?])
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(not_json)?;
            if items.is_empty() {
                return Err(FieldError::new("body", "the array is empty"));
            }
            if items.len() > limits.max_batch {
                return Err(FieldError::new(
                    "body",
                    format!(
                        "at most {} events per request (--max-batch), got {}",
                        limits.max_batch,
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(item.get())
                        .map_err(|_| FieldError::new(format!("[{i}]"), "must be a JSON object"))?;
                    parse_event(fields, &format!("[{i}]."), limits)
                })
                .collect()
        }
        _ => {
            // Not an object or array: say whether it is JSON at all.
            serde_json::from_slice::<&RawValue>(body).map_err(not_json)?;
            Err(FieldError::new(
                "body",
                "must be a CloudEvent object or an array of them",
            ))
        }
    }
}

/// One event of a JSON body; `prefix` names it in a batch (`[2].`).
fn parse_event(
    mut fields: BTreeMap<String, &RawValue>,
    prefix: &str,
    limits: &EventLimits,
) -> Result<NewEvent, FieldError> {
    let data = fields.remove("data");
    let mut attributes = Map::new();
    for (name, raw) in fields {
        // Attribute values are small; `data` was taken out above.
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| FieldError::new(format!("{prefix}{name}"), e.to_string()))?;
        attributes.insert(name, value);
    }
    let data = match data {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(raw.get().to_string()),
    };
    check_event(attributes, data, prefix, limits)
}

/// A binary-mode event: attributes from `ce-*` headers (percent-decoded),
/// `datacontenttype` from `Content-Type`, the body as `data`.
pub fn parse_binary(
    headers: &HeaderMap,
    body: &[u8],
    limits: &EventLimits,
) -> Result<NewEvent, FieldError> {
    let mut attributes = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let field = format!("ce-{attribute}");
        let decoded = percent_encoding::percent_decode(value.as_bytes())
            .decode_utf8()
            .map_err(|_| FieldError::new(&field, "not UTF-8 once percent-decoded"))?;
        if attributes
            .insert(attribute.to_string(), Value::String(decoded.into_owned()))
            .is_some()
        {
            return Err(FieldError::new(field, "given more than once"));
        }
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| FieldError::new("content-type", "not visible ASCII"))
        })
        .transpose()?;
    let mut data = None;
    if !body.is_empty() {
        match &content_type {
            Some(ct) if is_json(ct) => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| FieldError::new("data", "JSON data is not UTF-8"))?;
                serde_json::from_str::<&RawValue>(text).map_err(|e| {
                    FieldError::new("data", format!("Content-Type says JSON, but: {e}"))
                })?;
                data = Some(text.to_string());
            }
            _ => {
                if body.len() > limits.max_data_bytes {
                    return Err(data_too_large("data", body.len(), limits));
                }
                attributes.insert("data_base64".into(), Value::String(STANDARD.encode(body)));
            }
        }
    }
    if let Some(ct) = content_type {
        attributes.insert("datacontenttype".into(), Value::String(ct));
    }
    check_event(attributes, data, "", limits).map_err(|mut e| {
        // Name the header the attribute came from.
        if !matches!(
            e.field.as_str(),
            "data" | "data_base64" | "datacontenttype" | "extensions"
        ) {
            e.field = format!("ce-{}", e.field);
        }
        e
    })
}

fn data_too_large(field: &str, len: usize, limits: &EventLimits) -> FieldError {
    FieldError::new(
        field,
        format!(
            "{len} bytes, the limit is {} bytes (--max-data-kib)",
            limits.max_data_bytes
        ),
    )
}

/// Checks the attributes and data of one event, whatever mode it came in.
/// `data` is JSON text, exactly as sent; binary data is in `data_base64`.
fn check_event(
    mut map: Map<String, Value>,
    data: Option<String>,
    prefix: &str,
    limits: &EventLimits,
) -> Result<NewEvent, FieldError> {
    let err = |field: &str, message: String| FieldError {
        field: format!("{prefix}{field}"),
        message,
    };

    match map.remove("specversion") {
        None => {}
        Some(Value::String(v)) if v == "1.0" => {}
        Some(v) => return Err(err("specversion", format!("must be \"1.0\", got {v}"))),
    }
    let ce_id = required_string(&mut map, "id", MAX_ID).map_err(|m| err("id", m))?;
    let source = required_string(&mut map, "source", MAX_SOURCE).map_err(|m| err("source", m))?;
    let event_type = required_string(&mut map, "type", MAX_TYPE).map_err(|m| err("type", m))?;
    if event_type
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err(
            "type",
            "must not contain spaces or control characters".into(),
        ));
    }
    let subject =
        optional_string(&mut map, "subject", MAX_SUBJECT).map_err(|m| err("subject", m))?;
    let time = match optional_string(&mut map, "time", 64).map_err(|m| err("time", m))? {
        Some(t) => {
            chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|e| err("time", format!("must be an RFC 3339 timestamp: {e}")))?;
            t
        }
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };

    // The optional attributes stay in the attribute map, validated.
    let mut optional = Map::new();
    for (name, max) in [
        ("datacontenttype", MAX_CONTENT_TYPE),
        ("dataschema", MAX_URI),
    ] {
        if let Some(v) = optional_string(&mut map, name, max).map_err(|m| err(name, m))? {
            optional.insert(name.into(), Value::String(v));
        }
    }
    if let Some(ct) = optional.get("datacontenttype").and_then(Value::as_str)
        && ct.parse::<axum::http::HeaderValue>().is_err()
    {
        return Err(err("datacontenttype", "must be a valid media type".into()));
    }
    if let Some(encoded) = map.remove("data_base64") {
        let Value::String(encoded) = encoded else {
            return Err(err("data_base64", "must be a base64 string".into()));
        };
        if data.is_some() {
            return Err(err(
                "data_base64",
                "an event has either data or data_base64, not both".into(),
            ));
        }
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|e| err("data_base64", format!("not valid base64: {e}")))?;
        if bytes.len() > limits.max_data_bytes {
            return Err(data_too_large(
                &format!("{prefix}data_base64"),
                bytes.len(),
                limits,
            ));
        }
        optional.insert("data_base64".into(), Value::String(encoded));
    }
    if let Some(data) = &data
        && data.len() > limits.max_data_bytes
    {
        return Err(data_too_large(&format!("{prefix}data"), data.len(), limits));
    }

    // What is left are extension attributes.
    if map.len() > MAX_EXTENSIONS {
        return Err(err(
            "extensions",
            format!(
                "at most {MAX_EXTENSIONS} extension attributes, got {}",
                map.len()
            ),
        ));
    }
    for (name, value) in &map {
        let valid_name = !name.is_empty()
            && name.len() <= 20
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_name {
            return Err(err(
                name,
                "unknown attribute; extension names are 1 to 20 lowercase letters or digits".into(),
            ));
        }
        match value {
            Value::String(s) if s.len() <= MAX_EXTENSION_VALUE => {}
            Value::Number(_) | Value::Bool(_) => {}
            Value::String(_) => {
                return Err(err(
                    name,
                    format!("longer than {MAX_EXTENSION_VALUE} bytes"),
                ));
            }
            other => {
                return Err(err(
                    name,
                    format!("must be a string, number or boolean, got {}", kind(other)),
                ));
            }
        }
    }
    map.extend(optional);
    Ok(NewEvent {
        source,
        ce_id,
        event_type,
        subject,
        time,
        data: data.unwrap_or_else(|| "null".into()),
        extensions: Value::Object(map).to_string(),
    })
}

fn required_string(map: &mut Map<String, Value>, key: &str, max: usize) -> Result<String, String> {
    optional_string(map, key, max)?.ok_or_else(|| "is required".to_string())
}

fn optional_string(
    map: &mut Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err("must not be empty".into()),
        Some(Value::String(s)) if s.len() > max => {
            Err(format!("{} bytes, the limit is {max} bytes", s.len()))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("must be a string, got {}", kind(&other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<NewEvent>, FieldError> {
        parse_body(body.as_bytes(), &EventLimits::default())
    }

    #[test]
    fn a_full_event() {
        let events = parse(
            r#"{"specversion":"1.0","id":"1","source":"/shop","type":"order.created","subject":"o1",
                "time":"2026-11-23T10:00:00Z","data":{"a":1},"traceparent":"00-x","dataschema":"https://s"}"#,
        )
        .unwrap();
        let e = &events[0];
        assert_eq!(
            (e.ce_id.as_str(), e.source.as_str(), e.event_type.as_str()),
            ("1", "/shop", "order.created")
        );
        assert_eq!(e.subject.as_deref(), Some("o1"));
        assert_eq!(e.data, r#"{"a":1}"#);
        let ext: Value = serde_json::from_str(&e.extensions).unwrap();
        assert_eq!(ext["traceparent"], "00-x");
        assert_eq!(ext["dataschema"], "https://s");
    }

    #[test]
    fn json_data_is_kept_byte_for_byte_whatever_its_shape() {
        let data = r#"{ "z": 1, "a": [1.0, 12345678901234567890, 0.1000000000000000055511151231257827], "u": "\u00e9\ud83d\ude00" }"#;
        let body = format!(r#"{{"id":"1","source":"s","type":"t","data":{data}}}"#);
        assert_eq!(parse(&body).unwrap()[0].data, data);
        for data in [r#"[3, 2, 1]"#, r#""text""#, "42", "true"] {
            let body = format!(r#"{{"id":"1","source":"s","type":"t","data":{data}}}"#);
            assert_eq!(parse(&body).unwrap()[0].data, data);
        }
    }

    #[test]
    fn data_base64_and_the_optional_attributes_are_kept_beside_the_extensions() {
        let e = &parse(
            r#"{"id":"1","source":"s","type":"t","datacontenttype":"image/png","data_base64":"iVBORw0K"}"#,
        )
        .unwrap()[0];
        assert_eq!(e.data, "null");
        let ext: Value = serde_json::from_str(&e.extensions).unwrap();
        assert_eq!(ext["data_base64"], "iVBORw0K");
        assert_eq!(ext["datacontenttype"], "image/png");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn binary_mode_reads_percent_decoded_headers_and_keeps_the_body() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.created"),
            ("ce-subject", "caf%C3%A9%20au%20lait"),
            ("ce-traceparent", "00-abc-01"),
            ("content-type", "application/octet-stream"),
        ]);
        assert_eq!(mode(&h).unwrap(), Mode::Binary);
        let e = parse_binary(&h, &[0, 159, 255], &EventLimits::default()).unwrap();
        assert_eq!(e.subject.as_deref(), Some("café au lait"));
        let ext: Value = serde_json::from_str(&e.extensions).unwrap();
        assert_eq!(ext["traceparent"], "00-abc-01");
        assert_eq!(ext["datacontenttype"], "application/octet-stream");
        assert_eq!(
            STANDARD
                .decode(ext["data_base64"].as_str().unwrap())
                .unwrap(),
            [0, 159, 255]
        );

        let json = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b2"),
            ("ce-source", "/shop"),
            ("ce-type", "t"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        let e = parse_binary(&json, br#"{"b": 2,  "a": 1}"#, &EventLimits::default()).unwrap();
        assert_eq!(e.data, r#"{"b": 2,  "a": 1}"#);

        let missing = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]);
        let err = parse_binary(&missing, b"", &EventLimits::default()).unwrap_err();
        assert_eq!(err.field, "ce-id");
    }

    #[test]
    fn the_content_type_picks_the_mode() {
        let of = |ct: &str| mode(&headers(&[("content-type", ct), ("ce-specversion", "1.0")]));
        assert_eq!(
            of("application/cloudevents+json; charset=UTF-8").unwrap(),
            Mode::Structured
        );
        assert_eq!(
            of("application/cloudevents-batch+json").unwrap(),
            Mode::Batch
        );
        assert_eq!(of("text/plain").unwrap(), Mode::Binary);
        assert_eq!(
            mode(&headers(&[("content-type", "application/json")])).unwrap(),
            Mode::Json
        );
        assert_eq!(
            of("application/cloudevents+avro").unwrap_err().field,
            "content-type"
        );
    }

    #[test]
    fn time_defaults_to_now_and_data_to_null() {
        let e = &parse(r#"{"id":"1","source":"s","type":"t"}"#).unwrap()[0];
        assert!(chrono::DateTime::parse_from_rfc3339(&e.time).is_ok());
        assert_eq!(e.data, "null");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"id":"1","source":"s"}"#, "type", "required"),
            (r#"{"source":"s","type":"t"}"#, "id", "required"),
            (
                r#"{"id":"1","source":"s","type":"t","time":"yesterday"}"#,
                "time",
                "RFC 3339",
            ),
            (
                r#"{"id":"1","source":"s","type":"t","specversion":"0.3"}"#,
                "specversion",
                "1.0",
            ),
            (r#"{"id":"1","source":"s","type":"a b"}"#, "type", "spaces"),
            (
                r#"{"id":"1","source":"s","type":"t","Bad-Name":1}"#,
                "Bad-Name",
                "extension",
            ),
            (
                r#"{"id":"1","source":"s","type":"t","data_base64":"not base64!"}"#,
                "data_base64",
                "base64",
            ),
            (
                r#"{"id":"1","source":"s","type":"t","data_base64":"AA==","data":{}}"#,
                "data_base64",
                "not both",
            ),
            (
                r#"{"id":"1","source":"s","type":"t","datacontenttype":"a\nb"}"#,
                "datacontenttype",
                "media type",
            ),
            (
                r#"[{"id":"1","source":"s","type":"t"},{"id":"2","source":"s"}]"#,
                "[1].type",
                "required",
            ),
            (r#"[]"#, "body", "empty"),
            (r#"{"id": "#, "body", "JSON"),
            (r#"42"#, "body", "object"),
        ];
        for (body, field, words) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e}");
            assert!(e.message.contains(words), "{body}: {e}");
        }
    }

    #[test]
    fn limits_are_named() {
        let big = format!(
            r#"{{"id":"1","source":"s","type":"t","data":{{"x":"{}"}}}}"#,
            "a".repeat(600 << 10)
        );
        let e = parse(&big).unwrap_err();
        assert_eq!(e.field, "data");
        assert!(
            e.message.contains("limit is 524288 bytes (--max-data-kib)"),
            "{e}"
        );
        let long_type = format!(r#"{{"id":"1","source":"s","type":"{}"}}"#, "t".repeat(300));
        assert!(
            parse(&long_type)
                .unwrap_err()
                .message
                .contains("limit is 256")
        );
        let many: Vec<String> = (0..1001)
            .map(|i| format!(r#"{{"id":"{i}","source":"s","type":"t"}}"#))
            .collect();
        let e = parse(&format!("[{}]", many.join(","))).unwrap_err();
        assert!(
            e.message
                .contains("at most 1000 events per request (--max-batch)"),
            "{e}"
        );
    }
}
