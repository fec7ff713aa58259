//! Text helpers for chat plugins: cutting text to a platform's limits,
//! escaping untrusted text for each markup dialect, and reading a generic
//! event into a human summary.
//!
//! - Limits: [`truncate_chars`], [`truncate_bytes`] (and the in-place
//!   [`fit_chars`], [`fit_bytes`]) always cut on a character boundary and end
//!   with a visible [`ELLIPSIS`] counted inside the limit. [`push_escaped`]
//!   escapes *and* cuts in one pass, never splitting an escape sequence.
//! - Escaping: [`escape`] with a [`Style`] per platform dialect.
//! - Reading events: [`readable_type`], [`humanize`], [`lookup`],
//!   [`lookup_str`], [`value_text`], [`important_fields`], [`find_link`],
//!   [`more_note`], the title template ([`check_template`],
//!   [`render_template`]) and [`Summary`], which gathers them.
//!
//! "Characters" are Unicode scalar values (Rust `char`s), the unit Slack's and
//! Discord's limits are documented in. Byte limits count UTF-8 bytes.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use serde_json::Value;

use crate::Event;

/// The visible mark of a cut, counted inside every limit (1 char, 3 bytes).
pub const ELLIPSIS: char = '…';

const ZWJ: char = '\u{200D}';
const ZWSP: char = '\u{200B}';

/// Byte index where the kept part ends when `s` must be cut to `max` chars
/// (leaving room for the ellipsis), or `None` when it fits.
fn char_cut(s: &str, max: usize) -> Option<usize> {
    // Every char is at least one byte: a short string always fits.
    if s.len() <= max {
        return None;
    }
    let mut keep_end = 0;
    for (n, (i, _)) in s.char_indices().enumerate() {
        if n + 1 == max {
            keep_end = i; // max - 1 chars kept, one left for the ellipsis
        }
        if n == max {
            return Some(keep_end);
        }
    }
    None
}

/// Byte index where the kept part ends when `s` must be cut to `max` bytes
/// (leaving room for the ellipsis), or `None` when it fits.
fn byte_cut(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(end)
}

/// A cut must not leave a zero-width joiner dangling: it would glue the
/// ellipsis to the emoji before it.
fn trim_joiner(s: &str) -> &str {
    s.trim_end_matches(ZWJ)
}

/// `s` cut to at most `max` characters, the last being `…` when it was cut.
pub fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    match char_cut(s, max) {
        None => Cow::Borrowed(s),
        Some(_) if max == 0 => Cow::Borrowed(""),
        Some(end) => {
            let kept = trim_joiner(&s[..end]);
            let mut out = String::with_capacity(kept.len() + 3);
            out.push_str(kept);
            out.push(ELLIPSIS);
            Cow::Owned(out)
        }
    }
}

/// `s` cut to at most `max` UTF-8 bytes, ending with `…` when it was cut.
/// Below 3 bytes there is no room for the ellipsis: the cut is silent.
pub fn truncate_bytes(s: &str, max: usize) -> Cow<'_, str> {
    match byte_cut(s, max) {
        None => Cow::Borrowed(s),
        Some(_) if max < ELLIPSIS.len_utf8() => {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Cow::Borrowed(&s[..end])
        }
        Some(end) => {
            let kept = trim_joiner(&s[..end]);
            let mut out = String::with_capacity(kept.len() + 3);
            out.push_str(kept);
            out.push(ELLIPSIS);
            Cow::Owned(out)
        }
    }
}

/// [`truncate_chars`] in place; returns whether `s` was cut.
pub fn fit_chars(s: &mut String, max: usize) -> bool {
    match char_cut(s, max) {
        None => false,
        Some(_) if max == 0 => {
            s.clear();
            true
        }
        Some(end) => {
            let kept = trim_joiner(&s[..end]).len();
            s.truncate(kept);
            s.push(ELLIPSIS);
            true
        }
    }
}

/// [`truncate_bytes`] in place; returns whether `s` was cut.
pub fn fit_bytes(s: &mut String, max: usize) -> bool {
    match byte_cut(s, max) {
        None => false,
        Some(_) if max < ELLIPSIS.len_utf8() => {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            true
        }
        Some(end) => {
            let kept = trim_joiner(&s[..end]).len();
            s.truncate(kept);
            s.push(ELLIPSIS);
            true
        }
    }
}

/// A markup dialect: what must be escaped in untrusted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// No markup (Slack `plain_text`, JSON-only fields): nothing escaped.
    Plain,
    /// Slack `mrkdwn`: `&` `<` `>` become entities, which also neutralises
    /// `<!channel>`, `<@U…>` and `<https://…|…>` links.
    Slack,
    /// Discord markdown: `\ * _ ~ | > < # [ ]` and backtick are
    /// backslash-escaped; a mention-like `@word` (`@everyone`, `@here`) gets a
    /// zero-width space after the `@`.
    Discord,
    /// HTML-sensitive characters `& < > " '` become entities.
    Html,
    /// CommonMark-style markdown for Teams, Webex and generic receivers:
    /// `\ * _ ~ | # [ ]` and backtick are backslash-escaped, `& < >` become
    /// entities (so Webex's `<@all>` cannot mention) and a mention-like
    /// `@word` gets a zero-width space after the `@`.
    Markdown,
}

