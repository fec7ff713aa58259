//! Payload filters end to end: 20 endpoints with different CEL filters,
//! 2,000 generated events, and each endpoint must receive exactly the events
//! that a reference evaluation says it should. The reference is plain Rust
//! over the generated values, written here independently of the engine's
//! evaluator (which is the `cel` crate).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use hookline_tests::{Engine, Receiver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const EVENTS: usize = 2000;
const BATCH: usize = 100;
const WAIT: Duration = Duration::from_secs(60);

/// One generated event, as the reference sees it.
#[derive(Debug, Clone)]
struct Gen {
    id: String,
    ty: &'static str,
    subject: Option<String>,
    region: Option<&'static str>,
    total: Option<f64>,
    total_is_int: bool,
    count: i64,
    tags: Vec<&'static str>,
    tier: Option<&'static str>,
}

impl Gen {
    fn random(i: usize, rng: &mut StdRng) -> Gen {
        let types = ["order.created", "order.paid", "user.signup", "invoice.sent"];
        let regions = ["eu", "us", "apac"];
        let tiers = ["gold", "silver", "bronze"];
        let total_is_int = rng.random_bool(0.5);
        let total = rng.random_bool(0.85).then(|| {
            if total_is_int {
                rng.random_range(0..500) as f64
            } else {
                (rng.random_range(0..50_000) as f64) / 100.0
            }
        });
        Gen {
            id: format!("e{i}"),
            ty: types[rng.random_range(0..types.len())],
            subject: rng
                .random_bool(0.7)
                .then(|| format!("cust-{}", rng.random_range(0..30))),
            region: rng
                .random_bool(0.8)
                .then(|| regions[rng.random_range(0..regions.len())]),
            total,
            total_is_int,
            count: rng.random_range(0..10),
            tags: ["vip", "new", "gift"]
                .into_iter()
                .filter(|_| rng.random_bool(0.4))
                .collect(),
            tier: rng
                .random_bool(0.75)
                .then(|| tiers[rng.random_range(0..tiers.len())]),
        }
    }

    fn to_json(&self) -> Value {
        let mut data = serde_json::Map::new();
        if let Some(total) = self.total {
            data.insert(
                "total".into(),
                if self.total_is_int {
                    json!(total as i64)
                } else {
                    json!(total)
                },
            );
        }
        data.insert("count".into(), json!(self.count));
        data.insert("tags".into(), json!(self.tags));
        if let Some(tier) = self.tier {
            data.insert("customer".into(), json!({ "tier": tier }));
        }
        let mut event = json!({
            "specversion": "1.0", "id": self.id, "source": "/gen", "type": self.ty,
            "data": Value::Object(data),
        });
        if let Some(subject) = &self.subject {
            event["subject"] = json!(subject);
        }
        if let Some(region) = self.region {
            event["region"] = json!(region);
        }
        event
    }
}

type Reference = fn(&Gen) -> bool;

