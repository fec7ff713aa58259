//! A native test harness: sample events and a recorder for the `log` import,
//! so a plugin's unit tests call its `transform` directly, without Wasm.

use std::cell::RefCell;

use crate::{Event, LogLevel};

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

/// What the plugin logged on this thread so far (natively, `log` records here).
pub fn logged() -> Vec<(LogLevel, String)> {
    LOGGED.with(|l| l.borrow().clone())
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGGED.with(|l| l.borrow_mut().push((level, message.to_string())));
}
