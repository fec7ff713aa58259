//! The `teams` plugin: any event as a Microsoft Teams card.
//!
//! By default it posts to a Workflows ("When a Teams webhook request is
//! received") URL: a `message` envelope holding an Adaptive Card, version 1.4,
//! with a bold `TextBlock` title, a subtle `TextBlock` with the subject and
//! time, a `FactSet` of the important fields, a "+N more fields" note and an
//! `Action.OpenUrl` when `data` has a link (`url`, `link`, `html_url`, `href`).
//! With `format = "messagecard"` it posts the legacy Office 365 connector
//! `MessageCard` instead (`summary`, `title`, `text`, `sections[].facts`,
//! `potentialAction` `OpenUri`).
//!
//! Config:
//! - `format`: `"adaptivecard"` (default, for Workflows URLs) or
//!   `"messagecard"` (legacy `*.webhook.office.com` connectors).
//! - `title`: a title template (placeholders `{type}`, `{title}`, `{subject}`,
//!   `{source}`, `{id}`, `{time}`, `{data.path}`); default the readable type.
//! - `max_fields`: how many facts to show, 0 to 30 (default 15).
//!
//! Limits enforced for any input: the whole JSON body ≤ 28,000 bytes (we read
//! "28 KB" as the smaller, decimal figure): the body is serialised and, when
//! too big, rebuilt with shorter values and then fewer facts until it fits;
//! ≤ 30 facts; title ≤ 300 characters, fact titles ≤ 100, values ≤ 1,000; the
//! link is dropped when longer than 2,048 characters (never cut).
//! Untrusted text is escaped as markdown (`\ * _ ~ | # [ ]` and backtick
//! backslash-escaped, `& < >` as entities) since TextBlock, facts and
//! MessageCard text all render a markdown subset; an `@word` gets a
//! zero-width space after the `@`. Mentions need `msteams.entities`, which we
//! never send.
//!
//! Answers: `400` fails permanently with the body; `401`, `403` and `404`
//! disable the endpoint (the flow is gone or its signature expired); `429`
//! retries after `Retry-After`. For `messagecard`, a `200` whose body is not
//! `1` fails with the body (the connector reports errors that way). Anything
//! else follows the engine's standard rules.

use hookline_sdk::serde_json::{Map, Value, json};
use hookline_sdk::text::{self, Style, Summary};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request, Response, Verdict};

/// The Teams plugin.
pub struct Teams;

const OPTIONS: [&str; 3] = ["format", "title", "max_fields"];
const FORMATS: [&str; 2] = ["adaptivecard", "messagecard"];
const BODY_MAX: usize = 28_000;
const TITLE_MAX: usize = 300;
const FACT_TITLE_MAX: usize = 100;
const VALUE_MAX: usize = 1_000;
const FIELDS_MAX: u64 = 30;
const DEFAULT_FIELDS: u64 = 15;
const URL_MAX: usize = 2_048;
const THEME_COLOR: &str = "0076D7";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    AdaptiveCard,
    MessageCard,
}

struct Options<'c> {
    format: Format,
    title: Option<&'c str>,
    max_fields: usize,
}

fn format(config: &Config) -> Result<Format, PluginError> {
    match config.str("format")? {
        None | Some("adaptivecard") => Ok(Format::AdaptiveCard),
        Some("messagecard") => Ok(Format::MessageCard),
        Some(other) => Err(PluginError::BadConfig(format!(
            "format: \"{other}\" is not one of {}",
            FORMATS.join(", ")
        ))),
    }
}

fn options(config: &Config) -> Result<Options<'_>, PluginError> {
    Ok(Options {
        format: format(config)?,
        title: config.template("title")?,
        max_fields: config
            .u64_in("max_fields", 0, FIELDS_MAX)?
            .unwrap_or(DEFAULT_FIELDS) as usize,
    })
}

/// Caps used for one attempt at building the card.
#[derive(Clone, Copy)]
struct Caps {
    value: usize,
    facts: usize,
}