impl Style {
    /// Whether `c` may need a change in this style (a quick pre-check).
    fn special(self, c: char) -> bool {
        match self {
            Style::Plain => false,
            Style::Slack => matches!(c, '&' | '<' | '>'),
            Style::Discord => matches!(
                c,
                '\\' | '*' | '_' | '~' | '|' | '>' | '<' | '`' | '#' | '[' | ']' | '@'
            ),
            Style::Html => matches!(c, '&' | '<' | '>' | '"' | '\''),
            Style::Markdown => matches!(
                c,
                '\\' | '*' | '_' | '~' | '|' | '`' | '#' | '[' | ']' | '&' | '<' | '>' | '@'
            ),
        }
    }
}

/// Whether `@` between `prev` and `next` starts a mention (`@everyone`,
/// `@here`, `@channel`, `@user`): at a word start and followed by a word
/// character. E-mail addresses (`ada@example.test`) are left alone.
fn mention_at(prev: Option<char>, next: Option<char>) -> bool {
    !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.')
        && next.is_some_and(|n| n.is_alphanumeric() || n == '_')
}

/// Appends the escaped form of `c`; returns how many chars it added.
fn push_piece(
    out: &mut String,
    style: Style,
    line: bool,
    prev: Option<char>,
    c: char,
    next: Option<char>,
) -> usize {
    if c.is_control() {
        if c == '\n' && !line {
            out.push('\n');
        } else {
            out.push(' ');
        }
        return 1;
    }
    if line && matches!(c, '\u{2028}' | '\u{2029}') {
        out.push(' ');
        return 1;
    }
    let entity = match (style, c) {
        (Style::Slack | Style::Html | Style::Markdown, '&') => Some("&amp;"),
        (Style::Slack | Style::Html | Style::Markdown, '<') => Some("&lt;"),
        (Style::Slack | Style::Html | Style::Markdown, '>') => Some("&gt;"),
        (Style::Html, '"') => Some("&quot;"),
        (Style::Html, '\'') => Some("&#39;"),
        _ => None,
    };
    if let Some(e) = entity {
        out.push_str(e);
        return e.len();
    }
    match (style, c) {
        (Style::Discord | Style::Markdown, '@') if mention_at(prev, next) => {
            out.push('@');
            out.push(ZWSP);
            2
        }
        (
            Style::Discord | Style::Markdown,
            '\\' | '*' | '_' | '~' | '|' | '`' | '#' | '[' | ']',
        )
        | (Style::Discord, '>' | '<') => {
            out.push('\\');
            out.push(c);
            2
        }
        _ => {
            out.push(c);
            1
        }
    }
}

/// Appends `s` escaped for `style`, using at most `max_chars` characters;
/// when it does not fit it is cut (never inside an escape sequence) and ends
/// with `…`. With `line`, newlines become spaces (for titles and one-line
/// list items); control characters always do. Returns whether it was cut.
pub fn push_escaped(out: &mut String, s: &str, style: Style, line: bool, max_chars: usize) -> bool {
    if max_chars == 0 {
        return !s.is_empty();
    }
    // Fast path: short printable ASCII with nothing to escape is copied as
    // is (its byte length bounds its length in chars).
    if s.len() <= max_chars
        && s.bytes().all(|b| {
            (b' '..=b'~').contains(&b) && !style.special(char::from(b)) || (b == b'\n' && !line)
        })
    {
        out.push_str(s);
        return false;
    }
    push_escaped_each(out, s, style, line, max_chars)
}

/// [`push_escaped`] one character at a time.
fn push_escaped_each(
    out: &mut String,
    s: &str,
    style: Style,
    line: bool,
    max_chars: usize,
) -> bool {
    let start = out.len();
    let mut count = 0usize;
    let mut fit_len = start;
    let mut prev = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        count += push_piece(out, style, line, prev, c, chars.peek().copied());
        if count < max_chars {
            fit_len = out.len();
        } else if count > max_chars {
            out.truncate(fit_len);
            let kept = start + trim_joiner(&out[start..]).len();
            out.truncate(kept);
            out.push(ELLIPSIS);
            return true;
        }
        prev = Some(c);
    }
    false
}

/// `s` escaped for `style` (see [`Style`]); control characters other than
/// newline become spaces. Borrowed when nothing needed escaping.
pub fn escape(s: &str, style: Style) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| style.special(c) || (c.is_control() && c != '\n'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    push_escaped(&mut out, s, style, false, usize::MAX);
    Cow::Owned(out)
}

/// `s` escaped for `style` and cut to `max_chars` characters (see [`push_escaped`]).
pub fn escape_fit(s: &str, style: Style, line: bool, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(2)) + 3);
    push_escaped(&mut out, s, style, line, max_chars);
    out
}

