//! The built-in plugins through the whole engine: one event, six receivers,
//! and each receiver checks what its platform would (INTEGRATIONS.md).

use std::time::Duration;

use hookline_tests::{Engine, Received, Receiver, verify_signature};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A plugin, its endpoint config, and the platform's checks of what arrives.
type Case = (&'static str, Value, fn(&Received));

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn check_slack(r: &Received) {
    let body = r.json();
    let text = body["text"]
        .as_str()
        .expect("slack: text fallback is always present");
    assert!(!text.is_empty() && text.chars().count() <= 40_000);
    let blocks = body["blocks"].as_array().expect("slack: blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert!(chars(&b["text"]["text"]) <= 150 && b["text"]["type"] == "plain_text")
            }
            "section" => {
                assert!(chars(&b["text"]["text"]) <= 3000);
                if let Some(fields) = b["fields"].as_array() {
                    assert!(fields.len() <= 10 && fields.iter().all(|f| chars(&f["text"]) <= 2000));
                }
            }
            "context" => assert!(b["elements"].as_array().unwrap().len() <= 10),
            "actions" => {
                for e in b["elements"].as_array().unwrap() {
                    assert!(chars(&e["text"]["text"]) <= 75 && chars(&e["url"]) <= 3000);
                }
            }
            "divider" => {}
            other => panic!("slack: unexpected block type {other}"),
        }
    }
    // Event data cannot mention: `<!channel>` arrives escaped.
    assert!(
        !r.body.windows(10).any(|w| w == b"<!channel>"),
        "slack: mention injected"
    );
}

fn check_discord(r: &Received) {
    let body = r.json();
    assert_eq!(
        body["allowed_mentions"]["parse"],
        json!([]),
        "discord: mentions must be off"
    );
    let embeds = body["embeds"].as_array().expect("discord: embeds");
    assert!(!embeds.is_empty() && embeds.len() <= 10);
    let mut total = 0;
    for e in embeds {
        assert!(chars(&e["title"]) <= 256 && chars(&e["description"]) <= 4096);
        let fields = e["fields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(fields.len() <= 25);
        for f in fields {
            let (n, v) = (chars(&f["name"]), chars(&f["value"]));
            assert!(
                (1..=256).contains(&n) && (1..=1024).contains(&v),
                "discord field {f}"
            );
            total += n + v;
        }
        total += chars(&e["title"])
            + chars(&e["description"])
            + chars(&e["footer"]["text"])
            + chars(&e["author"]["name"]);
        if let Some(c) = e.get("color") {
            assert!(c.as_u64().is_some_and(|c| c <= 0xFF_FFFF));
        }
    }
    assert!(total <= 6000, "discord: embeds total {total}");
    assert!(chars(&body["content"]) <= 2000);
    assert_eq!(
        r.query.as_deref(),
        Some("wait=true"),
        "discord: ?wait=true from config"
    );
}

fn check_teams(r: &Received) {
    assert!(r.body.len() <= 28_000, "teams: {} bytes", r.body.len());
    let body = r.json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let version: f64 = card["version"].as_str().unwrap().parse().unwrap();
    assert!(version <= 1.4, "teams: card version {version}");
    assert!(!card["body"].as_array().unwrap().is_empty());
}

fn check_webex(r: &Received) {
    let body = r.json();
    let markdown = body["markdown"].as_str().expect("webex: markdown");
    assert!(
        !markdown.is_empty() && markdown.len() <= 7439,
        "webex: {} bytes",
        markdown.len()
    );
    assert!(!markdown.contains("<@all>"), "webex: mention injected");
}

fn check_markdown(r: &Received) {
    let body = r.json();
    let text = body["text"].as_str().expect("markdown: text");
    assert!(!text.is_empty() && text.chars().count() <= 16_000);
}

fn check_webhook(r: &Received) {
    let body = r.json();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], "order.created");
    assert_eq!(r.header("content-type"), "application/cloudevents+json");
}

