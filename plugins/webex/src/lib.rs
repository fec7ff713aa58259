//! The `webex` plugin: any event as a markdown message for a Webex incoming
//! webhook, `{"markdown": "…"}`.
//!
//! The message: the title in bold, an "Open" link when `data` has one (`url`,
//! `link`, `html_url` or `href`), the subject and time in italics, the
//! important fields as a list and a "+N more fields" note.
//!
//! Config:
//! - `title`: a title template (placeholders `{type}`, `{title}`, `{subject}`,
//!   `{source}`, `{id}`, `{time}`, `{data.path}`); default the readable type.
//! - `max_fields`: how many fields to list, 0 to 50 (default 15).
//!
//! Limits enforced for any input: the markdown is at most 7,439 UTF-8 bytes
//! (cut on a character boundary); field values are cut to 500 characters and
//! whole list lines that no longer fit are counted in the note. Links longer
//! than 2,048 characters are dropped (never cut). Untrusted text is escaped:
//! `& < >` as entities, so `<@all>` and `<@personEmail:…>` cannot mention,
//! and markdown punctuation with a backslash.
//!
//! Answers: `400` fails permanently with the body; `404` and `410` disable the
//! endpoint (the webhook was removed); `429` retries after `Retry-After`;
//! anything else follows the engine's standard rules.

use hookline_sdk::serde_json::json;
use hookline_sdk::text::{Summary, Unit};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request, Response, Verdict};

/// The Webex plugin.
pub struct Webex;

const OPTIONS: [&str; 2] = ["title", "max_fields"];
const MARKDOWN_MAX_BYTES: usize = 7_439;
const VALUE_MAX: usize = 500;
const FIELDS_MAX: u64 = 50;
const DEFAULT_FIELDS: u64 = 15;
const URL_MAX: usize = 2_048;

struct Options<'c> {
    title: Option<&'c str>,
    max_fields: usize,
}

fn options(config: &Config) -> Result<Options<'_>, PluginError> {
    Ok(Options {
        title: config.template("title")?,
        max_fields: config
            .u64_in("max_fields", 0, FIELDS_MAX)?
            .unwrap_or(DEFAULT_FIELDS) as usize,
    })
}

impl Plugin for Webex {
    fn info() -> PluginInfo {
        PluginInfo::new("webex", env!("CARGO_PKG_VERSION"), "Webex incoming webhooks: markdown messages")
            .with_config_schema(json!({
                "type": "object",
                "properties": {
                    "title": { "type": "string" },
                    "max_fields": { "type": "integer", "minimum": 0, "maximum": FIELDS_MAX, "default": DEFAULT_FIELDS }
                },
                "additionalProperties": false
            }))
    }

    fn validate_config(config: &Config) -> Result<(), PluginError> {
        config.allow_only(&OPTIONS)?;
        options(config).map(|_| ())
    }

    fn transform(event: &Event, config: &Config) -> Result<Vec<Request>, PluginError> {
        let opts = options(config)?;
        let summary = Summary::new(event, opts.title, URL_MAX);
        let markdown =
            summary.to_markdown(opts.max_fields, VALUE_MAX, MARKDOWN_MAX_BYTES, Unit::Bytes);
        Ok(vec![Request::json(&json!({ "markdown": markdown }))])
    }

    fn interpret_response(response: &Response, _config: &Config) -> Option<Verdict> {
        match response.status {
            400 => Some(Verdict::Fail(format!(
                "webex refused the message: {}",
                response.body_excerpt(1_000)
            ))),
            404 | 410 => Some(Verdict::DisableEndpoint(format!(
                "webex webhook was removed ({}): {}",
                response.status,
                response.body_excerpt(300)
            ))),
            429 => response.retry_after().map(Verdict::RetryAfter),
            _ => None,
        }
    }
}

