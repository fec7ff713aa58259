//! Identifiers: a type prefix and a ULID, so ids say what they name and sort
//! by creation time (which the API's cursors rely on).

/// A new id such as `app_01JD…`. Ids made by one process increase strictly,
/// even within a millisecond: ordered endpoints deliver in id order.
pub fn new_id(prefix: &str) -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let ulid = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .generate()
        // Only after 2^80 ids in one millisecond.
        .unwrap_or_else(|_| ulid::Ulid::new());
    let mut id = String::with_capacity(prefix.len() + 27);
    id.push_str(prefix);
    id.push('_');
    id.push_str(&ulid.to_string());
    id
}

/// The smallest id of `prefix` created at `ms`: ids below it are older.
pub fn id_at(prefix: &str, ms: i64) -> String {
    let ulid = ulid::Ulid::from_parts(ms.max(0) as u64, 0);
    format!("{prefix}_{ulid}")
}

/// Milliseconds since the Unix epoch, the store's unit of time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 text of a store time, for the API.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id("msg")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_id_at_a_time_sorts_between_older_and_newer_ids() {
        let before = id_at("evt", now_ms() - 1);
        let id = new_id("evt");
        let after = id_at("evt", now_ms() + 1);
        assert!(before < id && id < after, "{before} {id} {after}");
    }
}
