//! The `markdown` plugin: any event as a markdown message in JSON, for
//! generic chat receivers (Mattermost, Rocket.Chat, Zulip-style bridges,
//! custom bots): `{"text": "…"}`.
//!
//! The message: the title in bold, an "Open" link when `data` has one (`url`,
//! `link`, `html_url` or `href`), the subject and time in italics, the
//! important fields as a list and a "+N more fields" note.
//!
//! Config:
//! - `field`: the member holding the message: `"text"` (default),
//!   `"markdown"`, `"content"` or `"message"`.
//! - `username`, `icon_url`: passed through as `username` and `icon_url`
//!   when set (`icon_url` must be an http(s) URL; `username` 1 to 80
//!   characters).
//! - `max_chars`: the message's cap in characters, 200 to 1,000,000 (default
//!   16,000; there is no platform limit).
//! - `title`: a title template (placeholders `{type}`, `{title}`, `{subject}`,
//!   `{source}`, `{id}`, `{time}`, `{data.path}`); default the readable type.
//! - `max_fields`: how many fields to list, 0 to 100 (default 20).
//!
//! Limits enforced for any input: the message ≤ `max_chars` characters, field
//! values ≤ 1,000 characters, whole list lines that no longer fit are counted
//! in the note; links longer than 2,048 characters are dropped, never cut.
//! Untrusted text is escaped: markdown punctuation with a backslash, `& < >`
//! as entities, and a mention-like `@word` (`@channel`, `@all`, `@here`,
//! `@user`) gets a zero-width space after the `@`, so receivers that notify on
//! `@` mentions do not. E-mail addresses are left intact.
//!
//! Answers: the engine's standard rules.

use hookline_sdk::serde_json::{Map, Value, json};
use hookline_sdk::text::{Summary, Unit};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

/// The generic markdown plugin.
pub struct Markdown;

const OPTIONS: [&str; 6] = [
    "field",
    "username",
    "icon_url",
    "max_chars",
    "title",
    "max_fields",
];
const FIELDS: [&str; 4] = ["text", "markdown", "content", "message"];
const DEFAULT_MAX_CHARS: u64 = 16_000;
const MIN_MAX_CHARS: u64 = 200;
const MAX_MAX_CHARS: u64 = 1_000_000;
const VALUE_MAX: usize = 1_000;
const FIELDS_MAX: u64 = 100;
const DEFAULT_FIELDS: u64 = 20;
const URL_MAX: usize = 2_048;
const USERNAME_MAX: usize = 80;

struct Options<'c> {
    field: &'c str,
    username: Option<&'c str>,
    icon_url: Option<&'c str>,
    max_chars: usize,
    title: Option<&'c str>,
    max_fields: usize,
}

fn options(config: &Config) -> Result<Options<'_>, PluginError> {
    let field = config.str("field")?.unwrap_or(FIELDS[0]);
    if !FIELDS.contains(&field) {
        return Err(PluginError::BadConfig(format!(
            "field: \"{field}\" is not one of {}",
            FIELDS.join(", ")
        )));
    }
    let username = config.str("username")?;
    if username.is_some_and(|u| u.trim().is_empty() || u.chars().count() > USERNAME_MAX) {
        return Err(PluginError::BadConfig(format!(
            "username: must be 1 to {USERNAME_MAX} characters"
        )));
    }
    Ok(Options {
        field,
        username,
        icon_url: config.http_url("icon_url", URL_MAX)?,
        max_chars: config
            .u64_in("max_chars", MIN_MAX_CHARS, MAX_MAX_CHARS)?
            .unwrap_or(DEFAULT_MAX_CHARS) as usize,
        title: config.template("title")?,
        max_fields: config
            .u64_in("max_fields", 0, FIELDS_MAX)?
            .unwrap_or(DEFAULT_FIELDS) as usize,
    })
}

