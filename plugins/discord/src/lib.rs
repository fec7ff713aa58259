//! The `discord` plugin: any event as an embed for a Discord channel webhook.
//!
//! The message is one embed: the title (linked to the event's link when
//! `data` has one: `url`, `link`, `html_url` or `href`), a description with
//! the subject and a "+N more fields" note, the important fields as inline
//! fields, the event time as `timestamp` and a colour.
//! `"allowed_mentions": {"parse": []}` is always sent, so event data can never
//! ping `@everyone`, `@here`, roles or users.
//!
//! Config:
//! - `title`: a title template (placeholders `{type}`, `{title}`, `{subject}`,
//!   `{source}`, `{id}`, `{time}`, `{data.path}`); default the readable type.
//! - `max_fields`: how many fields to show, 0 to 25 (default 10).
//! - `color`: the embed colour, an integer `0` to `0xFFFFFF` or a `"#RRGGBB"`
//!   string (default `0x5865F2`, Discord's blurple).
//! - `username`: overrides the webhook's name; 1 to 80 characters, must not
//!   contain "discord" or "clyde" (Discord refuses those with 400).
//! - `avatar_url`: overrides the webhook's avatar; an http(s) URL.
//! - `wait`: `true` adds `?wait=true` (Discord answers 200 with the message).
//! - `thread_id`: posts into this thread (`?thread_id=`); a snowflake (digits).
//!
//! Limits enforced for any input: title ≤ 256 characters, description ≤ 4,096
//! (we use ≤ 1,100), ≤ 25 fields, field name ≤ 256 and value ≤ 1,024, never
//! empty, and the embed's total (title, description, field names and values)
//! ≤ 6,000 characters: fields that no longer fit are counted in the note.
//! Embed URLs are http(s) only and at most 2,048 characters (Discord documents
//! no limit; we chose the safe side): a longer link is dropped, never cut.
//! The timestamp is sent only when the event time is RFC 3339. Event text is
//! markdown-escaped (`\ * _ ~ | > < # [ ]` and backtick) and a mention-like
//! `@word` gets a zero-width space after the `@`, in addition to
//! `allowed_mentions`.
//!
//! Answers: `429` retries after the body's `retry_after` (seconds, rounded
//! up), falling back to the `Retry-After` header; `401`, `403` and `404`
//! disable the endpoint (the webhook is gone); `400` fails permanently with
//! the body; anything else follows the engine's standard rules.

use hookline_sdk::serde_json::{self, Map, Value, json};
use hookline_sdk::text::{self, Style, Summary};
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request, Response, Verdict};

/// The Discord plugin.
pub struct Discord;

const OPTIONS: [&str; 7] = [
    "title",
    "max_fields",
    "color",
    "username",
    "avatar_url",
    "wait",
    "thread_id",
];
const TITLE_MAX: usize = 256;
const SUBJECT_MAX: usize = 1_024;
const FIELDS_MAX: u64 = 25;
const DEFAULT_FIELDS: u64 = 10;
const NAME_MAX: usize = 256;
const VALUE_MAX: usize = 1_024;
const EMBED_TOTAL_MAX: usize = 6_000;
/// Room kept in the total for the "+N more fields" note.
const NOTE_RESERVE: usize = 32;
const URL_MAX: usize = 2_048;
const USERNAME_MAX: usize = 80;
const DEFAULT_COLOR: u64 = 0x5865F2;

struct Options<'c> {
    title: Option<&'c str>,
    max_fields: usize,
    color: u64,
    username: Option<&'c str>,
    avatar_url: Option<&'c str>,
    query: Option<String>,
}