hookline_sdk::export_plugin!(Webex);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::serde_json::{self, Value};
    use hookline_sdk::testing;

    fn markdown(event: &Event, config: &str) -> String {
        let requests = [testing::single_request::<Webex>(event, config)];
        let body = requests[0].body_json().unwrap();
        let Value::Object(map) = &body else {
            panic!("{body}")
        };
        assert_eq!(map.len(), 1, "{body}");
        let md = body["markdown"].as_str().unwrap().to_string();
        assert!(md.len() <= MARKDOWN_MAX_BYTES, "{} bytes", md.len());
        md
    }

    #[test]
    fn typical_event() {
        let md = markdown(&testing::order_created(), r#"{"max_fields": 3}"#);
        assert_eq!(
            md,
            "**Order created**\n[Open](https://shop.example.test/orders/ord_8812)\n\
             _ord\\_8812 · 2026-11-23 12:00:00 UTC_\n- **Currency:** EUR\n\
             - **Note:** Please gift-wrap the book and include a card that says: congratulations on the first program.\n\
             - **Order ID:** ord\\_8812\n_+2 more fields_"
        );
        let md = markdown(
            &testing::order_created(),
            r#"{"title": "Order {data.order_id}"}"#,
        );
        assert!(md.starts_with("**Order ord\\_8812**\n"), "{md}");
    }

    #[test]
    fn config_is_checked() {
        for (config, option) in [
            (r#"{"text": "x"}"#, "text"),
            (r#"{"title": "{bogus}"}"#, "title"),
            (r#"{"max_fields": 51}"#, "max_fields"),
            (r#"{"max_fields": "3"}"#, "max_fields"),
        ] {
            let err = Webex::validate_config(&Config::parse(config).unwrap()).unwrap_err();
            let PluginError::BadConfig(message) = err else {
                panic!("{config}: {err:?}")
            };
            assert!(message.starts_with(option), "{config}: {message}");
        }
    }

    #[test]
    fn event_data_cannot_mention() {
        let event = testing::event(
            "x",
            r#"{"a": "<@all> <@personEmail:boss@example.test> **b** [l](https://e.test)"}"#,
        )
        .with_subject("<@all>");
        let md = markdown(&event, "{}");
        assert!(!md.contains("<@"), "{md}");
        assert!(md.contains("&lt;@\u{200B}all&gt;"), "{md}");
        assert!(!md.contains("**b**") && !md.contains("[l]"), "{md}");
    }

    #[test]
    fn hostile_data_fits_in_bytes() {
        let huge = "中".repeat(3 << 20);
        let event = testing::event(
            "big",
            &format!(r#"{{"v": "{huge}", "url": "https://x.test/{huge}"}}"#),
        )
        .with_subject(huge.clone());
        let md = markdown(&event, r#"{"title": "{data.v}"}"#);
        assert!(!md.contains("https://x.test"));
        let many: Vec<String> = (0..1_000)
            .map(|i| format!(r#""k{i:04}": "{}""#, "😀".repeat(600)))
            .collect();
        let md = markdown(
            &testing::event("many", &format!("{{{}}}", many.join(","))),
            r#"{"max_fields": 50}"#,
        );
        assert!(md.ends_with("more fields_"), "{md}");
    }

    #[test]
    fn unicode_at_every_cut() {
        let unit = "😀e\u{301}中👩\u{200D}👧";
        for len in 1_800..1_900 {
            let value: String = unit.chars().cycle().take(len).collect();
            let data = serde_json::to_string(
                &json!({ "a": value, "b": value, "c": value, "d": value, "e": value }),
            )
            .unwrap();
            markdown(
                &testing::event("u", &data).with_subject(value.clone()),
                r#"{"title": "{data.a}"}"#,
            );
        }
    }

    #[test]
    fn verdicts() {
        let c = Config::default();
        let v = |r: Response| Webex::interpret_response(&r, &c);
        assert!(
            matches!(v(Response::new(400, "bad markdown")), Some(Verdict::Fail(m)) if m.contains("bad markdown"))
        );
        assert!(matches!(
            v(Response::new(404, "")),
            Some(Verdict::DisableEndpoint(_))
        ));
        assert!(matches!(
            v(Response::new(410, "")),
            Some(Verdict::DisableEndpoint(_))
        ));
        assert_eq!(
            v(Response::new(429, "").with_header("Retry-After", "60")),
            Some(Verdict::RetryAfter(60))
        );
        assert_eq!(v(Response::new(204, "")), None);
        assert_eq!(v(Response::new(500, "")), None);
    }
}