/// The filters, each with its reference meaning. A missing field makes a
/// comparison with it false (CEL: an error, which does not match).
fn filters() -> Vec<(Option<&'static str>, Reference)> {
    vec![
        (Some("data.total > 250"), |g| {
            g.total.is_some_and(|t| t > 250.0)
        }),
        (Some("data.total <= 100"), |g| {
            g.total.is_some_and(|t| t <= 100.0)
        }),
        (Some(r#"event.type == "order.created""#), |g| {
            g.ty == "order.created"
        }),
        (Some(r#"event.type.startsWith("order.")"#), |g| {
            g.ty.starts_with("order.")
        }),
        (Some(r#"event.type.endsWith(".sent")"#), |g| {
            g.ty.ends_with(".sent")
        }),
        (Some(r#"event.region in ["eu", "apac"]"#), |g| {
            matches!(g.region, Some("eu" | "apac"))
        }),
        (Some("has(event.region)"), |g| g.region.is_some()),
        (Some("!has(data.customer)"), |g| g.tier.is_none()),
        (Some(r#"data.customer.tier == "gold""#), |g| {
            g.tier == Some("gold")
        }),
        (Some(r#""vip" in data.tags"#), |g| g.tags.contains(&"vip")),
        (Some("size(data.tags) >= 2"), |g| g.tags.len() >= 2),
        (Some("data.count >= 5 && data.total < 300"), |g| {
            g.count >= 5 && g.total.is_some_and(|t| t < 300.0)
        }),
        (Some(r#"data.count == 0 || event.region == "us""#), |g| {
            g.count == 0 || g.region == Some("us")
        }),
        (Some("!(data.total > 100)"), |g| {
            g.total.is_some_and(|t| t <= 100.0)
        }),
        (Some(r#"event.subject.startsWith("cust-1")"#), |g| {
            g.subject
                .as_deref()
                .is_some_and(|s| s.starts_with("cust-1"))
        }),
        (Some("data.total > 100.5"), |g| {
            g.total.is_some_and(|t| t > 100.5)
        }),
        (
            Some(r#"event.type == "user.signup" && data.customer.tier != "bronze""#),
            |g| g.ty == "user.signup" && g.tier.is_some_and(|t| t != "bronze"),
        ),
        (Some(r#"data.tags.exists(t, t.startsWith("g"))"#), |g| {
            g.tags.iter().any(|t| t.starts_with('g'))
        }),
        (None, |_| true),
        (
            Some(r#"event.region == "eu" && data.total >= 50 && "new" in data.tags"#),
            |g| {
                g.region == Some("eu")
                    && g.total.is_some_and(|t| t >= 50.0)
                    && g.tags.contains(&"new")
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_gets_exactly_the_events_its_filter_selects() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let mut receiver = Receiver::start().await;
    let app = engine.create_app("filters").await;
    let filters = filters();
    assert_eq!(filters.len(), 20);
    for (i, (filter, _)) in filters.iter().enumerate() {
        let mut body = json!({ "url": format!("{}/ep/{i}", receiver.url) });
        if let Some(f) = filter {
            body["filter"] = json!(f);
        }
        let out = engine.create_endpoint(&app, body).await;
        assert_eq!(out["filter"], json!(filter), "the filter is shown back");
    }

    let mut rng = StdRng::seed_from_u64(0x5eed_f11e);
    let events: Vec<Gen> = (0..EVENTS).map(|i| Gen::random(i, &mut rng)).collect();
    let mut want: Vec<BTreeSet<String>> = vec![BTreeSet::new(); filters.len()];
    for g in &events {
        for (i, (_, reference)) in filters.iter().enumerate() {
            if reference(g) {
                want[i].insert(g.id.clone());
            }
        }
    }
    // Every filter selects some events and leaves out others (except the
    // one endpoint without a filter), so a filter that matched all or
    // nothing would be caught.
    for (i, set) in want.iter().enumerate() {
        assert!(!set.is_empty(), "filter {i} selects nothing in this sample");
        assert!(
            set.len() < EVENTS || filters[i].0.is_none(),
            "filter {i} selects everything"
        );
    }

    // The 202 says how many deliveries each event got: check that first.
    let expected_per_event: HashMap<&str, usize> = events
        .iter()
        .map(|g| {
            let n = filters.iter().filter(|(_, r)| r(g)).count();
            (g.id.as_str(), n)
        })
        .collect();
    for chunk in events.chunks(BATCH) {
        let batch: Vec<Value> = chunk.iter().map(Gen::to_json).collect();
        for accepted in engine.emit(&app, Value::Array(batch)).await {
            let id = accepted["event_id"].as_str().unwrap();
            assert_eq!(
                accepted["deliveries"].as_u64().unwrap() as usize,
                expected_per_event[id],
                "deliveries created for {id}"
            );
        }
    }

    // And the receiver gets exactly those, per endpoint.
    let total: usize = want.iter().map(BTreeSet::len).sum();
    let mut got: Vec<BTreeSet<String>> = vec![BTreeSet::new(); filters.len()];
    for _ in 0..total {
        let r = receiver.next(WAIT).await;
        let i: usize = r.path.trim_start_matches("/ep/").parse().unwrap();
        let id = r.json()["id"].as_str().unwrap().to_string();
        assert!(got[i].insert(id.clone()), "endpoint {i} got {id} twice");
    }
    for (i, (filter, _)) in filters.iter().enumerate() {
        assert_eq!(got[i], want[i], "endpoint {i} ({filter:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_with_where_it_is_wrong() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("bad-filters").await;
    let receiver = Receiver::start().await;
    let path = format!("/v1/apps/{app}/endpoints");
    for (filter, words) in [
        ("data.total >", "line 1, column"),
        ("total > 3", "unknown variable `total`"),
        ("", "must not be empty"),
    ] {
        let (status, out) = engine
            .post(&path, &json!({ "url": receiver.url, "filter": filter }))
            .await;
        assert_eq!(status, 422, "{filter}: {out}");
        assert_eq!(out["error"]["field"], "filter");
        assert!(
            out["error"]["message"].as_str().unwrap().contains(words),
            "{filter}: {out}"
        );
    }

    // Changing it: checked the same way; null removes it.
    let endpoint = engine
        .create_endpoint(
            &app,
            json!({ "url": receiver.url, "filter": "data.n == 1" }),
        )
        .await;
    let path = format!(
        "/v1/apps/{app}/endpoints/{}",
        endpoint["id"].as_str().unwrap()
    );
    let (status, _) = engine.patch(&path, &json!({ "filter": "data.n ==" })).await;
    assert_eq!(status, 422);
    let (_, shown) = engine.get(&path).await;
    assert_eq!(shown["filter"], "data.n == 1");
    let (status, out) = engine.patch(&path, &json!({ "filter": null })).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["filter"], Value::Null);
}