fn color(config: &Config) -> Result<u64, PluginError> {
    let bad = || {
        PluginError::BadConfig(
            "color: must be an integer 0 to 16777215 (0xFFFFFF) or \"#RRGGBB\"".into(),
        )
    };
    match config.get("color") {
        None | Some(Value::Null) => Ok(DEFAULT_COLOR),
        Some(Value::String(s)) => {
            let hex = s.strip_prefix('#').ok_or_else(bad)?;
            if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u64::from_str_radix(hex, 16).map_err(|_| bad())
        }
        Some(v) => v.as_u64().filter(|n| *n <= 0xFF_FFFF).ok_or_else(bad),
    }
}

fn options(config: &Config) -> Result<Options<'_>, PluginError> {
    let username = config.str("username")?;
    if let Some(name) = username {
        let lower = name.to_lowercase();
        if name.trim().is_empty() || name.chars().count() > USERNAME_MAX {
            return Err(PluginError::BadConfig(format!(
                "username: must be 1 to {USERNAME_MAX} characters"
            )));
        }
        if lower.contains("discord") || lower.contains("clyde") {
            return Err(PluginError::BadConfig(
                "username: must not contain \"discord\" or \"clyde\" (Discord refuses it)".into(),
            ));
        }
    }
    let thread_id = match config.get("thread_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(s.clone())
        }
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(_) => {
            return Err(PluginError::BadConfig(
                "thread_id: must be a thread's id (digits)".into(),
            ));
        }
    };
    let wait = config.bool("wait")?.unwrap_or(false);
    let query = match (wait, thread_id) {
        (false, None) => None,
        (true, None) => Some("wait=true".to_string()),
        (false, Some(id)) => Some(format!("thread_id={id}")),
        (true, Some(id)) => Some(format!("wait=true&thread_id={id}")),
    };
    Ok(Options {
        title: config.template("title")?,
        max_fields: config
            .u64_in("max_fields", 0, FIELDS_MAX)?
            .unwrap_or(DEFAULT_FIELDS) as usize,
        color: color(config)?,
        username,
        avatar_url: config.http_url("avatar_url", URL_MAX)?,
        query,
    })
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Escaped text that is never blank (Discord refuses empty names and values).
fn non_blank(mut s: String) -> String {
    if s.trim().is_empty() {
        s.clear();
        s.push('—');
    }
    s
}

fn embed(event: &Event, opts: &Options<'_>) -> Value {
    let summary = Summary::new(event, opts.title, URL_MAX);
    let title = non_blank(text::escape_fit(
        &summary.title,
        Style::Discord,
        true,
        TITLE_MAX,
    ));
    let mut description = match summary.subject {
        Some(subject) => text::escape_fit(subject, Style::Discord, false, SUBJECT_MAX),
        None => String::new(),
    };
    let mut remaining = EMBED_TOTAL_MAX - chars(&title) - chars(&description) - NOTE_RESERVE;

    let mut fields = Vec::with_capacity(opts.max_fields.min(summary.fields.len()));
    for (key, value) in summary.fields.iter().take(opts.max_fields) {
        // A field needs a name, a value and some room to say anything.
        if remaining < 16 {
            break;
        }
        let name = non_blank(text::escape_fit(
            &text::humanize(key),
            Style::Discord,
            true,
            NAME_MAX.min(remaining / 4),
        ));
        let mut value_text = String::new();
        text::push_value(
            &mut value_text,
            value,
            Style::Discord,
            false,
            VALUE_MAX.min(remaining - chars(&name)),
        );
        let value_text = non_blank(value_text);
        remaining -= chars(&name) + chars(&value_text);
        fields.push(json!({ "name": name, "value": value_text, "inline": true }));
    }
    if let Some(note) = text::more_note(summary.fields.len() - fields.len()) {
        if !description.is_empty() {
            description.push('\n');
        }
        description.push_str(&note);
    }

    let mut embed = Map::new();
    embed.insert("title".into(), title.into());
    if let Some(url) = summary.link {
        embed.insert("url".into(), url.into());
    }
    if !description.is_empty() {
        embed.insert("description".into(), description.into());
    }
    if !fields.is_empty() {
        embed.insert("fields".into(), fields.into());
    }
    if let Some(ts) = summary.timestamp {
        embed.insert("timestamp".into(), ts.into());
    }
    embed.insert("color".into(), opts.color.into());
    Value::Object(embed)
}