fn md(s: &str, max: usize) -> String {
    text::escape_fit(s, Style::Markdown, true, max)
}

fn card(summary: &Summary<'_>, format: Format, caps: Caps) -> Value {
    let title = md(&summary.title, TITLE_MAX);
    let mut byline = String::new();
    if let Some(subject) = summary.subject {
        text::push_escaped(&mut byline, subject, Style::Markdown, true, caps.value);
        byline.push_str(" · ");
    }
    text::push_escaped(&mut byline, &summary.time, Style::Markdown, true, 100);
    let shown = summary.fields.len().min(caps.facts);
    let facts = summary.fields[..shown].iter().map(|(key, value)| {
        let mut v = String::new();
        text::push_value(&mut v, value, Style::Markdown, true, caps.value);
        (md(&text::humanize(key), FACT_TITLE_MAX), v)
    });
    let note = text::more_note(summary.fields.len() - shown);

    match format {
        Format::AdaptiveCard => {
            let mut body = vec![
                json!({ "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true }),
                json!({ "type": "TextBlock", "text": byline, "isSubtle": true, "spacing": "None", "wrap": true }),
            ];
            if shown > 0 {
                let facts: Vec<Value> = facts
                    .map(|(t, v)| json!({ "title": t, "value": v }))
                    .collect();
                body.push(json!({ "type": "FactSet", "facts": facts }));
            }
            if let Some(note) = note {
                body.push(
                    json!({ "type": "TextBlock", "text": note, "isSubtle": true, "wrap": true }),
                );
            }
            let mut content = Map::new();
            content.insert(
                "$schema".into(),
                "http://adaptivecards.io/schemas/adaptive-card.json".into(),
            );
            content.insert("type".into(), "AdaptiveCard".into());
            content.insert("version".into(), "1.4".into());
            content.insert("body".into(), body.into());
            if let Some(url) = summary.link {
                content.insert(
                    "actions".into(),
                    json!([{ "type": "Action.OpenUrl", "title": "Open", "url": url }]),
                );
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": content,
                }],
            })
        }
        Format::MessageCard => {
            let mut section = Map::new();
            if shown > 0 {
                let facts: Vec<Value> = facts
                    .map(|(t, v)| json!({ "name": t, "value": v }))
                    .collect();
                section.insert("facts".into(), facts.into());
            }
            if let Some(note) = note {
                section.insert("text".into(), note.into());
            }
            let mut card = Map::new();
            card.insert("@type".into(), "MessageCard".into());
            card.insert("@context".into(), "https://schema.org/extensions".into());
            card.insert("summary".into(), title.clone().into());
            card.insert("themeColor".into(), THEME_COLOR.into());
            card.insert("title".into(), title.into());
            card.insert("text".into(), byline.into());
            if !section.is_empty() {
                card.insert("sections".into(), json!([section]));
            }
            if let Some(url) = summary.link {
                card.insert(
                    "potentialAction".into(),
                    json!([{ "@type": "OpenUri", "name": "Open", "targets": [{ "os": "default", "uri": url }] }]),
                );
            }
            Value::Object(card)
        }
    }
}

/// The serialised body, shrunk until it fits in [`BODY_MAX`] bytes.
fn body(event: &Event, opts: &Options<'_>) -> Vec<u8> {
    let summary = Summary::new(event, opts.title, URL_MAX);
    let mut caps = Caps {
        value: VALUE_MAX,
        facts: opts.max_fields,
    };
    loop {
        let bytes = card(&summary, opts.format, caps).to_string().into_bytes();
        // Worst case with every cap at its floor: 300 title chars of 4-byte
        // characters plus a short byline, well under the limit.
        if bytes.len() <= BODY_MAX || (caps.value <= 20 && caps.facts == 0) {
            return bytes;
        }
        if caps.value > 20 {
            caps.value /= 2;
        } else {
            caps.facts /= 2;
        }
    }
}