/// Appends `s` as a JSON string literal, quotes included, escaped exactly
/// as `serde_json` writes it: `"` and `\` backslash-escaped, `\n` `\r` `\t`
/// `\b` `\f` by name, other control characters below U+0020 as `\u00xx`;
/// everything else verbatim. For plugins that write their JSON body
/// directly instead of building a `serde_json::Value`.
pub fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let named = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'\n' => 'n',
            b'\r' => 'r',
            b'\t' => 't',
            0x08 => 'b',
            0x0c => 'f',
            0x00..=0x1f => '\0',
            _ => continue,
        };
        // Only ASCII bytes end a run: the slice stays on char boundaries.
        out.push_str(&s[run..i]);
        run = i + 1;
        out.push('\\');
        if named == '\0' {
            out.push_str("u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push(named);
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Words of an identifier: split on `.`, `_`, `-`, spaces and camelCase
/// humps, appended to `out` after its first `start` bytes.
fn push_words(out: &mut String, start: usize, s: &str) {
    let mut prev: Option<char> = None;
    for c in s.chars() {
        if matches!(c, '.' | '_' | '-' | ' ' | '/' | ':') {
            if out.len() > start && !out.ends_with(' ') {
                out.push(' ');
            }
            prev = None;
            continue;
        }
        if c.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
        prev = Some(c);
    }
}

/// An identifier as words for people: `password_reset` → "Password reset",
/// `htmlUrl` → "Html URL". `id`, `url` and `uri` are written in capitals;
/// an empty result falls back to the input itself.
pub fn humanize(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    push_humanized(&mut out, s);
    out
}

/// Appends [`humanize`]`(s)` to `out` without allocating a new string.
pub fn push_humanized(out: &mut String, s: &str) {
    let start = out.len();
    push_words(out, start, s);
    let kept = out[start..].trim_end().len();
    out.truncate(start + kept);
    if kept == 0 {
        out.push_str(s);
        return;
    }
    // The words are lowercase and split by single spaces; fix their case in place.
    let mut word_start = start;
    let mut first = true;
    while word_start <= out.len() {
        let word_end = out[word_start..]
            .find(' ')
            .map_or(out.len(), |i| word_start + i);
        let word = &out[word_start..word_end];
        if matches!(word, "id" | "url" | "uri") {
            out[word_start..word_end].make_ascii_uppercase();
        } else if first && let Some(c) = word.chars().next() {
            if c.is_ascii() {
                out[word_start..word_start + 1].make_ascii_uppercase();
            } else {
                let upper: String = c.to_uppercase().collect();
                out.replace_range(word_start..word_start + c.len_utf8(), &upper);
            }
        }
        first = false;
        // A first-letter change may have moved the end: find it again.
        let word_end = out[word_start..]
            .find(' ')
            .map_or(out.len(), |i| word_start + i);
        word_start = word_end + 1;
    }
}

/// A title for people from a CloudEvents type.
///
/// Rule: split the type on `.`; when it has three or more segments it is
/// taken to be reverse-DNS (`com.example.invoice.paid`) and only the last two
/// segments are kept; the words are then split further on `_`, `-` and
/// camelCase and written in sentence case. `order.created` → "Order created",
/// `user.password_reset` → "User password reset", `com.example.invoice.paid`
/// → "Invoice paid". An empty type gives "Event".
pub fn readable_type(ty: &str) -> String {
    let segments: Vec<&str> = ty.split('.').filter(|s| !s.trim().is_empty()).collect();
    let kept = if segments.len() >= 3 {
        &segments[segments.len() - 2..]
    } else {
        &segments[..]
    };
    let title = humanize(&kept.join(" "));
    if title.trim().is_empty() {
        "Event".to_string()
    } else {
        title
    }
}

/// A value inside `data` by JSON pointer (`/customer/name`) or dotted path
/// (`customer.name`, `items.0.sku`).
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    if path.starts_with('/') {
        return data.pointer(path);
    }
    path.split('.').try_fold(data, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A string inside `data` by pointer or dotted path (see [`lookup`]).
pub fn lookup_str<'a>(data: &'a Value, path: &str) -> Option<&'a str> {
    lookup(data, path).and_then(Value::as_str)
}

/// An `io::Write` that keeps at most `limit` bytes and then refuses more, so
/// a huge value is never serialised in full.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.buf.len();
        if room == 0 {
            return Err(io::Error::other("full"));
        }
        let n = bytes.len().min(room);
        self.buf.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON value as short text, at most `max_chars` characters: strings
/// unquoted, numbers and booleans as written, `null` as "null", arrays and
/// objects as compact JSON (serialised only as far as needed).
pub fn value_text(value: &Value, max_chars: usize) -> Cow<'_, str> {
    match value {
        Value::String(s) => truncate_chars(s, max_chars),
        Value::Null => truncate_chars("null", max_chars),
        Value::Bool(b) => truncate_chars(if *b { "true" } else { "false" }, max_chars),
        Value::Number(n) => {
            let mut s = n.to_string();
            fit_chars(&mut s, max_chars);
            Cow::Owned(s)
        }
        Value::Array(_) | Value::Object(_) => {
            // Enough bytes for max_chars + 1 chars, so a cut is still detected.
            let limit = max_chars.saturating_add(1).saturating_mul(4);
            let mut w = Bounded {
                buf: Vec::new(),
                limit,
            };
            let _ = serde_json::to_writer(&mut w, value);
            let mut s = match String::from_utf8(w.buf) {
                Ok(s) => s,
                Err(e) => {
                    let valid = e.utf8_error().valid_up_to();
                    let mut bytes = e.into_bytes();
                    bytes.truncate(valid);
                    String::from_utf8(bytes).unwrap_or_default()
                }
            };
            fit_chars(&mut s, max_chars);
            Cow::Owned(s)
        }
    }
}

/// Appends a JSON value as text (see [`value_text`]) escaped for `style`,
/// within `max_chars` characters. Strings are escaped straight from the
/// event, without an intermediate copy. Returns whether it was cut.
pub fn push_value(
    out: &mut String,
    value: &Value,
    style: Style,
    line: bool,
    max_chars: usize,
) -> bool {
    match value {
        Value::String(s) => push_escaped(out, s, style, line, max_chars),
        other => {
            let text = value_text(other, max_chars);
            push_escaped(out, &text, style, line, max_chars) || text.ends_with(ELLIPSIS)
        }
    }
}