impl Plugin for Markdown {
    fn info() -> PluginInfo {
        PluginInfo::new("markdown", env!("CARGO_PKG_VERSION"), "Generic chat receivers: a markdown message in JSON")
            .with_config_schema(json!({
                "type": "object",
                "properties": {
                    "field": { "enum": FIELDS, "default": FIELDS[0] },
                    "username": { "type": "string", "minLength": 1, "maxLength": USERNAME_MAX },
                    "icon_url": { "type": "string", "format": "uri" },
                    "max_chars": { "type": "integer", "minimum": MIN_MAX_CHARS, "maximum": MAX_MAX_CHARS, "default": DEFAULT_MAX_CHARS },
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
        let message = summary.to_markdown(opts.max_fields, VALUE_MAX, opts.max_chars, Unit::Chars);
        let mut body = Map::new();
        body.insert(opts.field.into(), message.into());
        if let Some(name) = opts.username {
            body.insert("username".into(), name.into());
        }
        if let Some(url) = opts.icon_url {
            body.insert("icon_url".into(), url.into());
        }
        Ok(vec![Request::json(&Value::Object(body))])
    }
}

hookline_sdk::export_plugin!(Markdown);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::serde_json;
    use hookline_sdk::testing;
    use hookline_sdk::{Response, Verdict};

    fn body(event: &Event, config: &str) -> Value {
        let requests = [testing::single_request::<Markdown>(event, config)];
        let parsed = Config::parse(config).unwrap();
        let opts = options(&parsed).unwrap();
        let body = requests[0].body_json().unwrap();
        let n = body[opts.field].as_str().unwrap().chars().count();
        assert!(n <= opts.max_chars, "{n} > {}", opts.max_chars);
        body
    }

    #[test]
    fn typical_event_and_options() {
        let b = body(&testing::order_created(), "{}");
        let text = b["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "**Order created**\n[Open](https://shop.example.test/orders/ord_8812)\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n- **Total:** 149.90"), "{text}");
        assert_eq!(b.as_object().unwrap().len(), 1);

        let b = body(
            &testing::order_created(),
            r#"{"field": "content", "username": "Hookline", "icon_url": "https://x.test/i.png", "max_chars": 200}"#,
        );
        assert!(b.get("text").is_none());
        assert!(
            b["content"].as_str().unwrap().ends_with("more fields_"),
            "{b}"
        );
        assert_eq!(b["username"], "Hookline");
        assert_eq!(b["icon_url"], "https://x.test/i.png");
    }

    #[test]
    fn config_is_checked() {
        for (config, option) in [
            (r#"{"channel": "x"}"#, "channel"),
            (r#"{"field": "body"}"#, "field"),
            (r#"{"username": ""}"#, "username"),
            (r#"{"icon_url": "file:///etc/passwd"}"#, "icon_url"),
            (r#"{"max_chars": 10}"#, "max_chars"),
            (r#"{"max_chars": 1.5}"#, "max_chars"),
            (r#"{"title": "{"}"#, "title"),
            (r#"{"max_fields": 101}"#, "max_fields"),
        ] {
            let err = Markdown::validate_config(&Config::parse(config).unwrap()).unwrap_err();
            let PluginError::BadConfig(message) = err else {
                panic!("{config}: {err:?}")
            };
            assert!(message.starts_with(option), "{config}: {message}");
        }
    }

    #[test]
    fn event_data_cannot_mention_or_inject() {
        let event = testing::event(
            "x",
            r#"{"a": "@channel @all @here @ada <!channel> **b** [l](https://e.test) <script>", "mail": "ada@example.test"}"#,
        );
        let text = body(&event, "{}")["text"].as_str().unwrap().to_string();
        for bad in [
            "@channel", "@all", "@here", "@ada", "<!", "**b**", "[l]", "<script>",
        ] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
        assert!(text.contains("ada@example.test"), "{text}");
    }

    #[test]
    fn hostile_data_within_max_chars() {
        let huge = "x".repeat(10 << 20);
        let event =
            testing::event("big", &format!(r#"{{"v": "{huge}"}}"#)).with_subject(huge.clone());
        body(&event, r#"{"title": "{data.v}"}"#);
        let many: Vec<String> = (0..1_000)
            .map(|i| format!(r#""k{i:04}": "{}""#, "👩‍👧".repeat(300)))
            .collect();
        let event = testing::event("many", &format!("{{{}}}", many.join(",")));
        let b = body(&event, r#"{"max_fields": 100}"#);
        assert!(b["text"].as_str().unwrap().ends_with("more fields_"));
        let unit = "😀e\u{301}中👩\u{200D}👧";
        for max in 200..260 {
            let value: String = unit.chars().cycle().take(400).collect();
            let data = serde_json::to_string(&json!({ "v": value })).unwrap();
            body(
                &testing::event("u", &data).with_subject(value.clone()),
                &format!(r#"{{"max_chars": {max}, "title": "{{data.v}}"}}"#),
            );
        }
    }

    #[test]
    fn standard_rules_apply() {
        let c = Config::default();
        assert_eq!(
            Markdown::interpret_response(&Response::new(400, "x"), &c),
            None::<Verdict>
        );
        assert_eq!(
            Markdown::interpret_response(&Response::new(200, "x"), &c),
            None
        );
    }
}
