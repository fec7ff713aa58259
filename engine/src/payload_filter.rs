//! Payload filters: a CEL expression per endpoint, over the event's
//! attributes and its data, that must be true for the endpoint to get the
//! event (after its type filters).
//!
//! CEL (the Common Expression Language: Kubernetes admission policies,
//! Envoy, Google Cloud IAM conditions and Eventarc filters use it) was chosen
//! over the CloudEvents Subscriptions API filter dialects because those only
//! compare attributes as strings: they cannot read `data`, compare numbers or
//! test for a field. CEL does all of that with a specification, a
//! conformance suite and a maintained Rust implementation (the `cel`
//! crate), is side-effect free and always terminates (no loops, only
//! bounded macros over finite lists).
//!
//! Two variables are defined:
//! - `event`: the context attributes (`id`, `source`, `type`, `subject`,
//!   `time`, `datacontenttype`, `dataschema`) and the extension attributes,
//!   by name (`event.type`, `event.traceparent`);
//! - `data`: the event's JSON data (`data.order.total > 100`), `null` when
//!   there is none or it is not JSON.
//!
//! An expression that does not evaluate to `true` (it is false, it names a
//! field the event lacks, it compares values of different kinds) does not
//! match: a filter never lets an event through by accident. Use
//! `has(data.x)` to test for a field.
//!
//! Expressions are checked when an endpoint is saved (syntax, and only the
//! two variables), compiled once per distinct text and kept in a small
//! process-wide cache, and evaluated at ingest against values built once
//! per event, however many endpoints have filters.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map, Value};
use cel::{Context, Env, Program};

/// Longest accepted expression.
pub const MAX_LEN: usize = 4096;
/// Compiled expressions kept; the cache is emptied when it grows past this.
const CACHE_MAX: usize = 10_000;

/// A compiled filter.
pub struct PayloadFilter {
    program: Program,
}

impl std::fmt::Debug for PayloadFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadFilter")
    }
}

impl PayloadFilter {
    /// Checks and compiles `text`. The error says where (line and column)
    /// and what is wrong, for a 422 on the `filter` field.
    pub fn compile(text: &str) -> Result<PayloadFilter, String> {
        if text.trim().is_empty() {
            return Err("must not be empty (leave it out, or null, to match every event)".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!(
                "{} bytes, the limit is {MAX_LEN} bytes",
                text.len()
            ));
        }
        let program = Program::compile(text).map_err(|errors| {
            let first = errors.errors.first();
            match first {
                Some(e) => format!(
                    "line {}, column {}: {}",
                    e.pos.0.max(0),
                    e.pos.1.max(0) + 1,
                    e.msg
                ),
                None => errors.to_string(),
            }
        })?;
        let mut free = std::collections::BTreeSet::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(name) = free
            .iter()
            .find(|v| !matches!(v.as_str(), "event" | "data"))
        {
            return Err(format!(
                "unknown variable `{name}`: an expression can use `event` (the attributes, e.g. event.type) and `data`"
            ));
        }
        Ok(PayloadFilter { program })
    }