/// Whether a value is worth showing as a field: a non-blank string, a number
/// or a boolean.
fn is_shown_scalar(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.trim().is_empty(),
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    }
}

/// The fields worth showing: top-level scalar members of `data` (non-blank
/// strings, numbers, booleans), except the keys in `skip`. `serde_json` is
/// built without `preserve_order`, so they come in key order, not document order.
pub fn important_fields<'a, 's>(
    data: &'a Value,
    skip: &'s [&'s str],
) -> impl Iterator<Item = (&'a str, &'a Value)> + use<'a, 's> {
    data.as_object()
        .into_iter()
        .flat_map(|map| map.iter())
        .filter(move |(k, v)| is_shown_scalar(v) && !skip.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
}

/// The top-level members that may hold the event's link, in order of preference.
pub const LINK_KEYS: [&str; 4] = ["url", "link", "html_url", "href"];

/// Whether `s` is an absolute `http(s)` URL safe to put in markup: printable
/// ASCII only, without spaces or `< > " \ ^ ` { | }`.
pub fn is_http_url(s: &str) -> bool {
    let lower =
        |p: &str| s.len() > p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    (lower("https://") || lower("http://"))
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"\\^`{|}".contains(&b))
}

/// The event's link: the first of [`LINK_KEYS`] at the top level of `data`
/// that is an `http(s)` URL (see [`is_http_url`]) of at most `max_len`
/// characters. Returns the key and the URL. An over-long URL is skipped, never cut.
pub fn find_link(data: &Value, max_len: usize) -> Option<(&'static str, &str)> {
    let map = data.as_object()?;
    LINK_KEYS.iter().find_map(|&key| {
        let url = map.get(key)?.as_str()?;
        (url.len() <= max_len && is_http_url(url)).then_some((key, url))
    })
}

/// Keeps the first `keep` items; returns the note for the rest, e.g.
/// "+12 more fields", or `None` when nothing was cut.
pub fn cut_list<T>(items: &mut Vec<T>, keep: usize) -> Option<String> {
    let hidden = items.len().saturating_sub(keep);
    items.truncate(keep);
    more_note(hidden)
}

/// "+1 more field" / "+12 more fields", or `None` for zero.
pub fn more_note(hidden: usize) -> Option<String> {
    match hidden {
        0 => None,
        1 => Some("+1 more field".to_string()),
        n => Some(format!("+{n} more fields")),
    }
}

/// Whether `s` looks like an RFC 3339 date-time (`2026-11-23T12:00:00Z`,
/// with optional fraction and `±hh:mm` offset). Platforms refuse a bad
/// timestamp, so plugins leave it out rather than send one.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// The event time for people: `2026-11-23T12:00:00Z` → "2026-11-23 12:00:00 UTC";
/// anything not RFC 3339 is returned as is.
pub fn readable_time(time: &str) -> Cow<'_, str> {
    if !is_rfc3339(time) {
        return Cow::Borrowed(time);
    }
    let (date_time, zone) = match time.strip_suffix(['Z', 'z']) {
        Some(rest) => (rest, "UTC"),
        None => time.split_at(time.len() - 6),
    };
    let (date, clock) = date_time.split_at(10);
    let clock = clock[1..].split('.').next().unwrap_or("");
    Cow::Owned(format!("{date} {clock} {zone}"))
}

/// One piece of a title template.
enum Piece<'t> {
    Literal(&'t str),
    Field(&'t str),
}

/// Splits a template into literal text and `{placeholder}`s; `{{` and `}}`
/// are literal braces.
fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            pieces.push(Piece::Literal(&rest[..i]));
        }
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            pieces.push(Piece::Literal("{"));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            pieces.push(Piece::Literal("}"));
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone `}` (write `}}` for a brace)".into());
        } else {
            let end = tail
                .find('}')
                .ok_or("a `{` is never closed (write `{{` for a brace)")?;
            pieces.push(Piece::Field(tail[1..end].trim()));
            rest = &tail[end + 1..];
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

fn known_placeholder(name: &str) -> bool {
    matches!(
        name,
        "type" | "title" | "subject" | "source" | "id" | "time"
    ) || name.strip_prefix("data.").is_some_and(|p| !p.is_empty())
        || name.strip_prefix("data/").is_some()
}

/// Checks a title template: placeholders `{type}`, `{title}` (the readable
/// type), `{subject}`, `{source}`, `{id}`, `{time}`, `{data.path.to.field}`
/// (or `{data/json/pointer}`); `{{` and `}}` for literal braces. The error
/// says what is wrong, for the plugin to prefix with the option name.
pub fn check_template(template: &str) -> Result<(), String> {
    for piece in parse_template(template)? {
        if let Piece::Field(name) = piece
            && !known_placeholder(name)
        {
            return Err(format!(
                "unknown placeholder {{{name}}} (use type, title, subject, source, id, time or data.<field>)"
            ));
        }
    }
    Ok(())
}

/// The top-level `data` key a placeholder reads, if any.
fn placeholder_key(name: &str) -> Option<&str> {
    if let Some(path) = name.strip_prefix("data.") {
        return path.split('.').next();
    }
    name.strip_prefix("data/").and_then(|p| p.split('/').next())
}

/// Renders a title template (see [`check_template`]) for an event, as raw
/// text of at most `max_chars` characters: values are not escaped (escape
/// the result for the platform), a missing value renders empty, an unknown
/// placeholder is kept as written.
pub fn render_template(template: &str, event: &Event, max_chars: usize) -> String {
    let mut out = String::new();
    let Ok(pieces) = parse_template(template) else {
        return truncate_chars(template, max_chars).into_owned();
    };
    // More bytes than 4 per char means more chars than the limit: stop early.
    let byte_stop = max_chars.saturating_add(1).saturating_mul(4);
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Field(name) => match name {
                "type" => out.push_str(&event.ty),
                "title" => out.push_str(&readable_type(&event.ty)),
                "subject" => out.push_str(event.subject.as_deref().unwrap_or("")),
                "source" => out.push_str(&event.source),
                "id" => out.push_str(&event.id),
                "time" => out.push_str(&readable_time(&event.time)),
                _ if placeholder_key(name).is_some() => {
                    let path = name.strip_prefix("data.").unwrap_or(&name[4..]);
                    if let Some(v) = lookup(event.data(), path) {
                        out.push_str(&value_text(v, max_chars.saturating_add(1)));
                    }
                }
                _ => {
                    let _ = write!(out, "{{{name}}}");
                }
            },
        }
        if out.len() > byte_stop {
            break;
        }
    }
    fit_chars(&mut out, max_chars);
    out
}

