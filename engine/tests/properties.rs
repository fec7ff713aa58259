//! Property tests of what the engine takes from untrusted callers: event
//! bodies, endpoint type filters, payload filters and endpoint URLs. Each property runs 256
//! generated cases in the normal test run; `PROPTEST_CASES=100000 cargo test
//! -p hookline --test properties --release` runs a longer search (figures in
//! docs/reliability.md).

use hookline::cloudevent::{EventLimits, parse_body};
use hookline::delivery::net_guard::NetworkPolicy;
use hookline::filter::TypeFilter;
use hookline::payload_filter::{Attributes, FilterInput, PayloadFilter};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Field paths an error may name: the body, an event's attribute (by its
/// name, even an invalid one), or either of those of an event of a batch.
fn is_field_path(field: &str) -> bool {
    match field.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((i, _)) => i.parse::<usize>().is_ok(),
            None => false,
        },
        None => !field.is_empty(),
    }
}

/// JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid CloudEvent: its id, type, source and data (a JSON object, or
/// null: what structured mode takes today).
fn valid_event() -> impl Strategy<Value = (String, String, String, Value)> {
    let data = prop_oneof![
        Just(Value::Null),
        prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ];
    ("[!-~]{1,64}", "[a-z][a-z0-9.]{0,40}", "[!-~]{1,80}", data)
}

proptest! {
    #[test]
    fn any_bytes_are_parsed_or_refused_with_a_named_field(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_body(&body, &EventLimits::default()) {
            prop_assert!(is_field_path(&e.field), "{e}");
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn any_json_is_parsed_or_refused_with_a_named_field(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Err(e) = parse_body(&body, &EventLimits::default()) {
            prop_assert!(is_field_path(&e.field), "{e}");
        }
    }

    #[test]
    fn a_valid_event_keeps_what_it_said((id, ty, source, data) in valid_event()) {
        let body = json!({ "specversion": "1.0", "id": id, "type": ty, "source": source, "data": data });
        let events = parse_body(body.to_string().as_bytes(), &EventLimits::default()).unwrap();
        prop_assert_eq!(events.len(), 1);
        let e = &events[0];
        prop_assert_eq!(&e.ce_id, &id);
        prop_assert_eq!(&e.event_type, &ty);
        prop_assert_eq!(&e.source, &source);
        let kept: Value = serde_json::from_str(&e.data).unwrap();
        prop_assert_eq!(kept, data);
    }

    #[test]
    fn one_broken_event_in_a_batch_is_named_by_its_index(
        events in prop::collection::vec(valid_event(), 1..8),
        broken in any::<prop::sample::Index>(),
        field in prop::sample::select(vec!["id", "type", "source"]),
    ) {
        let k = broken.index(events.len());
        let batch: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, (id, ty, source, data))| {
                let mut e = json!({ "specversion": "1.0", "id": id, "type": ty, "source": source, "data": data });
                if i == k {
                    e.as_object_mut().unwrap().remove(field);
                }
                e
            })
            .collect();
        let e = parse_body(Value::Array(batch).to_string().as_bytes(), &EventLimits::default()).unwrap_err();
        prop_assert_eq!(e.field, format!("[{k}].{field}"));
    }

    #[test]
    fn an_id_past_its_limit_is_refused_by_name(extra in 1usize..64) {
        let id = "i".repeat(256 + extra);
        let body = json!({ "specversion": "1.0", "id": id, "type": "t", "source": "s" });
        let e = parse_body(body.to_string().as_bytes(), &EventLimits::default()).unwrap_err();
        prop_assert_eq!(e.field, "id");
    }

    #[test]
    fn filters_are_refused_by_index_or_match_as_documented(
        filters in prop::collection::vec("[a-z.*]{0,12}", 0..6),
        ty in "[a-z.]{1,16}",
    ) {
        match TypeFilter::parse(&filters) {
            Err(why) => prop_assert!(why.starts_with('['), "{why}"),
            Ok(filter) => {
                let expected = filters.is_empty()
                    || filters.iter().any(|f| {
                        f == "*"
                            || f == &ty
                            || f.strip_suffix(".*").is_some_and(|p| ty.starts_with(&format!("{p}.")))
                    });
                prop_assert_eq!(filter.matches(&ty), expected, "{:?} on {}", filters, ty);
            }
        }
    }

    #[test]
    fn a_url_that_passes_is_http_without_credentials_and_no_loopback_literal(text in "[a-z]{2,6}://[!-~]{0,40}") {
        let policy = NetworkPolicy::new(&[], &[]).unwrap();
        if let Ok(url) = url::Url::parse(&text)
            && policy.check_url(&url).is_ok()
        {
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            prop_assert!(url.username().is_empty() && url.password().is_none());
            match url.host() {
                Some(url::Host::Ipv4(ip)) => prop_assert!(!ip.is_loopback() && !ip.is_private()),
                Some(url::Host::Ipv6(ip)) => prop_assert!(!ip.is_loopback()),
                _ => {}
            }
        }
    }

    #[test]
    fn every_spelling_of_a_loopback_address_is_refused(a in 0u8..=255, b in 0u8..=255, c in 1u8..=254, form in 0usize..4) {
        let policy = NetworkPolicy::new(&[], &[]).unwrap();
        let n = u32::from_be_bytes([127, a, b, c]);
        let text = match form {
            0 => format!("http://127.{a}.{b}.{c}/"),
            1 => format!("http://{n}/"),
            2 => format!("http://0x{n:08x}/"),
            _ => format!("http://[::ffff:127.{a}.{b}.{c}]/"),
        };
        let url = url::Url::parse(&text).unwrap();
        prop_assert!(policy.check_url(&url).is_err(), "{} was accepted", text);
    }
}

