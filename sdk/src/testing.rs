//! A native test harness: sample events and a recorder for the `log` import,
//! so a plugin's unit tests call its `transform` directly, without Wasm.

use std::cell::RefCell;

use crate::{Config, Event, LogLevel, Plugin, Request};

thread_local! {
    static LOGGED: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

/// An event of the given type whose `data` is the given JSON text.
pub fn event(ty: &str, data_json: &str) -> Event {
    Event::new(
        "evt-1",
        ty,
        "https://example.test/app",
        "2026-11-23T12:00:00Z",
        data_json,
    )
    .with_app_id("app_test")
}

/// A typical 1 KiB event: an order with a customer, items and a link.
pub fn order_created() -> Event {
    event(
        "order.created",
        r#"{
            "order_id": "ord_8812",
            "status": "paid",
            "total": "149.90",
            "currency": "EUR",
            "customer": {"name": "Ada Lovelace", "email": "ada@example.test"},
            "items": [
                {"sku": "BK-001", "name": "Notes on the Analytical Engine", "qty": 1, "price": "99.90"},
                {"sku": "PN-204", "name": "Fountain pen", "qty": 2, "price": "25.00"}
            ],
            "shipping": {"method": "express", "address": "12 St James's Square, London"},
            "url": "https://shop.example.test/orders/ord_8812",
            "note": "Please gift-wrap the book and include a card that says: congratulations on the first program."
        }"#,
    )
    .with_subject("ord_8812")
}

/// Runs a plugin the way the engine does for one endpoint: parses `config`
/// (JSON text), checks it with `validate_config`, transforms `event`, and
/// expects exactly one request, which it returns. Panics with the plugin's
/// error otherwise, so a test reads as what it checks.
pub fn single_request<P: Plugin>(event: &Event, config: &str) -> Request {
    let config = Config::parse(config).unwrap_or_else(|e| panic!("config {config:?}: {e}"));
    P::validate_config(&config).unwrap_or_else(|e| panic!("config refused: {e}"));
    let mut requests =
        P::transform(event, &config).unwrap_or_else(|e| panic!("transform failed: {e}"));
    assert_eq!(requests.len(), 1, "expected one request, got {requests:?}");
    requests.remove(0)
}

/// What the plugin logged on this thread so far (natively, `log` records here).
pub fn logged() -> Vec<(LogLevel, String)> {
    LOGGED.with(|l| l.borrow().clone())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGGED.with(|l| l.borrow_mut().push((level, message.to_string())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PluginError, PluginInfo};

    struct Echo;

    impl Plugin for Echo {
        fn info() -> PluginInfo {
            PluginInfo::new("echo", "0.0.0", "echoes the type")
        }

        fn validate_config(config: &Config) -> Result<(), PluginError> {
            config.allow_only(&["prefix"])
        }

        fn transform(event: &Event, config: &Config) -> Result<Vec<Request>, PluginError> {
            let prefix = config.str("prefix")?.unwrap_or("");
            Ok(vec![Request::bytes(
                format!("{prefix}{}", event.ty).into_bytes(),
                "text/plain",
            )])
        }
    }

    #[test]
    fn single_request_validates_then_transforms() {
        let r = single_request::<Echo>(&event("a.b", "{}"), r#"{"prefix": "> "}"#);
        assert_eq!(r.body_str(), "> a.b");
    }

    #[test]
    #[should_panic(expected = "config refused: bad config: colour: unknown option")]
    fn single_request_fails_on_a_refused_config() {
        single_request::<Echo>(&event("a.b", "{}"), r#"{"colour": 1}"#);
    }
}
