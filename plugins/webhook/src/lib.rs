//! The `webhook` plugin, Hookline's default: sends the CloudEvent as received,
//! in structured-mode JSON.
//!
//! Config:
//! - `content_type`: `"application/cloudevents+json"` (the default) or
//!   `"application/json"`.
//!
//! The body is assembled from the stored attributes with `data` spliced in as
//! the exact JSON text the producer sent, so nothing is re-encoded on the way.

use hookline_sdk::serde_json::{self, Map, Value, json};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

/// The plain-JSON plugin.
pub struct Webhook;

const CONTENT_TYPES: [&str; 2] = ["application/cloudevents+json", "application/json"];

impl Plugin for Webhook {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "webhook",
            env!("CARGO_PKG_VERSION"),
            "The CloudEvent as plain JSON (structured mode)",
        )
        .with_config_schema(json!({
            "type": "object",
            "properties": {
                "content_type": { "enum": CONTENT_TYPES, "default": CONTENT_TYPES[0] }
            },
            "additionalProperties": false
        }))
    }

    fn validate_config(config: &Config) -> Result<(), PluginError> {
        config.allow_only(&["content_type"])?;
        content_type(config).map(|_| ())
    }

    fn transform(event: &Event, config: &Config) -> Result<Vec<Request>, PluginError> {
        let mut attributes = Map::new();
        attributes.insert("specversion".into(), "1.0".into());
        attributes.insert("id".into(), event.id.clone().into());
        attributes.insert("source".into(), event.source.clone().into());
        attributes.insert("type".into(), event.ty.clone().into());
        if let Some(subject) = &event.subject {
            attributes.insert("subject".into(), subject.clone().into());
        }
        attributes.insert("time".into(), event.time.clone().into());
        if let Ok(Value::Object(extensions)) = serde_json::from_str(&event.extensions_json) {
            for (name, value) in extensions {
                attributes.entry(name).or_insert(value);
            }
        }
        // JSON data goes in `data`, as sent; data that is not JSON is
        // already among the attributes as `data_base64`.
        let has_data = !matches!(event.data_json.trim(), "" | "null");
        if has_data {
            attributes
                .entry("datacontenttype")
                .or_insert_with(|| "application/json".into());
        }

        // Serialise the attributes, then splice `data` in verbatim.
        let mut body = serde_json::to_vec(&Value::Object(attributes))
            .map_err(|e| PluginError::Internal(format!("failed to encode event: {e}")))?;
        if has_data {
            body.pop(); // the closing brace
            body.extend_from_slice(b",\"data\":");
            body.extend_from_slice(event.data_json.trim().as_bytes());
            body.push(b'}');
        }
        Ok(vec![Request::bytes(body, content_type(config)?)])
    }
}

fn content_type(config: &Config) -> Result<&str, PluginError> {
    match config.str("content_type")? {
        None => Ok(CONTENT_TYPES[0]),
        Some(ct) if CONTENT_TYPES.contains(&ct) => Ok(ct),
        Some(other) => Err(PluginError::BadConfig(format!(
            "content_type: \"{other}\" is not one of {}",
            CONTENT_TYPES.join(", ")
        ))),
    }
}

hookline_sdk::export_plugin!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::testing;

    #[test]
    fn body_is_the_cloudevent_with_data_verbatim() {
        let event = testing::order_created().with_extensions(r#"{"traceparent":"00-abc-01"}"#);
        let requests = Webhook::transform(&event, &Config::default()).unwrap();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.content_type, "application/cloudevents+json");
        let body = request.body_json().unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], "evt-1");
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["subject"], "ord_8812");
        assert_eq!(body["traceparent"], "00-abc-01");
        assert_eq!(body["data"], *event.data());
        // The data bytes are the producer's, not a re-encoding.
        assert!(
            request
                .body_str()
                .ends_with(&format!(",\"data\":{}}}", event.data_json.trim()))
        );
    }

    #[test]
    fn event_without_data_has_no_data_member() {
        let event = testing::event("ping", "null");
        let body = Webhook::transform(&event, &Config::default()).unwrap()[0]
            .body_json()
            .unwrap();
        assert!(body.get("data").is_none(), "{body}");
        assert!(body.get("datacontenttype").is_none(), "{body}");
    }

    #[test]
    fn content_type_is_configurable_and_checked() {
        let config = Config::parse(r#"{"content_type": "application/json"}"#).unwrap();
        Webhook::validate_config(&config).unwrap();
        let requests = Webhook::transform(&testing::order_created(), &config).unwrap();
        assert_eq!(requests[0].content_type, "application/json");

        let bad = Config::parse(r#"{"content_type": "text/plain"}"#).unwrap();
        let err = Webhook::validate_config(&bad).unwrap_err();
        assert!(err.to_string().contains("content_type"), "{err}");

        let unknown = Config::parse(r#"{"colour": "red"}"#).unwrap();
        let err = Webhook::validate_config(&unknown).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