    /// The compiled filter for `text`, compiled once per distinct text.
    pub fn cached(text: &str) -> Result<Arc<PayloadFilter>, String> {
        static CACHE: Mutex<Option<HashMap<String, Arc<PayloadFilter>>>> = Mutex::new(None);
        if let Some(hit) = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(text)
        {
            return Ok(hit.clone());
        }
        let compiled = Arc::new(PayloadFilter::compile(text)?);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(text.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Whether the event passes: the expression evaluates to `true`.
    pub fn matches(&self, input: &FilterInput) -> bool {
        // A context is an `Arc` of the shared environment and a reference to
        // the event's values: nothing is copied per filter.
        let mut context = Context::with_env(ENV.clone());
        context.set_variable_resolver(input);
        matches!(self.program.execute(&context), Ok(Value::Bool(true)))
    }
}

/// The identifiers `expr` reads that no macro binds (`t` in
/// `data.tags.exists(t, t == "x")` is bound), besides CEL's type names.
fn free_variables(
    expr: &cel::IdedExpr,
    bound: &mut Vec<String>,
    out: &mut std::collections::BTreeSet<String>,
) {
    use cel::common::ast::{EntryExpr, Expr};
    const TYPE_NAMES: [&str; 10] = [
        "int",
        "uint",
        "double",
        "string",
        "bool",
        "bytes",
        "list",
        "map",
        "null_type",
        "type",
    ];
    let entry = |e: &EntryExpr, bound: &mut Vec<String>, out: &mut _| match e {
        EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            free_variables(&m.key, bound, out);
            free_variables(&m.value, bound, out);
        }
    };
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !name.starts_with('@')
                && !bound.contains(name)
                && !TYPE_NAMES.contains(&name.as_str())
            {
                out.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Expr::Select(select) => free_variables(&select.operand, bound, out),
        Expr::List(list) => {
            for e in &list.elements {
                free_variables(e, bound, out);
            }
        }
        Expr::Map(map) => {
            for e in &map.entries {
                entry(&e.expr, bound, out);
            }
        }
        Expr::Struct(s) => {
            for e in &s.entries {
                entry(&e.expr, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            // The range and the initial value are read outside the loop.
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            free_variables(&c.loop_cond, bound, out);
            free_variables(&c.loop_step, bound, out);
            free_variables(&c.result, bound, out);
            bound.truncate(before);
        }
    }
}

/// CEL's standard functions and macros, set up once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// One event as filters see it: converted to CEL's values once, then
/// lent to every filter that reads it.
pub struct FilterInput {
    event: Box<dyn Val>,
    data: Box<dyn Val>,
}

impl VariableResolver for FilterInput {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "event" => Some(CowVal::Borrowed(self.event.as_ref())),
            "data" => Some(CowVal::Borrowed(self.data.as_ref())),
            _ => None,
        }
    }
}

/// A value as CEL evaluates it; JSON values always convert.
fn val(value: Value) -> Box<dyn Val> {
    let converted: Result<Box<dyn Val>, _> = value.try_into();
    converted.unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

/// The attributes of an event that filters read.
pub struct Attributes<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub subject: Option<&'a str>,
    pub time: &'a str,
    /// JSON object text: the optional attributes and the extensions.
    pub extensions: &'a str,
    /// JSON text of the data, or `null`.
    pub data: &'a str,
}

impl FilterInput {
    pub fn new(a: &Attributes<'_>) -> FilterInput {
        let mut event: HashMap<Key, Value> = HashMap::new();
        if let Ok(serde_json::Value::Object(extensions)) = serde_json::from_str(a.extensions) {
            for (name, value) in extensions {
                // Bytes are not for filters; `datacontenttype` says what they are.
                if name != "data_base64" {
                    event.insert(Key::String(Arc::new(name)), from_json(value));
                }
            }
        }
        let mut put = |name: &str, value: &str| {
            event.insert(
                Key::String(Arc::new(name.to_string())),
                Value::String(Arc::new(value.to_string())),
            );
        };
        put("id", a.id);
        put("source", a.source);
        put("type", a.event_type);
        put("time", a.time);
        put("specversion", "1.0");
        if let Some(subject) = a.subject {
            put("subject", subject);
        }
        let data = serde_json::from_str(a.data)
            .map(from_json)
            .unwrap_or(Value::Null);
        FilterInput {
            event: val(Value::Map(Map {
                map: Arc::new(event),
            })),
            data: val(data),
        }
    }
}

/// A JSON value as CEL sees it: integers as `int` (or `uint` past
/// i64::MAX), other numbers as `double`.
fn from_json(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s)),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.into_iter().map(from_json).collect()))
        }
        serde_json::Value::Object(map) => Value::Map(Map {
            map: Arc::new(
                map.into_iter()
                    .map(|(k, v)| (Key::String(Arc::new(k)), from_json(v)))
                    .collect(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ty: &str, extensions: &str, data: &str) -> FilterInput {
        FilterInput::new(&Attributes {
            id: "e1",
            source: "/shop/eu",
            event_type: ty,
            subject: Some("order-7"),
            time: "2026-12-01T10:00:00Z",
            extensions,
            data,
        })
    }

    fn check(expr: &str, input: &FilterInput) -> bool {
        PayloadFilter::compile(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(input)
    }

    #[test]
    fn the_documented_operations_work_on_attributes_and_data() {
        let e = input(
            "order.created",
            r#"{"region":"eu","priority":3,"datacontenttype":"application/json"}"#,
            r#"{"total": 150.5, "count": 3, "items": ["a", "b"], "customer": {"tier": "gold"}}"#,
        );
        for (expr, want) in [
            (r#"event.type == "order.created""#, true),
            (r#"event.type.startsWith("order.")"#, true),
            (r#"event.source.endsWith("/eu")"#, true),
            (r#"event.subject == "order-7""#, true),
            (r#"event.region in ["eu", "us"]"#, true),
            (r#"event.priority >= 3"#, true),
            (r#"event.datacontenttype == "application/json""#, true),
            (r#"data.total > 100.0"#, true),
            (r#"data.total > 100"#, true),
            (r#"data.count == 3"#, true),
            (r#"data.count < 3"#, false),
            (r#"data.customer.tier == "gold" && data.count > 1"#, true),
            (r#"data.customer.tier == "silver" || data.count > 5"#, false),
            (r#"!(data.count > 5)"#, true),
            (r#"has(data.customer)"#, true),
            (r#"has(data.missing)"#, false),
            (r#""b" in data.items"#, true),
            (r#"size(data.items) == 2"#, true),
            (r#"data.items.exists(i, i == "b")"#, true),
            (r#"data.customer.tier.contains("ol")"#, true),
            (r#"event.source.matches("^/shop/(eu|us)$")"#, true),
            (r#"data.items.all(i, i.size() == 1)"#, true),
            // A missing field or mixed kinds do not match; they never pass.
            (r#"data.missing == 1"#, false),
            (r#"data.customer > 1"#, false),
            // Not a boolean: no match.
            (r#"data.count"#, false),
        ] {
            assert_eq!(check(expr, &e), want, "{expr}");
        }
    }

    #[test]
    fn non_object_and_missing_data_can_be_filtered() {
        assert!(check("data == null", &input("t", "{}", "null")));
        assert!(check("data[1] == 2", &input("t", "{}", "[1, 2]")));
        assert!(check(r#"data == "x""#, &input("t", "{}", r#""x""#)));
        assert!(!check("data.x == 1", &input("t", "{}", "null")));
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = PayloadFilter::compile("data.total >").unwrap_err();
        assert!(e.starts_with("line 1, column "), "{e}");
        let e = PayloadFilter::compile("amount > 3").unwrap_err();
        assert!(e.contains("unknown variable `amount`"), "{e}");
        // A macro's variable is bound inside it only.
        let e = PayloadFilter::compile("data.l.exists(x, x > 1) && x == 2").unwrap_err();
        assert!(e.contains("unknown variable `x`"), "{e}");
        assert!(PayloadFilter::compile("  ").is_err());
        let long = format!("data.x == \"{}\"", "a".repeat(MAX_LEN));
        assert!(PayloadFilter::compile(&long).unwrap_err().contains("limit"));
    }

    #[test]
    fn compiled_once_per_text() {
        let a = PayloadFilter::cached("data.n == 1").unwrap();
        let b = PayloadFilter::cached("data.n == 1").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