fn message(event: &Event, opts: &Options<'_>) -> Value {
    let mut body = Map::new();
    body.insert("embeds".into(), json!([embed(event, opts)]));
    body.insert("allowed_mentions".into(), json!({ "parse": [] }));
    if let Some(name) = opts.username {
        body.insert("username".into(), name.into());
    }
    if let Some(url) = opts.avatar_url {
        body.insert("avatar_url".into(), url.into());
    }
    Value::Object(body)
}

impl Plugin for Discord {
    fn info() -> PluginInfo {
        PluginInfo::new("discord", env!("CARGO_PKG_VERSION"), "Discord channel webhooks: one embed per event")
            .with_config_schema(json!({
                "type": "object",
                "properties": {
                    "title": { "type": "string" },
                    "max_fields": { "type": "integer", "minimum": 0, "maximum": FIELDS_MAX, "default": DEFAULT_FIELDS },
                    "color": { "oneOf": [
                        { "type": "integer", "minimum": 0, "maximum": 0xFF_FFFF },
                        { "type": "string", "pattern": "^#[0-9A-Fa-f]{6}$" }
                    ], "default": DEFAULT_COLOR },
                    "username": { "type": "string", "minLength": 1, "maxLength": USERNAME_MAX },
                    "avatar_url": { "type": "string", "format": "uri" },
                    "wait": { "type": "boolean", "default": false },
                    "thread_id": { "type": ["string", "integer"] }
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
        let request = Request::json(&message(event, &opts));
        Ok(vec![match opts.query {
            Some(q) => request.query(q),
            None => request,
        }])
    }

    fn interpret_response(response: &Response, _config: &Config) -> Option<Verdict> {
        match response.status {
            429 => serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|b| b.get("retry_after")?.as_f64())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| s.ceil().min(f64::from(u32::MAX)) as u32)
                .or_else(|| response.retry_after())
                .map(Verdict::RetryAfter),
            401 | 403 | 404 => Some(Verdict::DisableEndpoint(format!(
                "discord webhook is gone ({}): {}",
                response.status,
                response.body_excerpt(300)
            ))),
            400 => Some(Verdict::Fail(format!(
                "discord refused the message: {}",
                response.body_excerpt(1_000)
            ))),
            _ => None,
        }
    }
}

hookline_sdk::export_plugin!(Discord);

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_sdk::testing;

    fn request(event: &Event, config: &str) -> Request {
        let request = testing::single_request::<Discord>(event, config);
        assert_limits(&request.body_json().unwrap());
        request
    }

    fn body(event: &Event, config: &str) -> Value {
        request(event, config).body_json().unwrap()
    }

    fn n(v: &Value) -> usize {
        v.as_str().map_or(0, chars)
    }

    /// Every Discord limit, checked on the produced JSON.
    fn assert_limits(body: &Value) {
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        let embeds = body["embeds"].as_array().unwrap();
        assert!(!embeds.is_empty() && embeds.len() <= 10);
        let mut total = 0;
        for e in embeds {
            let title = n(&e["title"]);
            assert!(title > 0 && title <= 256, "title {title}");
            let description = n(&e["description"]);
            assert!(description <= 4_096);
            total += title + description + n(&e["footer"]["text"]) + n(&e["author"]["name"]);
            let fields = e["fields"].as_array().map_or(&[][..], |f| f);
            assert!(fields.len() <= 25);
            for f in fields {
                let (name, value) = (n(&f["name"]), n(&f["value"]));
                assert!(name > 0 && name <= 256, "name {name}");
                assert!(value > 0 && value <= 1_024, "value {value}");
                assert!(!f["name"].as_str().unwrap().trim().is_empty());
                assert!(!f["value"].as_str().unwrap().trim().is_empty());
                total += name + value;
            }
            if let Some(url) = e.get("url") {
                assert!(text::is_http_url(url.as_str().unwrap()) && n(url) <= URL_MAX);
            }
        }
        assert!(total <= 6_000, "embed total {total}");
    }

    #[test]
    fn typical_event_is_an_embed() {
        let b = body(&testing::order_created(), "{}");
        let e = &b["embeds"][0];
        assert_eq!(e["title"], "Order created");
        assert_eq!(e["url"], "https://shop.example.test/orders/ord_8812");
        assert_eq!(e["description"], "ord\\_8812");
        assert_eq!(e["timestamp"], "2026-11-23T12:00:00Z");
        assert_eq!(e["color"], 0x5865F2);
        assert_eq!(
            e["fields"][0],
            json!({ "name": "Currency", "value": "EUR", "inline": true })
        );
        assert_eq!(e["fields"].as_array().unwrap().len(), 5);
        assert!(b.get("username").is_none());
    }

    #[test]
    fn options_shape_the_request() {
        let r = request(
            &testing::order_created(),
            r##"{"title": "{data.customer.name} ordered", "color": "#FF0000", "username": "Shop bot",
                "avatar_url": "https://x.test/a.png", "wait": true, "thread_id": "123456789012345678", "max_fields": 2}"##,
        );
        assert_eq!(
            r.query.as_deref(),
            Some("wait=true&thread_id=123456789012345678")
        );
        let b = r.body_json().unwrap();
        assert_eq!(b["username"], "Shop bot");
        assert_eq!(b["avatar_url"], "https://x.test/a.png");
        let e = &b["embeds"][0];
        assert_eq!(e["title"], "Ada Lovelace ordered");
        assert_eq!(e["color"], 0xFF0000);
        assert_eq!(e["description"], "ord\\_8812\n+3 more fields");
        let r = request(&testing::order_created(), r#"{"thread_id": 42}"#);
        assert_eq!(r.query.as_deref(), Some("thread_id=42"));
        assert_eq!(request(&testing::order_created(), "{}").query, None);
    }

    #[test]
    fn config_is_checked() {
        for (config, option) in [
            (r#"{"colour": 1}"#, "colour"),
            (r#"{"title": "{x"}"#, "title"),
            (r#"{"max_fields": 26}"#, "max_fields"),
            (r#"{"color": 16777216}"#, "color"),
            (r#"{"color": "red"}"#, "color"),
            (r##"{"color": "#+12345"}"##, "color"),
            (r#"{"color": -1}"#, "color"),
            (r#"{"username": "My Discord bot"}"#, "username"),
            (r#"{"username": "CLYDE"}"#, "username"),
            (r#"{"username": ""}"#, "username"),
            (
                &format!(r#"{{"username": "{}"}}"#, "é".repeat(81)),
                "username",
            ),
            (r#"{"avatar_url": "javascript:alert(1)"}"#, "avatar_url"),
            (r#"{"wait": "yes"}"#, "wait"),
            (r#"{"thread_id": "1&x=2"}"#, "thread_id"),
        ] {
            let err = Discord::validate_config(&Config::parse(config).unwrap()).unwrap_err();
            let PluginError::BadConfig(message) = err else {
                panic!("{config}: {err:?}")
            };
            assert!(message.starts_with(option), "{config}: {message}");
        }
        let ok = format!(r#"{{"username": "{}"}}"#, "é".repeat(80));
        Discord::validate_config(&Config::parse(&ok).unwrap()).unwrap();
    }

    #[test]
    fn event_data_cannot_mention_or_reshape_markdown() {
        let event = testing::event(
            "alert.fired",
            r#"{"who": "@everyone @here <@123> <@&456>", "md": "**bold** __u__ ~~s~~ ||spoiler|| `code` > quote [x](https://evil.test)"}"#,
        )
        .with_subject("# heading @everyone");
        let b = body(&event, "{}");
        let raw = b.to_string();
        assert!(
            !raw.contains("@everyone") && !raw.contains("@here"),
            "{raw}"
        );
        let md = b["embeds"][0]["fields"][0]["value"].as_str().unwrap();
        assert_eq!(
            md,
            r"\*\*bold\*\* \_\_u\_\_ \~\~s\~\~ \|\|spoiler\|\| \`code\` \> quote \[x\](https://evil.test)"
        );
        let who = b["embeds"][0]["fields"][1]["value"].as_str().unwrap();
        assert!(
            !who.replace(r"\<", "").contains('<'),
            "every < is escaped: {who}"
        );
        assert!(
            b["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .starts_with(r"\# heading")
        );
    }

    #[test]
    fn hostile_data_stays_within_limits() {
        let huge = "ab".repeat(5 << 20);
        let event = testing::event(
            "big",
            &format!(r#"{{"v": "{huge}", "w": "{huge}", "link": "https://x.test/{huge}"}}"#),
        )
        .with_subject(huge.clone());
        let b = body(&event, r#"{"title": "{data.v}"}"#);
        assert!(b["embeds"][0].get("url").is_none());

        let many: Vec<String> = (0..1_000)
            .map(|i| format!(r#""k{i:04}": "{}""#, "v".repeat(900)))
            .collect();
        let event = testing::event("many", &format!("{{{}}}", many.join(",")));
        let b = body(&event, r#"{"max_fields": 25}"#);
        let shown = b["embeds"][0]["fields"].as_array().unwrap().len();
        assert!(shown < 25, "the 6,000 total cuts the fields: {shown}");
        let note = format!("+{} more fields", 1_000 - shown);
        assert!(
            b["embeds"][0]["description"]
                .as_str()
                .unwrap()
                .contains(&note)
        );

        let blank =
            testing::event("blank", r#"{"": "\u0007", "x": "\u0001\u0002"}"#).with_subject("");
        body(&blank, "{}");
    }

    #[test]
    fn unicode_at_every_cut() {
        let unit = "😀e\u{301}中👩\u{200D}👧";
        for len in (240..270).chain(1_010..1_040) {
            let value: String = unit.chars().cycle().take(len).collect();
            let data = serde_json::to_string(&json!({ "v": value, "w": value })).unwrap();
            body(
                &testing::event("u", &data).with_subject(value.clone()),
                r#"{"title": "{data.v}"}"#,
            );
        }
    }

    #[test]
    fn bad_time_is_left_out() {
        let mut event = testing::order_created();
        event.time = "last tuesday".into();
        assert!(body(&event, "{}")["embeds"][0].get("timestamp").is_none());
    }

    #[test]
    fn verdicts() {
        let c = Config::default();
        let v = |r: Response| Discord::interpret_response(&r, &c);
        let limited =
            r#"{"message": "You are being rate limited.", "retry_after": 1.234, "global": false}"#;
        assert_eq!(
            v(Response::new(429, limited).with_header("Retry-After", "9")),
            Some(Verdict::RetryAfter(2))
        );
        assert_eq!(
            v(Response::new(429, "not json").with_header("Retry-After", "9")),
            Some(Verdict::RetryAfter(9))
        );
        assert_eq!(v(Response::new(429, "")), None);
        let gone = r#"{"message": "Unknown Webhook", "code": 10015}"#;
        for status in [401, 403, 404] {
            assert!(
                matches!(v(Response::new(status, gone)), Some(Verdict::DisableEndpoint(m)) if m.contains("Unknown Webhook"))
            );
        }
        let bad = r#"{"embeds": ["0"]}"#;
        assert!(
            matches!(v(Response::new(400, bad)), Some(Verdict::Fail(m)) if m.contains("embeds"))
        );
        assert_eq!(v(Response::new(204, "")), None);
        assert_eq!(v(Response::new(503, "")), None);
    }
}