/// A payload filter over four data fields that are always there (`a` an
/// int, `b` a string, `c` a bool, `l` a list of ints) and one that may not
/// be (`m`), as text for the engine and as a tree for the reference below.
#[derive(Debug, Clone)]
enum Filter {
    Compare(&'static str, i64),
    StrEq(String),
    StartsWith(String),
    EndsWith(String),
    Flag,
    In(i64),
    HasM,
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    fn text(&self) -> String {
        match self {
            Filter::Compare(op, n) => format!("data.a {op} {n}"),
            Filter::StrEq(s) => format!("data.b == {s:?}"),
            Filter::StartsWith(s) => format!("data.b.startsWith({s:?})"),
            Filter::EndsWith(s) => format!("data.b.endsWith({s:?})"),
            Filter::Flag => "data.c".into(),
            Filter::In(n) => format!("{n} in data.l"),
            Filter::HasM => "has(data.m)".into(),
            Filter::And(x, y) => format!("({} && {})", x.text(), y.text()),
            Filter::Or(x, y) => format!("({} || {})", x.text(), y.text()),
            Filter::Not(x) => format!("!({})", x.text()),
        }
    }

    /// What the filter means, written without CEL.
    fn reference(&self, d: &Data) -> bool {
        match self {
            Filter::Compare(op, n) => match *op {
                "==" => d.a == *n,
                "!=" => d.a != *n,
                "<" => d.a < *n,
                "<=" => d.a <= *n,
                ">" => d.a > *n,
                _ => d.a >= *n,
            },
            Filter::StrEq(s) => d.b == *s,
            Filter::StartsWith(s) => d.b.starts_with(s.as_str()),
            Filter::EndsWith(s) => d.b.ends_with(s.as_str()),
            Filter::Flag => d.c,
            Filter::In(n) => d.l.contains(n),
            Filter::HasM => d.m,
            Filter::And(x, y) => x.reference(d) && y.reference(d),
            Filter::Or(x, y) => x.reference(d) || y.reference(d),
            Filter::Not(x) => !x.reference(d),
        }
    }
}

#[derive(Debug, Clone)]
struct Data {
    a: i64,
    b: String,
    c: bool,
    l: Vec<i64>,
    m: bool,
}

fn filter_tree() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (
            prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
            -5i64..5
        )
            .prop_map(|(op, n)| Filter::Compare(op, n)),
        "[a-c]{0,3}".prop_map(Filter::StrEq),
        "[a-c]{0,2}".prop_map(Filter::StartsWith),
        "[a-c]{0,2}".prop_map(Filter::EndsWith),
        Just(Filter::Flag),
        (-3i64..3).prop_map(Filter::In),
        Just(Filter::HasM),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| Filter::And(x.into(), y.into())),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| Filter::Or(x.into(), y.into())),
            inner.prop_map(|x| Filter::Not(x.into())),
        ]
    })
}

fn data() -> impl Strategy<Value = Data> {
    (
        -5i64..5,
        "[a-c]{0,3}",
        any::<bool>(),
        prop::collection::vec(-3i64..3, 0..4),
        any::<bool>(),
    )
        .prop_map(|(a, b, c, l, m)| Data { a, b, c, l, m })
}

proptest! {
    #[test]
    fn payload_filters_agree_with_a_reference_evaluation(filter in filter_tree(), d in data()) {
        let mut data = json!({ "a": d.a, "b": d.b, "c": d.c, "l": d.l });
        if d.m {
            data["m"] = json!(0);
        }
        let data = data.to_string();
        let input = FilterInput::new(&Attributes {
            id: "1",
            source: "s",
            event_type: "t",
            subject: None,
            time: "2026-12-01T00:00:00Z",
            extensions: "{}",
            data: &data,
        });
        let text = filter.text();
        let compiled = PayloadFilter::compile(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(compiled.matches(&input), filter.reference(&d), "{} on {}", text, data);
    }

    #[test]
    fn any_filter_text_compiles_or_is_refused_with_a_reason(text in "[ -~]{0,40}") {
        if let Err(why) = PayloadFilter::compile(&text) {
            prop_assert!(
                why.starts_with("line ") || why.starts_with("unknown variable") || why.starts_with("must not be empty"),
                "{text:?}: {why}"
            );
        }
    }
}
