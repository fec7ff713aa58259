//! How the API commands print answers for people: lists as aligned columns
//! without borders (easy to read, easy to `grep` and `awk`), one object as
//! its fields, nested ones in dotted names (`health.breaker`).

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// The longest cell shown; longer text is cut with `…` (`--output json`
/// has it all).
const MAX_CELL: usize = 80;

/// A column: its header and where its value is (a JSON pointer).
pub type Column = (&'static str, &'static str);

/// Rows as a table of `columns`.
pub fn list(rows: &[Value], columns: &[Column]) -> String {
    let mut table = new_table();
    table.set_header(columns.iter().map(|(header, _)| *header));
    for row in rows {
        table.add_row(
            columns
                .iter()
                .map(|(_, pointer)| cell(row.pointer(pointer).unwrap_or(&Value::Null))),
        );
    }
    table.to_string()
}

/// An object as `field  value` lines, nested objects flattened.
pub fn fields(value: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", value, &mut rows);
    let mut table = new_table();
    for (name, text) in rows {
        table.add_row(vec![name, text]);
    }
    table.to_string()
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, out);
            }
        }
        other => out.push((prefix.to_string(), cell(other))),
    }
}

/// A value as one cell: `-` for nothing, text as it is, a list of words
/// joined by commas, anything else as compact JSON; cut at [`MAX_CELL`].
pub fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    // One line per row: a multi-line error must not break the columns. Other
    // control characters are shown escaped: a response excerpt is the
    // receiver's text, and escape sequences in it must not reach the terminal.
    let text: String = text
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => " ".to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect();
    match text.char_indices().nth(MAX_CELL) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_from_a_receiver_never_reach_the_terminal() {
        let shown = cell(&json!("ok\u{1b}]52;c;ZXZpbA==\u{7}\nnext"));
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}") && shown.contains("next"),
            "{shown}"
        );
    }

    #[test]
    fn lists_align_columns_and_show_missing_values_as_a_dash() {
        let rows = vec![
            json!({ "id": "ep_1", "health": { "breaker": "closed" }, "url": "http://a" }),
            json!({ "id": "ep_22", "health": { "breaker": "open" }, "url": null }),
        ];
        let text = list(
            &rows,
            &[
                ("ID", "/id"),
                ("BREAKER", "/health/breaker"),
                ("URL", "/url"),
            ],
        );
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("ID") && lines[0].contains("BREAKER"),
            "{text}"
        );
        assert!(lines[2].contains("ep_22") && lines[2].contains("open") && lines[2].ends_with('-'));
        // Aligned: the second column starts at the same place on every line.
        let at: Vec<usize> = lines
            .iter()
            .zip(["BREAKER", "closed", "open"])
            .map(|(l, w)| l.find(w).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn an_object_shows_nested_fields_by_dotted_name_and_cuts_long_text() {
        let text = fields(&json!({
            "id": "msg_1",
            "health": { "breaker": "closed", "last_error": "x".repeat(200) },
            "filter_types": ["a.*", "b"],
        }));
        assert!(text.contains("health.breaker"), "{text}");
        assert!(text.contains("a.*,b"), "{text}");
        let long = text.lines().find(|l| l.contains("last_error")).unwrap();
        assert!(long.trim_end().ends_with('…') && long.len() < 120, "{long}");
    }
}
