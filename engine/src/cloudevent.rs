//! Validation of incoming CloudEvents 1.0 (JSON, structured mode). Every
//! error names the field (with the event's index in a batch) and the rule or
//! limit it broke; nothing is stored unless the whole request is valid.

use serde_json::{Map, Value};

use crate::store::events::NewEvent;

/// Limits on incoming events.
#[derive(Debug, Clone)]
pub struct EventLimits {
    /// Events in one request.
    pub max_batch: usize,
    /// Bytes of one event's `data`, as compact JSON.
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

const MAX_ID: usize = 256;
const MAX_TYPE: usize = 256;
const MAX_SOURCE: usize = 1024;
const MAX_SUBJECT: usize = 1024;
const MAX_EXTENSIONS: usize = 32;
const MAX_EXTENSION_VALUE: usize = 1024;

/// Parses a request body: one event object or an array of them.
pub fn parse_body(body: &[u8], limits: &EventLimits) -> Result<Vec<NewEvent>, FieldError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| FieldError {
        field: "body".into(),
        message: format!("not valid JSON: {e}"),
    })?;
    match value {
        Value::Object(map) => Ok(vec![parse_event(map, "")?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(FieldError {
                    field: "body".into(),
                    message: "the array is empty".into(),
                });
            }
            if items.len() > limits.max_batch {
                return Err(FieldError {
                    field: "body".into(),
                    message: format!(
                        "at most {} events per request, got {}",
                        limits.max_batch,
                        items.len()
                    ),
                });
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => parse_event(map, &format!("[{i}].")),
                    _ => Err(FieldError {
                        field: format!("[{i}]"),
                        message: "must be a JSON object".into(),
                    }),
                })
                .collect()
        }
        _ => Err(FieldError {
            field: "body".into(),
            message: "must be a CloudEvent object or an array of them".into(),
        }),
    }
    .and_then(|events| {
        check_data_sizes(&events, limits)?;
        Ok(events)
    })
}

fn check_data_sizes(events: &[NewEvent], limits: &EventLimits) -> Result<(), FieldError> {
    for (i, e) in events.iter().enumerate() {
        if e.data.len() > limits.max_data_bytes {
            let field = if events.len() == 1 {
                "data".to_string()
            } else {
                format!("[{i}].data")
            };
            return Err(FieldError {
                field,
                message: format!(
                    "{} bytes, the limit is {} bytes",
                    e.data.len(),
                    limits.max_data_bytes
                ),
            });
        }
    }
    Ok(())
}

fn parse_event(mut map: Map<String, Value>, prefix: &str) -> Result<NewEvent, FieldError> {
    let err = |field: &str, message: String| FieldError {
        field: format!("{prefix}{field}"),
        message,
    };

    if let Some(v) = map.remove("specversion")
        && v != Value::String("1.0".into())
    {
        return Err(err("specversion", format!("must be \"1.0\", got {v}")));
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
    if let Some(ct) =
        optional_string(&mut map, "datacontenttype", 256).map_err(|m| err("datacontenttype", m))?
    {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(err(
                "datacontenttype",
                format!("must be JSON (application/json or */*+json), got {ct:?}"),
            ));
        }
    }
    if map.contains_key("data_base64") {
        return Err(err(
            "data_base64",
            "binary data is not supported; send data as a JSON object".into(),
        ));
    }
    let data = match map.remove("data") {
        None | Some(Value::Null) => "null".to_string(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(other) => {
            return Err(err(
                "data",
                format!("must be a JSON object, got {}", kind(&other)),
            ));
        }
    };

    // What is left are extension attributes (and `dataschema`, kept alongside).
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
    Ok(NewEvent {
        source,
        ce_id,
        event_type,
        subject,
        time,
        data,
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
    fn time_defaults_to_now_and_data_to_null() {
        let e = &parse(r#"{"id":"1","source":"s","type":"t"}"#).unwrap()[0];
        assert!(chrono::DateTime::parse_from_rfc3339(&e.time).is_ok());
        assert_eq!(e.data, "null");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"id":"1","source":"s"}"#, "type", "required"),
            (
                r#"{"id":"1","source":"s","type":"t","data":[1]}"#,
                "data",
                "object",
            ),
            (
                r#"{"id":"1","source":"s","type":"t","data":"x"}"#,
                "data",
                "object",
            ),
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
                r#"{"id":"1","source":"s","type":"t","data_base64":"AA=="}"#,
                "data_base64",
                "binary",
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
        assert!(e.message.contains("limit is 524288 bytes"), "{e}");
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
        assert!(e.message.contains("at most 1000"), "{e}");
    }
}
