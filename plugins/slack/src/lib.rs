//! The `slack` plugin: any event as a Block Kit message for a Slack incoming
//! webhook.
//!
//! The message: a `header` block with the title, `section` blocks whose
//! `fields` are the event's important fields, a `context` block with the
//! subject, the time and a "+N more fields" note, and an `actions` block with
//! a button when `data` has a link (`url`, `link`, `html_url` or `href`).
//! The top-level `text` (notification and accessibility fallback) is always
//! present: the title and the subject.
//!
//! Config:
//! - `title`: a title template, e.g. `"New order {data.order_id} from
//!   {data.customer.name}"`; placeholders `{type}`, `{title}` (the readable
//!   type), `{subject}`, `{source}`, `{id}`, `{time}`, `{data.path}`. Default:
//!   the readable event type ("Order created").
//! - `max_fields`: how many fields to show, 0 to 40 (default 10).
//! - `button_text`: the link button's label, 1 to 75 characters (default "Open").
//! - `thread_ts`: post as a reply in this thread (a Slack message timestamp).
//!
//! Limits enforced for any input: `text` ≤ 3,000 characters (Slack's hard
//! limit is 40,000), ≤ 50 blocks (at most 7 are used), header ≤ 150
//! characters, ≤ 10 fields per section each ≤ 2,000 characters, context ≤ 10
//! elements each ≤ 2,000 characters, button text ≤ 75, URL ≤ 3,000 (a longer
//! link is dropped, never cut). Every piece of event data is escaped for
//! `mrkdwn` (`&`, `<`, `>`), so it cannot mention (`<!channel>`, `<@U…>`) nor
//! inject links; the header and button are `plain_text`.
//!
//! Answers: `200 ok` is success; `invalid_payload`, `no_text` and
//! `invalid_blocks*` fail permanently with the body; `no_service`,
//! `channel_not_found`, `channel_is_archived`, `invalid_token`, `no_team`,
//! `team_disabled` and `action_prohibited` disable the endpoint. For
//! `action_prohibited` (an admin restriction on the channel or app) we chose
//! to disable too: every later message would be refused the same way, and a
//! disabled endpoint tells the operator, who re-enables it once the
//! restriction is lifted. `429` retries after `Retry-After`; anything else
//! follows the engine's standard rules.

use hookline_sdk::serde_json::json;
use hookline_sdk::text::{self, Style, Summary};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request, Response, Verdict};

/// The Slack plugin.
pub struct Slack;

const OPTIONS: [&str; 4] = ["title", "max_fields", "button_text", "thread_ts"];
const TEXT_MAX: usize = 3_000;
const HEADER_MAX: usize = 150;
const FIELD_MAX: usize = 2_000;
const FIELDS_PER_SECTION: usize = 10;
const CONTEXT_MAX: usize = 2_000;
const BUTTON_MAX: usize = 75;
const URL_MAX: usize = 3_000;
const MAX_FIELDS: u64 = 40;
const DEFAULT_FIELDS: u64 = 10;
/// A field's label is cut shorter than its value's share.
const LABEL_MAX: usize = 200;

const FAIL_CODES: [&str; 3] = ["invalid_payload", "no_text", "invalid_blocks"];
const GONE_CODES: [&str; 7] = [
    "no_service",
    "channel_not_found",
    "channel_is_archived",
    "invalid_token",
    "no_team",
    "team_disabled",
    "action_prohibited",
];

struct Options<'c> {
    title: Option<&'c str>,
    max_fields: usize,
    button_text: &'c str,
    thread_ts: Option<&'c str>,
}

fn options(config: &Config) -> Result<Options<'_>, PluginError> {
    let button_text = config.str("button_text")?.unwrap_or("Open");
    let chars = button_text.chars().count();
    if chars == 0 || chars > BUTTON_MAX || button_text.trim().is_empty() {
        return Err(PluginError::BadConfig(format!(
            "button_text: must be 1 to {BUTTON_MAX} characters"
        )));
    }
    let thread_ts = config.str("thread_ts")?;
    if let Some(ts) = thread_ts
        && (ts.is_empty() || ts.len() > 32 || !ts.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    {
        return Err(PluginError::BadConfig(
            "thread_ts: must be a Slack message timestamp such as 1712345678.123456".into(),
        ));
    }
    Ok(Options {
        title: config.template("title")?,
        max_fields: config
            .u64_in("max_fields", 0, MAX_FIELDS)?
            .unwrap_or(DEFAULT_FIELDS) as usize,
        button_text,
        thread_ts,
    })
}