/// What a person should see of an event, platform-neutral and unescaped:
/// each plugin escapes and cuts it to its own limits.
#[derive(Debug, Clone)]
pub struct Summary<'e> {
    /// The rendered title template, or the readable type; never blank, at
    /// most [`Summary::TITLE_MAX`] characters, raw text.
    pub title: String,
    /// The event's subject, when it has one.
    pub subject: Option<&'e str>,
    /// The event time for people (see [`readable_time`]).
    pub time: Cow<'e, str>,
    /// The event time as sent, when it is RFC 3339 (for timestamp fields).
    pub timestamp: Option<&'e str>,
    /// The link found in `data` (see [`find_link`]).
    pub link: Option<&'e str>,
    /// Every important field (see [`important_fields`]) as (key, value),
    /// without link members holding an `http…` string (used or dropped as
    /// the link) nor keys the title template used.
    pub fields: Vec<(&'e str, &'e Value)>,
}

impl<'e> Summary<'e> {
    /// The longest title a summary carries; platforms cut further.
    pub const TITLE_MAX: usize = 1_000;

    /// Reads an event. `title_template` as in [`render_template`]; links
    /// longer than `max_link` are dropped.
    pub fn new(event: &'e Event, title_template: Option<&str>, max_link: usize) -> Summary<'e> {
        let data = event.data();
        let mut title = match title_template {
            Some(t) => render_template(t, event, Self::TITLE_MAX),
            None => String::new(),
        };
        if title.trim().is_empty() {
            title = readable_type(&event.ty);
            fit_chars(&mut title, Self::TITLE_MAX);
        }
        let link = find_link(data, max_link);
        // Link-like members are never shown as fields: a rejected (over-long
        // or unsafe) URL would otherwise appear cut, and get auto-linked.
        let mut skip: Vec<&str> = LINK_KEYS
            .into_iter()
            .filter(|k| {
                data.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("http")))
            })
            .collect();
        if let Some(t) = title_template
            && let Ok(pieces) = parse_template(t)
        {
            skip.extend(pieces.iter().filter_map(|p| match p {
                Piece::Field(name) => placeholder_key(name),
                Piece::Literal(_) => None,
            }));
        }
        let fields = important_fields(data, &skip).collect();
        Summary {
            title,
            subject: event.subject.as_deref().filter(|s| !s.trim().is_empty()),
            time: readable_time(&event.time),
            timestamp: is_rfc3339(&event.time).then_some(event.time.as_str()),
            link: link.map(|(_, url)| url),
            fields,
        }
    }
}

/// How a length limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Unicode scalar values.
    Chars,
    /// UTF-8 bytes.
    Bytes,
}

impl Unit {
    /// The length of `s` in this unit.
    pub fn measure(self, s: &str) -> usize {
        match self {
            Unit::Chars => s.chars().count(),
            Unit::Bytes => s.len(),
        }
    }
}

impl Summary<'_> {
    /// The summary as a CommonMark-style message of at most `max` (counted
    /// in `unit`), every piece of event data escaped with [`Style::Markdown`]:
    ///
    /// ```text
    /// **Title**
    /// [Open](https://link)
    /// _subject · time_
    /// - **Field:** value
    /// _+12 more fields_
    /// ```
    ///
    /// At most `max_fields` fields, each value at most `value_max`
    /// characters; whole lines are left out (and counted in the note) rather
    /// than cut once the message is full. Titles are cut to 300 characters.
    pub fn to_markdown(
        &self,
        max_fields: usize,
        value_max: usize,
        max: usize,
        unit: Unit,
    ) -> String {
        // Room always kept for the "+N more fields" line.
        const NOTE_ROOM: usize = 32;
        let mut out = String::with_capacity(256);
        out.push_str("**");
        push_escaped(&mut out, &self.title, Style::Markdown, true, 300);
        out.push_str("**");
        let budget = max.saturating_sub(NOTE_ROOM);
        let mut line = String::with_capacity(128);
        let push_line = |out: &mut String, line: &str| {
            let fits = unit.measure(out) + 1 + unit.measure(line) <= budget;
            if fits {
                out.push('\n');
                out.push_str(line);
            }
            fits
        };
        if let Some(url) = self.link {
            line.clear();
            let _ = write!(line, "[Open]({})", markdown_url(url));
            push_line(&mut out, &line);
        }
        line.clear();
        line.push('_');
        if let Some(subject) = self.subject {
            push_escaped(&mut line, subject, Style::Markdown, true, value_max);
            line.push_str(" · ");
        }
        push_escaped(&mut line, &self.time, Style::Markdown, true, 100);
        line.push('_');
        push_line(&mut out, &line);
        let mut shown = 0;
        for (key, value) in self.fields.iter().take(max_fields) {
            line.clear();
            line.push_str("- **");
            push_escaped(&mut line, &humanize(key), Style::Markdown, true, 100);
            line.push_str(":** ");
            push_value(&mut line, value, Style::Markdown, true, value_max);
            if !push_line(&mut out, &line) {
                break;
            }
            shown += 1;
        }
        if let Some(note) = more_note(self.fields.len() - shown) {
            let _ = write!(out, "\n_{note}_");
        }
        // A safety net: only a limit below the title's own length gets here.
        match unit {
            Unit::Chars => fit_chars(&mut out, max),
            Unit::Bytes => fit_bytes(&mut out, max),
        };
        out
    }
}