impl Plugin for Teams {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "teams",
            env!("CARGO_PKG_VERSION"),
            "Microsoft Teams: Adaptive Cards for Workflows, or legacy MessageCards",
        )
        .with_config_schema(json!({
            "type": "object",
            "properties": {
                "format": { "enum": FORMATS, "default": FORMATS[0] },
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
        Ok(vec![Request::bytes(body(event, &opts), "application/json")])
    }

    fn interpret_response(response: &Response, config: &Config) -> Option<Verdict> {
        match response.status {
            200 if format(config) == Ok(Format::MessageCard)
                && response.body_str().trim() != "1" =>
            {
                Some(Verdict::Fail(format!(
                    "teams connector refused the message: {}",
                    response.body_excerpt(1_000)
                )))
            }
            400 => Some(Verdict::Fail(format!(
                "teams refused the message: {}",
                response.body_excerpt(1_000)
            ))),
            401 | 403 | 404 => Some(Verdict::DisableEndpoint(format!(
                "teams webhook is gone or its URL is no longer valid ({}): {}",
                response.status,
                response.body_excerpt(300)
            ))),
            429 => response.retry_after().map(Verdict::RetryAfter),
            _ => None,
        }
    }
}

hookline_sdk::export_plugin!(Teams);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::serde_json;
    use hookline_sdk::testing;

    fn body_of(event: &Event, config: &str) -> Value {
        let requests = [testing::single_request::<Teams>(event, config)];
        assert!(
            requests[0].body.len() <= 28_000,
            "body is {} bytes",
            requests[0].body.len()
        );
        let body = requests[0].body_json().unwrap();
        let facts = if body["type"] == "message" {
            let content = &body["attachments"][0]["content"];
            assert_eq!(content["version"], "1.4");
            content["body"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "FactSet")
                .map(|f| f["facts"].clone())
        } else {
            body["sections"][0].get("facts").cloned()
        };
        let facts = facts.map_or(0, |f| f.as_array().unwrap().len());
        assert!(facts <= 30);
        body
    }

    #[test]
    fn typical_event_is_an_adaptive_card() {
        let b = body_of(&testing::order_created(), "{}");
        assert_eq!(b["type"], "message");
        let a = &b["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert!(a["contentUrl"].is_null());
        let c = &a["content"];
        assert_eq!(c["type"], "AdaptiveCard");
        assert_eq!(
            c["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(c["body"][0]["text"], "Order created");
        assert_eq!(c["body"][0]["weight"], "Bolder");
        assert_eq!(c["body"][1]["text"], "ord\\_8812 · 2026-11-23 12:00:00 UTC");
        assert_eq!(
            c["body"][2]["facts"][0],
            json!({ "title": "Currency", "value": "EUR" })
        );
        assert_eq!(c["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(
            c["actions"][0]["url"],
            "https://shop.example.test/orders/ord_8812"
        );
    }

    #[test]
    fn messagecard_format() {
        let b = body_of(
            &testing::order_created(),
            r#"{"format": "messagecard", "max_fields": 2}"#,
        );
        assert_eq!(b["@type"], "MessageCard");
        assert_eq!(b["@context"], "https://schema.org/extensions");
        assert_eq!(b["summary"], "Order created");
        assert_eq!(b["title"], "Order created");
        assert_eq!(
            b["sections"][0]["facts"][1],
            json!({ "name": "Note", "value": "Please gift-wrap the book and include a card that says: congratulations on the first program." })
        );
        assert_eq!(b["sections"][0]["text"], "+3 more fields");
        assert_eq!(
            b["potentialAction"][0]["targets"][0]["uri"],
            "https://shop.example.test/orders/ord_8812"
        );
    }

    #[test]
    fn config_is_checked() {
        for (config, option) in [
            (r#"{"colour": 1}"#, "colour"),
            (r#"{"format": "html"}"#, "format"),
            (r#"{"format": 1}"#, "format"),
            (r#"{"title": "}"}"#, "title"),
            (r#"{"max_fields": 31}"#, "max_fields"),
        ] {
            let err = Teams::validate_config(&Config::parse(config).unwrap()).unwrap_err();
            let PluginError::BadConfig(message) = err else {
                panic!("{config}: {err:?}")
            };
            assert!(message.starts_with(option), "{config}: {message}");
        }
    }

    #[test]
    fn event_data_is_escaped() {
        let event = testing::event(
            "x",
            r#"{"a": "</b><at>Ada</at> **bold** [x](https://evil.test) @everyone"}"#,
        );
        for config in [r#"{}"#, r#"{"format": "messagecard"}"#] {
            let raw = body_of(&event, config).to_string();
            assert!(
                !raw.contains("</b>") && !raw.contains("<at>") && !raw.contains("**bold**"),
                "{raw}"
            );
            assert!(!raw.contains("[x]") && !raw.contains("@everyone"), "{raw}");
        }
    }

    #[test]
    fn hostile_data_fits_28_kb() {
        let huge = "😀".repeat(2 << 20);
        let event = testing::event(
            "big",
            &format!(r#"{{"v": "{huge}", "url": "https://x.test/{huge}"}}"#),
        )
        .with_subject(huge.clone());
        for config in [
            r#"{"title": "{data.v}"}"#,
            r#"{"title": "{data.v}", "format": "messagecard"}"#,
        ] {
            body_of(&event, config);
        }
        let many: Vec<String> = (0..1_000)
            .map(|i| format!(r#""k{i:04}": "{}""#, "\\\"𝄞".repeat(400)))
            .collect();
        let event = testing::event("many", &format!("{{{}}}", many.join(",")));
        for config in [
            r#"{"max_fields": 30}"#,
            r#"{"max_fields": 30, "format": "messagecard"}"#,
        ] {
            let raw = body_of(&event, config).to_string();
            assert!(raw.contains("more fields"), "{}", &raw[..200]);
        }
    }

    #[test]
    fn unicode_at_every_cut() {
        let unit = "😀e\u{301}中👩\u{200D}👧";
        for len in (290..310).chain(990..1_010) {
            let value: String = unit.chars().cycle().take(len).collect();
            let data = serde_json::to_string(&json!({ "v": value })).unwrap();
            let event = testing::event("u", &data).with_subject(value.clone());
            for config in [r#"{"title": "{data.v}"}"#, r#"{"format": "messagecard"}"#] {
                let b = body_of(&event, config);
                let title = if config.contains("messagecard") {
                    &b["title"]
                } else {
                    &b["attachments"][0]["content"]["body"][0]["text"]
                };
                assert!(title.as_str().unwrap().chars().count() <= TITLE_MAX);
            }
        }
    }

    #[test]
    fn verdicts() {
        let workflows = Config::default();
        let legacy = Config::parse(r#"{"format": "messagecard"}"#).unwrap();
        let v = |r: Response, c: &Config| Teams::interpret_response(&r, c);
        assert_eq!(v(Response::new(202, ""), &workflows), None);
        assert!(
            matches!(v(Response::new(400, "bad card"), &workflows), Some(Verdict::Fail(m)) if m.contains("bad card"))
        );
        for status in [401, 403, 404] {
            assert!(matches!(
                v(Response::new(status, ""), &workflows),
                Some(Verdict::DisableEndpoint(_))
            ));
        }
        assert_eq!(
            v(
                Response::new(429, "").with_header("retry-after", "4"),
                &workflows
            ),
            Some(Verdict::RetryAfter(4))
        );
        assert_eq!(v(Response::new(503, ""), &workflows), None);
        assert_eq!(v(Response::new(200, "1"), &legacy), None);
        assert!(matches!(
            v(Response::new(200, "Summary or Text is required."), &legacy),
            Some(Verdict::Fail(m)) if m.contains("Summary or Text")
        ));
        assert_eq!(v(Response::new(200, "anything"), &workflows), None);
    }
}