#[tokio::test]
async fn one_event_six_platforms() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("chat").await;
    let plugins: [Case; 6] = [
        ("slack", json!({}), check_slack),
        (
            "discord",
            json!({ "wait": true, "username": "Hookline" }),
            check_discord,
        ),
        ("teams", json!({}), check_teams),
        ("webex", json!({}), check_webex),
        ("markdown", json!({}), check_markdown),
        ("webhook", json!({}), check_webhook),
    ];
    let mut receivers = Vec::new();
    for (plugin, config, check) in plugins {
        let receiver = Receiver::start().await;
        let ep = engine
            .create_endpoint(&app, json!({ "url": format!("{}/{plugin}", receiver.url), "plugin": plugin, "plugin_config": config }))
            .await;
        receivers.push((
            plugin,
            receiver,
            ep["secret"].as_str().unwrap().to_string(),
            check,
        ));
    }

    // A typical order, with hostile bits: a huge note, mention and markup
    // injection, and many keys.
    let mut data = json!({
        "order_id": "ord_8812",
        "status": "paid",
        "total": "149.90",
        "customer": "Ada <!channel> @everyone <@all> **bold** </b>",
        "url": "https://shop.example.test/orders/ord_8812",
        // Just under the engine's 512 KiB data limit; the plugins' unit tests use 10 MB.
        "note": "é🎉".repeat(80_000),
    });
    for i in 0..300 {
        data[format!("key{i:03}")] = json!(format!("value {i}"));
    }
    let accepted = engine
        .emit(&app, json!({ "specversion": "1.0", "id": "chat-1", "source": "https://shop.example.test",
            "type": "order.created", "subject": "ord_8812", "time": "2026-11-23T12:00:00Z", "data": data }))
        .await;
    assert_eq!(accepted[0]["deliveries"], 6);

    for (plugin, receiver, secret, check) in &mut receivers {
        let r = receiver.next(WAIT).await;
        assert_eq!(r.path, format!("/{plugin}"));
        verify_signature(
            secret,
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            &r.body,
            300,
        )
        .unwrap_or_else(|e| panic!("{plugin}: {e}"));
        check(&r);
    }
    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 6)
        .await;
    assert_eq!(delivered.len(), 6);
}

#[tokio::test]
async fn platform_answers_become_verdicts() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("verdicts").await;

    // Slack's revoked webhook disables the endpoint.
    let mut slack = Receiver::answering(404, "no_service").await;
    let slack_ep = engine
        .create_endpoint(&app, json!({ "url": slack.url, "plugin": "slack" }))
        .await;
    // Discord's 429 with retry_after in the body is retried, then delivered.
    let mut discord = Receiver::start().await;
    discord.script_with_headers(
        429,
        &[("content-type", "application/json")],
        r#"{"message":"slow down","retry_after":0.1,"global":false}"#,
    );
    engine
        .create_endpoint(&app, json!({ "url": discord.url, "plugin": "discord" }))
        .await;

    engine.emit(&app, json!({ "id": "v1", "source": "s", "type": "deploy.finished", "data": { "service": "api" } })).await;
    slack.next(WAIT).await;
    discord.next(WAIT).await;
    discord.next(WAIT).await;

    let ep_path = format!(
        "/v1/apps/{app}/endpoints/{}",
        slack_ep["id"].as_str().unwrap()
    );
    let disabled =
        hookline_tests::eventually("the slack endpoint to be disabled", WAIT, || async {
            let (_, ep) = engine.get(&ep_path).await;
            (ep["enabled"] == false).then_some(ep)
        })
        .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("no_service"),
        "{disabled}"
    );

    let delivered = engine
        .wait_deliveries(&format!("app_id={app}&status=delivered"), 1)
        .await;
    assert_eq!(delivered[0]["attempts"], 2);
    let attempts = engine.attempts(delivered[0]["id"].as_str().unwrap()).await;
    assert_eq!(attempts[0]["status_code"], 429);
    assert_eq!(attempts[0]["plugin"]["name"], "discord");
}

#[tokio::test]
async fn plugin_config_is_checked_by_the_plugin() {
    hookline_tests::on_backend!(crate::BACKEND);
    let engine = Engine::start().await;
    let app = engine.create_app("configs").await;
    for (plugin, config, option) in [
        (
            "discord",
            json!({ "username": "my discord bot" }),
            "username",
        ),
        ("teams", json!({ "format": "telegram" }), "format"),
        ("markdown", json!({ "field": "body" }), "field"),
        ("slack", json!({ "nonsense": 1 }), "nonsense"),
    ] {
        let (status, out) = engine
            .post(&format!("/v1/apps/{app}/endpoints"), &json!({ "url": "http://127.0.0.1:9/x", "plugin": plugin, "plugin_config": config }))
            .await;
        assert_eq!(status, 422, "{plugin}: {out}");
        assert_eq!(out["error"]["field"], "plugin_config");
        let message = out["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("plugin_config: {option}")),
            "{plugin}: {out}"
        );
    }
    let (_, plugins) = engine.get("/v1/plugins").await;
    let mut names: Vec<&str> = plugins["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["discord", "markdown", "slack", "teams", "webex", "webhook"]
    );
}