/// `url` with the characters that would end a markdown link destination
/// (`(`, `)`, space) percent-encoded. Use on URLs passing [`is_http_url`].
pub fn markdown_url(url: &str) -> Cow<'_, str> {
    if !url.contains(['(', ')', ' ']) {
        return Cow::Borrowed(url);
    }
    Cow::Owned(
        url.replace('(', "%28")
            .replace(')', "%29")
            .replace(' ', "%20"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    const HOSTILE: [&str; 6] = [
        "plain ascii text that goes on",
        "emoji 👩‍👩‍👧‍👦 family 🇫🇷 flag 😀😀😀",
        "combining e\u{301}e\u{301}e\u{301} marks a\u{308}\u{304}",
        "中文字符测试，日本語のテキスト、한국어",
        "<!channel> @everyone **bold** `code` </b> &amp;",
        "mixed 😀中e\u{301}<&>@here\n\ttab",
    ];

    #[test]
    fn truncate_chars_fits_at_every_limit() {
        for s in HOSTILE {
            let n = s.chars().count();
            for max in 0..=n + 2 {
                let t = truncate_chars(s, max);
                assert!(t.chars().count() <= max, "{s:?} at {max}: {t:?}");
                if n <= max {
                    assert_eq!(t, s);
                } else if max > 0 {
                    assert!(t.ends_with(ELLIPSIS), "{t:?}");
                    assert!(s.starts_with(t.trim_end_matches(ELLIPSIS)));
                }
                let mut owned = s.to_string();
                assert_eq!(fit_chars(&mut owned, max), n > max);
                assert_eq!(owned, t);
            }
        }
    }

    #[test]
    fn truncate_bytes_fits_at_every_limit() {
        for s in HOSTILE {
            for max in 0..=s.len() + 2 {
                let t = truncate_bytes(s, max);
                assert!(t.len() <= max, "{s:?} at {max}: {t:?}");
                if s.len() <= max {
                    assert_eq!(t, s);
                } else if max >= 3 {
                    assert!(t.ends_with(ELLIPSIS), "{t:?}");
                }
                let mut owned = s.to_string();
                fit_bytes(&mut owned, max);
                assert_eq!(owned, t);
            }
        }
    }

    #[test]
    fn cut_never_leaves_a_dangling_joiner() {
        let family = "👩\u{200D}👩\u{200D}👧";
        for max in 1..6 {
            let t = truncate_chars(family, max);
            assert!(!t.contains("\u{200D}…"), "{t:?}");
        }
    }

    #[test]
    fn escapes_per_style() {
        assert_eq!(
            escape("a & <!channel> <@U1>", Style::Slack),
            "a &amp; &lt;!channel&gt; &lt;@U1&gt;"
        );
        assert_eq!(
            escape("**hi** _x_ `c` > q ~s~ |x| #h", Style::Discord),
            r"\*\*hi\*\* \_x\_ \`c\` \> q \~s\~ \|x\| \#h"
        );
        assert_eq!(
            escape("@everyone and @here", Style::Discord),
            "@\u{200B}everyone and @\u{200B}here"
        );
        assert_eq!(
            escape("mail ada@example.test", Style::Discord),
            "mail ada@example.test"
        );
        assert_eq!(
            escape(r#"</b> "x" 'y' &"#, Style::Html),
            "&lt;/b&gt; &quot;x&quot; &#39;y&#39; &amp;"
        );
        assert_eq!(
            escape("<@all> **x** [a](b)", Style::Markdown),
            "&lt;@\u{200B}all&gt; \\*\\*x\\*\\* \\[a\\](b)"
        );
        assert_eq!(
            escape("nothing special", Style::Markdown),
            "nothing special"
        );
        assert!(matches!(
            escape("nothing special", Style::Slack),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape("a\u{7}b\nc", Style::Plain), "a b\nc");
    }

    #[test]
    fn escape_and_cut_never_split_an_escape() {
        for style in [
            Style::Slack,
            Style::Discord,
            Style::Html,
            Style::Markdown,
            Style::Plain,
        ] {
            for s in HOSTILE {
                for max in 0..60 {
                    let mut out = String::new();
                    push_escaped(&mut out, s, style, true, max);
                    assert!(out.chars().count() <= max, "{style:?} {s:?} {max}: {out:?}");
                    assert!(!out.contains('\n'));
                    // No entity or backslash escape is ever cut in half.
                    let body = out.trim_end_matches(ELLIPSIS);
                    if let Some(amp) = body
                        .rfind('&')
                        .filter(|_| !matches!(style, Style::Discord | Style::Plain))
                    {
                        assert!(body[amp..].contains(';'), "{style:?} {max}: {out:?}");
                    }
                    let trailing = body.len() - body.trim_end_matches('\\').len();
                    assert_eq!(trailing % 2, 0, "{style:?} {max}: {out:?}");
                }
            }
        }
    }

    #[test]
    fn json_strings_match_serde_json() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let mut cases = vec![
            String::new(),
            every_ascii,
            "\u{2028}\u{2029}\u{7f}\u{85}\u{200D}".to_string(),
        ];
        cases.extend(HOSTILE.iter().map(|s| s.to_string()));
        for s in cases {
            let mut out = String::from("x");
            push_json_str(&mut out, &s);
            assert_eq!(out[1..], serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn ascii_fast_path_matches_char_by_char() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let mut cases: Vec<String> = vec!["".into(), "a\nb".into(), "@here a@b".into()];
        cases.extend((0..every_ascii.len()).map(|i| format!("ab{}c", &every_ascii[i..=i])));
        cases.extend(HOSTILE.iter().map(|s| s.to_string()));
        for style in [
            Style::Slack,
            Style::Discord,
            Style::Html,
            Style::Markdown,
            Style::Plain,
        ] {
            for s in &cases {
                for line in [false, true] {
                    for max in 1..s.len() + 3 {
                        let (mut fast, mut each) = (String::from("x"), String::from("x"));
                        let cut = push_escaped(&mut fast, s, style, line, max);
                        let cut_each = push_escaped_each(&mut each, s, style, line, max);
                        assert_eq!(
                            (fast, cut),
                            (each, cut_each),
                            "{style:?} {s:?} {line} {max}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn escape_stops_early_on_huge_input() {
        let huge = "<".repeat(10 << 20);
        let out = escape_fit(&huge, Style::Slack, false, 3000);
        assert!(out.chars().count() <= 3000);
        assert!(out.ends_with(ELLIPSIS));
    }

    /// `humanize` as it was written before it worked in place.
    fn humanize_reference(s: &str) -> String {
        let mut words = String::with_capacity(s.len() + 4);
        push_words(&mut words, 0, s);
        let words = words.trim_end();
        let mut out = String::with_capacity(words.len() + 4);
        for (n, word) in words.split(' ').enumerate() {
            if n > 0 {
                out.push(' ');
            }
            match word {
                "id" | "url" | "uri" => out.push_str(&word.to_ascii_uppercase()),
                _ if n == 0 => {
                    let mut cs = word.chars();
                    if let Some(first) = cs.next() {
                        out.extend(first.to_uppercase());
                        out.push_str(cs.as_str());
                    }
                }
                _ => out.push_str(word),
            }
        }
        if out.is_empty() { s.to_string() } else { out }
    }

    #[test]
    fn humanize_in_place_matches_reference() {
        let mut cases = vec![
            "",
            "_",
            " ",
            "id",
            "ID",
            "url_id",
            "htmlUrl",
            "order_id",
            "a..b",
            "x_",
            "_x",
            "ßtraße_id",
            "ǆemal",
            "ﬁle_uri",
            "İstanbul",
            "\tx",
            "x\t",
            "a \t b",
            "日本_id",
            "userIDUrl",
            "a1B2c3",
            "uri.url.id",
            "-:/. ",
            "éclair_url",
            "ŉ_x",
            "UrI",
            "idurl",
        ];
        cases.extend(HOSTILE);
        for s in cases {
            let mut out = String::from("pre ");
            push_humanized(&mut out, s);
            assert_eq!(&out[4..], humanize_reference(s), "{s:?}");
            assert_eq!(humanize(s), humanize_reference(s), "{s:?}");
        }
    }

    #[test]
    fn readable_titles() {
        assert_eq!(readable_type("order.created"), "Order created");
        assert_eq!(readable_type("user.password_reset"), "User password reset");
        assert_eq!(readable_type("com.example.invoice.paid"), "Invoice paid");
        assert_eq!(
            readable_type("pullRequest.reviewRequested"),
            "Pull request review requested"
        );
        assert_eq!(readable_type("ping"), "Ping");
        assert_eq!(readable_type(""), "Event");
        assert_eq!(readable_type("..."), "Event");
        assert_eq!(humanize("order_id"), "Order ID");
        assert_eq!(humanize("htmlUrl"), "Html URL");
        assert_eq!(humanize("_"), "_");
    }

    #[test]
    fn lookups() {
        let data = json!({"customer": {"name": "Ada"}, "items": [{"sku": "X"}], "n": 3});
        assert_eq!(lookup_str(&data, "customer.name"), Some("Ada"));
        assert_eq!(lookup_str(&data, "/customer/name"), Some("Ada"));
        assert_eq!(lookup_str(&data, "items.0.sku"), Some("X"));
        assert_eq!(lookup_str(&data, "n"), None);
        assert_eq!(lookup(&data, "n"), Some(&json!(3)));
        assert_eq!(lookup(&data, "missing.x"), None);
    }

    #[test]
    fn value_texts() {
        assert_eq!(value_text(&json!("hi"), 10), "hi");
        assert_eq!(value_text(&json!(1.5), 10), "1.5");
        assert_eq!(value_text(&json!(true), 10), "true");
        assert_eq!(value_text(&json!(null), 10), "null");
        assert_eq!(value_text(&json!({"a": [1, 2]}), 100), r#"{"a":[1,2]}"#);
        assert_eq!(value_text(&json!({"a": [1, 2]}), 5), "{\"a\"…");
        let big: Vec<String> = (0..100_000).map(|i| format!("é{i}")).collect();
        let big = json!(big);
        let t = value_text(&big, 50);
        assert_eq!(t.chars().count(), 50);
    }

    #[test]
    fn fields_links_and_notes() {
        let data = json!({
            "url": "https://x.test/a", "link": "javascript:alert(1)", "b": "", "c": null,
            "d": {"x": 1}, "e": 2, "f": "text", "g": false
        });
        let fields: Vec<_> = important_fields(&data, &["url"]).map(|(k, _)| k).collect();
        assert_eq!(fields, ["e", "f", "g", "link"]);
        assert_eq!(find_link(&data, 3000), Some(("url", "https://x.test/a")));
        assert_eq!(find_link(&data, 5), None, "over-long links are dropped");
        assert_eq!(
            find_link(&json!({"href": "HTTP://x.test"}), 100),
            Some(("href", "HTTP://x.test"))
        );
        assert_eq!(find_link(&json!({"url": "https://x.test/<b>"}), 100), None);
        assert_eq!(find_link(&json!({"url": "ftp://x.test"}), 100), None);
        let mut v: Vec<u32> = (0..22).collect();
        assert_eq!(cut_list(&mut v, 10).as_deref(), Some("+12 more fields"));
        assert_eq!(v.len(), 10);
        assert_eq!(cut_list(&mut v, 10), None);
        assert_eq!(more_note(1).as_deref(), Some("+1 more field"));
        assert_eq!(
            markdown_url("https://x.test/a_(b)"),
            "https://x.test/a_%28b%29"
        );
    }

    #[test]
    fn times() {
        assert!(is_rfc3339("2026-11-23T12:00:00Z"));
        assert!(is_rfc3339("2026-11-23T12:00:00.123+02:00"));
        assert!(!is_rfc3339("2026-11-23"));
        assert!(!is_rfc3339("2026-11-23T12:00:00"));
        assert!(!is_rfc3339("2026-11-23T12:00:00.Z"));
        assert!(!is_rfc3339("yesterday, around noon!"));
        assert_eq!(
            readable_time("2026-11-23T12:00:00Z"),
            "2026-11-23 12:00:00 UTC"
        );
        assert_eq!(
            readable_time("2026-11-23T12:00:00.5+02:00"),
            "2026-11-23 12:00:00 +02:00"
        );
        assert_eq!(readable_time("noon"), "noon");
    }

    #[test]
    fn templates() {
        let event = testing::order_created();
        let t = "{title} {{#{data.order_id}}} for {data.customer.name} ({subject}, {type}, {id})";
        check_template(t).unwrap();
        assert_eq!(
            render_template(t, &event, 200),
            "Order created {#ord_8812} for Ada Lovelace (ord_8812, order.created, evt-1)"
        );
        assert_eq!(render_template("{data.nope}", &event, 10), "");
        assert!(check_template("{nope}").unwrap_err().contains("{nope}"));
        assert!(check_template("{type").is_err());
        assert!(check_template("type}").is_err());
        assert_eq!(
            render_template("{data.note}", &event, 10).chars().count(),
            10
        );
        let huge = testing::event("x", &format!(r#"{{"v": "{}"}}"#, "é".repeat(1 << 20)));
        assert_eq!(
            render_template("{data.v}{data.v}", &huge, 150)
                .chars()
                .count(),
            150
        );
    }

    #[test]
    fn summary_as_markdown() {
        let event = testing::order_created();
        let s = Summary::new(&event, None, 3000);
        let md = s.to_markdown(2, 20, 10_000, Unit::Chars);
        assert_eq!(
            md,
            "**Order created**\n[Open](https://shop.example.test/orders/ord_8812)\n_ord\\_8812 · 2026-11-23 12:00:00 UTC_\n\
             - **Currency:** EUR\n- **Note:** Please gift-wrap th…\n_+3 more fields_"
        );
        for max in 0..400 {
            for unit in [Unit::Chars, Unit::Bytes] {
                let md = s.to_markdown(10, 1000, max, unit);
                assert!(unit.measure(&md) <= max, "{max} {unit:?}: {md}");
            }
        }
    }

    #[test]
    fn summary_reads_an_event() {
        let event = testing::order_created();
        let s = Summary::new(&event, None, 3000);
        assert_eq!(s.title, "Order created");
        assert_eq!(s.link, Some("https://shop.example.test/orders/ord_8812"));
        assert_eq!(s.subject, Some("ord_8812"));
        assert_eq!(s.timestamp, Some("2026-11-23T12:00:00Z"));
        let keys: Vec<_> = s.fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["currency", "note", "order_id", "status", "total"]);
        let s = Summary::new(&event, Some("Order {data.order_id}"), 10);
        assert_eq!(s.title, "Order ord_8812");
        assert_eq!(s.link, None);
        assert!(
            !s.fields.iter().any(|(k, _)| *k == "url"),
            "a dropped link is not a field"
        );
        assert!(!s.fields.iter().any(|(k, _)| *k == "order_id"));
        let blank = Summary::new(&event, Some("{data.nope}"), 10);
        assert_eq!(blank.title, "Order created");
    }
}