/// Appends a `mrkdwn` text object.
fn mrkdwn(out: &mut String, text: &str) {
    out.push_str(r#"{"text":"#);
    text::push_json_str(out, text);
    out.push_str(r#","type":"mrkdwn"}"#);
}

/// Appends a `plain_text` text object.
fn plain(out: &mut String, text: &str) {
    out.push_str(r#"{"emoji":true,"text":"#);
    text::push_json_str(out, text);
    out.push_str(r#","type":"plain_text"}"#);
}

/// Builds the message body as JSON text, written directly (keys in the
/// order `serde_json` would sort them, so the bytes are what serialising a
/// `Value` gave).
fn message(event: &Event, opts: &Options<'_>) -> String {
    let summary = Summary::new(event, opts.title, URL_MAX);
    let mut out = String::with_capacity(1024 + event.data_json.len());
    // Each piece of text is escaped for Slack here first, then written as JSON.
    let mut t = String::with_capacity(256);
    let mut label = String::with_capacity(32);

    out.push_str(r#"{"blocks":[{"text":"#);
    text::push_escaped(&mut t, &summary.title, Style::Plain, true, HEADER_MAX);
    plain(&mut out, &t);
    out.push_str(r#","type":"header"}"#);

    let shown = summary.fields.len().min(opts.max_fields);
    for chunk in summary.fields[..shown].chunks(FIELDS_PER_SECTION) {
        out.push_str(r#",{"fields":["#);
        for (n, (key, value)) in chunk.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            label.clear();
            text::push_humanized(&mut label, key);
            t.clear();
            t.push('*');
            text::push_escaped(&mut t, &label, Style::Slack, true, LABEL_MAX);
            t.push_str("*\n");
            let room = FIELD_MAX - t.chars().count();
            text::push_value(&mut t, value, Style::Slack, false, room);
            mrkdwn(&mut out, &t);
        }
        out.push_str(r#"],"type":"section"}"#);
    }

    out.push_str(r#",{"elements":["#);
    if let Some(subject) = summary.subject {
        t.clear();
        text::push_escaped(&mut t, subject, Style::Slack, true, CONTEXT_MAX);
        mrkdwn(&mut out, &t);
        out.push(',');
    }
    t.clear();
    text::push_escaped(&mut t, &summary.time, Style::Slack, true, CONTEXT_MAX);
    mrkdwn(&mut out, &t);
    if let Some(note) = text::more_note(summary.fields.len() - shown) {
        out.push(',');
        mrkdwn(&mut out, &note);
    }
    out.push_str(r#"],"type":"context"}"#);

    if let Some(url) = summary.link {
        out.push_str(r#",{"elements":[{"text":"#);
        plain(&mut out, opts.button_text);
        out.push_str(r#","type":"button","url":"#);
        text::push_json_str(&mut out, url);
        out.push_str(r#"}],"type":"actions"}"#);
    }

    t.clear();
    text::push_escaped(&mut t, &summary.title, Style::Slack, true, TEXT_MAX / 2);
    if let Some(subject) = summary.subject {
        t.push_str(" — ");
        let room = TEXT_MAX - t.chars().count();
        text::push_escaped(&mut t, subject, Style::Slack, true, room);
    }
    out.push_str(r#"],"text":"#);
    text::push_json_str(&mut out, &t);
    if let Some(ts) = opts.thread_ts {
        out.push_str(r#","thread_ts":"#);
        text::push_json_str(&mut out, ts);
    }
    out.push('}');
    out
}

impl Plugin for Slack {
    fn info() -> PluginInfo {
        PluginInfo::new("slack", env!("CARGO_PKG_VERSION"), "Slack incoming webhooks: Block Kit messages")
            .with_config_schema(json!({
                "type": "object",
                "properties": {
                    "title": { "type": "string", "description": "title template, e.g. \"{title}: {data.order_id}\"" },
                    "max_fields": { "type": "integer", "minimum": 0, "maximum": MAX_FIELDS, "default": DEFAULT_FIELDS },
                    "button_text": { "type": "string", "minLength": 1, "maxLength": BUTTON_MAX, "default": "Open" },
                    "thread_ts": { "type": "string", "pattern": "^[0-9.]{1,32}$" }
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
        Ok(vec![Request::bytes(
            message(event, &opts).into_bytes(),
            "application/json",
        )])
    }

    fn interpret_response(response: &Response, _config: &Config) -> Option<Verdict> {
        let body = response.body_str();
        let code = body.trim();
        if response.status == 200 && code == "ok" {
            return Some(Verdict::Success);
        }
        if response.status == 429 {
            return response.retry_after().map(Verdict::RetryAfter);
        }
        if FAIL_CODES.iter().any(|c| code.starts_with(c)) {
            return Some(Verdict::Fail(format!(
                "slack refused the message: {}",
                response.body_excerpt(500)
            )));
        }
        if GONE_CODES.contains(&code) {
            return Some(Verdict::DisableEndpoint(format!(
                "slack webhook no longer usable: {code}"
            )));
        }
        None
    }
}

hookline_sdk::export_plugin!(Slack);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::serde_json::{Map, Value};
    use hookline_sdk::testing;

    fn mrkdwn(text: String) -> Value {
        json!({ "type": "mrkdwn", "text": text })
    }

    fn plain(text: String) -> Value {
        json!({ "type": "plain_text", "text": text, "emoji": true })
    }

    /// The message as the plugin built it before writing JSON directly.
    fn value_message(event: &Event, opts: &Options<'_>) -> Value {
        let summary = Summary::new(event, opts.title, URL_MAX);

        let mut fallback = String::with_capacity(128);
        text::push_escaped(
            &mut fallback,
            &summary.title,
            Style::Slack,
            true,
            TEXT_MAX / 2,
        );
        if let Some(subject) = summary.subject {
            fallback.push_str(" — ");
            let room = TEXT_MAX - fallback.chars().count();
            text::push_escaped(&mut fallback, subject, Style::Slack, true, room);
        }

        let mut blocks = Vec::with_capacity(8);
        blocks.push(json!({
            "type": "header",
            "text": plain(text::escape_fit(&summary.title, Style::Plain, true, HEADER_MAX)),
        }));

        let shown = summary.fields.len().min(opts.max_fields);
        for chunk in summary.fields[..shown].chunks(FIELDS_PER_SECTION) {
            let fields: Vec<Value> = chunk
                .iter()
                .map(|(key, value)| {
                    let mut t = String::with_capacity(64);
                    t.push('*');
                    text::push_escaped(&mut t, &text::humanize(key), Style::Slack, true, LABEL_MAX);
                    t.push_str("*\n");
                    let room = FIELD_MAX - t.chars().count();
                    text::push_value(&mut t, value, Style::Slack, false, room);
                    mrkdwn(t)
                })
                .collect();
            blocks.push(json!({ "type": "section", "fields": fields }));
        }

        let mut context = Vec::with_capacity(3);
        if let Some(subject) = summary.subject {
            context.push(mrkdwn(text::escape_fit(
                subject,
                Style::Slack,
                true,
                CONTEXT_MAX,
            )));
        }
        context.push(mrkdwn(text::escape_fit(
            &summary.time,
            Style::Slack,
            true,
            CONTEXT_MAX,
        )));
        if let Some(note) = text::more_note(summary.fields.len() - shown) {
            context.push(mrkdwn(note));
        }
        blocks.push(json!({ "type": "context", "elements": context }));

        if let Some(url) = summary.link {
            blocks.push(json!({
                "type": "actions",
                "elements": [{ "type": "button", "text": plain(opts.button_text.to_string()), "url": url }],
            }));
        }

        let mut body = Map::new();
        body.insert("text".into(), fallback.into());
        body.insert("blocks".into(), blocks.into());
        if let Some(ts) = opts.thread_ts {
            body.insert("thread_ts".into(), ts.into());
        }
        Value::Object(body)
    }

    /// The written JSON is byte for byte what serialising the old `Value` gave.
    #[test]
    fn writer_matches_value_serialisation() {
        let huge = "x".repeat(100_000);
        let unit = "😀e\u{301}中👩\u{200D}👧\"\\\u{1}\n\t<&>";
        let many: Vec<String> = (0..60)
            .map(|i| format!(r#""k{i:02}": "<v{i}> \" \\ \n""#))
            .collect();
        let events = [
            testing::order_created(),
            testing::event("ping", "null"),
            testing::event("x", "not json"),
            testing::event(
                "alert.fired",
                r#"{"who": "<!channel> <@U1> <https://evil.test|x>", "n": "**x** & y", "q": "a\"b\\c\u0001\u007f"}"#,
            )
            .with_subject("<!everyone>\n\"quoted\""),
            testing::event(
                "big",
                &format!(r#"{{"v": "{huge}", "url": "https://x.test/{huge}"}}"#),
            )
            .with_subject(huge.clone()),
            testing::event("many", &format!("{{{}}}", many.join(","))),
            testing::event(
                "u",
                &hookline_sdk::serde_json::to_string(&json!({
                    "v": unit.repeat(300), "n": 1.5e300, "b": true, "link": "http://x.test/a\"b"
                }))
                .unwrap(),
            )
            .with_subject(unit.repeat(200)),
        ];
        let configs = [
            "{}",
            r#"{"title": "{data.v} {subject}", "max_fields": 40, "button_text": "Go \"now\" \u0007 \\", "thread_ts": "1.2"}"#,
            r#"{"max_fields": 0}"#,
            r#"{"title": "Order {data.order_id} by {data.customer.name}", "max_fields": 25}"#,
        ];
        for event in &events {
            for config in configs {
                let config = Config::parse(config).unwrap();
                let opts = options(&config).unwrap();
                assert_eq!(
                    message(event, &opts),
                    value_message(event, &opts).to_string(),
                    "{} {config:?}",
                    event.ty
                );
            }
        }
    }

    fn body(event: &Event, config: &str) -> Value {
        let request = testing::single_request::<Slack>(event, config);
        assert_eq!(request.content_type, "application/json");
        let body = request.body_json().unwrap();
        assert_limits(&body);
        body
    }

    fn chars(v: &Value) -> usize {
        v.as_str().expect("a string").chars().count()
    }

    /// Every Slack limit, checked on the produced JSON.
    fn assert_limits(body: &Value) {
        let text = chars(&body["text"]);
        assert!(text > 0 && text <= TEXT_MAX, "text: {text}");
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => {
                    let n = chars(&block["text"]["text"]);
                    assert!(n > 0 && n <= 150, "header: {n}");
                    assert_eq!(block["text"]["type"], "plain_text");
                }
                "section" => {
                    let fields = block["fields"].as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10);
                    for f in fields {
                        let n = chars(&f["text"]);
                        assert!(n > 0 && n <= 2_000, "field: {n}");
                    }
                }
                "context" => {
                    let elements = block["elements"].as_array().unwrap();
                    assert!(!elements.is_empty() && elements.len() <= 10);
                    for e in elements {
                        let n = chars(&e["text"]);
                        assert!(n > 0 && n <= 2_000, "context: {n}");
                    }
                }
                "actions" => {
                    let button = &block["elements"][0];
                    assert!(chars(&button["text"]["text"]) <= 75);
                    assert!(chars(&button["url"]) <= 3_000);
                }
                other => panic!("unexpected block {other}"),
            }
        }
    }

    #[test]
    fn typical_event_is_a_block_kit_message() {
        let b = body(&testing::order_created(), "{}");
        assert_eq!(b["text"], "Order created — ord_8812");
        let blocks = b["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Order created");
        assert_eq!(blocks[1]["type"], "section");
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert_eq!(fields[0]["text"], "*Currency*\nEUR");
        assert_eq!(fields[2]["text"], "*Order ID*\nord_8812");
        assert_eq!(blocks[2]["type"], "context");
        assert_eq!(blocks[2]["elements"][0]["text"], "ord_8812");
        assert_eq!(blocks[2]["elements"][1]["text"], "2026-11-23 12:00:00 UTC");
        assert_eq!(blocks[3]["type"], "actions");
        assert_eq!(
            blocks[3]["elements"][0]["url"],
            "https://shop.example.test/orders/ord_8812"
        );
        assert!(b.get("thread_ts").is_none());
    }

    #[test]
    fn title_template_and_options() {
        let b = body(
            &testing::order_created(),
            r#"{"title": "Order {data.order_id} by {data.customer.name}", "button_text": "View order",
                "thread_ts": "1712345678.123456", "max_fields": 1}"#,
        );
        assert_eq!(
            b["blocks"][0]["text"]["text"],
            "Order ord_8812 by Ada Lovelace"
        );
        assert_eq!(b["thread_ts"], "1712345678.123456");
        assert_eq!(b["blocks"][1]["fields"].as_array().unwrap().len(), 1);
        assert_eq!(b["blocks"][2]["elements"][2]["text"], "+3 more fields");
        assert_eq!(b["blocks"][3]["elements"][0]["text"]["text"], "View order");
    }

    #[test]
    fn config_is_checked() {
        for (config, option) in [
            (r#"{"colour": 1}"#, "colour"),
            (r#"{"title": "{nope}"}"#, "title"),
            (r#"{"title": 3}"#, "title"),
            (r#"{"max_fields": 41}"#, "max_fields"),
            (r#"{"max_fields": -1}"#, "max_fields"),
            (r#"{"button_text": ""}"#, "button_text"),
            (
                &format!(r#"{{"button_text": "{}"}}"#, "x".repeat(76)),
                "button_text",
            ),
            (r#"{"thread_ts": "abc&x=1"}"#, "thread_ts"),
        ] {
            let err = Slack::validate_config(&Config::parse(config).unwrap()).unwrap_err();
            let PluginError::BadConfig(message) = err else {
                panic!("{config}: {err:?}")
            };
            assert!(message.starts_with(option), "{config}: {message}");
        }
    }

    #[test]
    fn event_data_cannot_mention_or_inject_links() {
        let event = testing::event(
            "alert.fired",
            r#"{"who": "<!channel> <!here> <@U123> <https://evil.test|click>", "n": "**x** & y"}"#,
        )
        .with_subject("<!everyone>");
        let b = body(&event, "{}");
        let raw = b.to_string();
        for bad in [
            "<!channel>",
            "<!here>",
            "<@U123>",
            "<https://evil",
            "<!everyone>",
        ] {
            assert!(!raw.contains(bad), "{bad} in {raw}");
        }
        assert!(raw.contains("&lt;!channel&gt;"), "{raw}");
        assert!(raw.contains("**x** &amp; y"), "{raw}");
    }

    #[test]
    fn hostile_data_stays_within_limits() {
        let huge = "x".repeat(10 << 20);
        let event = testing::event(
            "big",
            &format!(r#"{{"v": "{huge}", "url": "https://x.test/{huge}"}}"#),
        )
        .with_subject(huge.clone());
        let b = body(&event, r#"{"title": "{data.v}"}"#);
        assert!(
            b["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .ends_with('…')
        );
        assert!(
            !b.to_string().contains("https://x.test"),
            "the over-long link is dropped, not cut"
        );

        let many: Vec<String> = (0..1_000)
            .map(|i| format!(r#""k{i:04}": "<v{i}>""#))
            .collect();
        let event = testing::event("many", &format!("{{{}}}", many.join(",")));
        let b = body(&event, r#"{"max_fields": 40}"#);
        let sections = b["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "section")
            .count();
        assert_eq!(sections, 4);
        assert!(b.to_string().contains("+960 more fields"));
    }

    #[test]
    fn unicode_at_every_cut() {
        let unit = "😀e\u{301}中👩\u{200D}👧";
        for n in 140..160 {
            let value: String = unit.chars().cycle().take(n).collect();
            let data = hookline_sdk::serde_json::to_string(&json!({ "v": value })).unwrap();
            let event = testing::event("u", &data).with_subject(value.clone());
            body(&event, r#"{"title": "{data.v}"}"#);
        }
        for n in 1_990..2_010 {
            let value: String = unit.chars().cycle().take(n).collect();
            let data = hookline_sdk::serde_json::to_string(&json!({ "v": value })).unwrap();
            body(&testing::event("u", &data), "{}");
        }
    }

    #[test]
    fn verdicts() {
        let c = Config::default();
        let v = |r: Response| Slack::interpret_response(&r, &c);
        assert_eq!(v(Response::new(200, "ok")), Some(Verdict::Success));
        assert!(
            matches!(v(Response::new(400, "invalid_payload")), Some(Verdict::Fail(m)) if m.contains("invalid_payload"))
        );
        assert!(matches!(
            v(Response::new(400, "no_text")),
            Some(Verdict::Fail(_))
        ));
        assert!(matches!(
            v(Response::new(400, "invalid_blocks_format")),
            Some(Verdict::Fail(_))
        ));
        for (status, code) in [
            (404, "no_service"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (403, "invalid_token"),
            (403, "action_prohibited"),
        ] {
            assert!(
                matches!(v(Response::new(status, code)), Some(Verdict::DisableEndpoint(m)) if m.contains(code)),
                "{code}"
            );
        }
        assert_eq!(
            v(Response::new(429, "").with_header("Retry-After", "30")),
            Some(Verdict::RetryAfter(30))
        );
        assert_eq!(v(Response::new(429, "")), None);
        assert_eq!(v(Response::new(500, "oops")), None);
        assert_eq!(v(Response::new(502, "")), None);
    }
}
