//! The sandbox's per-call limits and the checks on what a plugin returns.

use std::time::Duration;

use super::PluginRequest;

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call (enforced by epoch interruption).
    pub call_timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Total body bytes of the requests one transform may return.
    pub output_bytes: usize,
    /// Requests one transform may return.
    pub max_requests: usize,
    /// Consecutive failed calls (traps, deadlines, limits) after which a
    /// plugin version is quarantined.
    pub quarantine_after: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            call_timeout: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            max_requests: 16,
            quarantine_after: 5,
        }
    }
}

/// How often the engine's epoch advances; the deadline's resolution.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

impl Limits {
    /// The call deadline in epoch ticks (at least one full tick).
    pub(super) fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
    }
}

/// Headers a plugin may not set: the engine owns signing, framing and identity.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Checks a transform's output like any untrusted input.
pub(super) fn check_output(requests: &[PluginRequest], limits: &Limits) -> Result<(), String> {
    if requests.len() > limits.max_requests {
        return Err(format!(
            "plugin returned {} requests, the limit is {}",
            requests.len(),
            limits.max_requests
        ));
    }
    let total: usize = requests.iter().map(|r| r.body.len()).sum();
    if total > limits.output_bytes {
        return Err(format!(
            "plugin returned {total} body bytes, the limit is {}",
            limits.output_bytes
        ));
    }
    for r in requests {
        if reqwest::header::HeaderValue::from_str(&r.content_type).is_err() {
            return Err("plugin returned an invalid content type".into());
        }
        for (name, value) in &r.headers {
            let lower = name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(format!("plugin may not set the {lower} header"));
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(format!("plugin returned an invalid header {name:?}"));
            }
        }
        if let Some(q) = &r.query
            && (q.chars().any(|c| c.is_whitespace() || c == '#') || q.len() > 2048)
        {
            return Err("plugin returned an invalid query string".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: usize) -> PluginRequest {
        PluginRequest {
            body: vec![b'x'; body],
            content_type: "application/json".into(),
            headers: Vec::new(),
            query: None,
        }
    }

    #[test]
    fn output_within_limits_passes() {
        let limits = Limits::default();
        let mut r = request(100);
        r.headers.push(("x-custom".into(), "1".into()));
        r.query = Some("wait=true".into());
        assert_eq!(check_output(&[r], &limits), Ok(()));
    }

    #[test]
    fn each_limit_is_named() {
        let limits = Limits {
            output_bytes: 1000,
            max_requests: 2,
            ..Limits::default()
        };
        let too_big = check_output(&[request(600), request(600)], &limits).unwrap_err();
        assert!(
            too_big.contains("1200 body bytes") && too_big.contains("limit is 1000"),
            "{too_big}"
        );
        let too_many = check_output(&[request(1), request(1), request(1)], &limits).unwrap_err();
        assert!(too_many.contains("3 requests"), "{too_many}");
        for name in ["webhook-signature", "Host", "content-length", "User-Agent"] {
            let mut r = request(1);
            r.headers.push((name.into(), "x".into()));
            let e = check_output(&[r], &limits).unwrap_err();
            assert!(e.contains(&name.to_ascii_lowercase()), "{name}: {e}");
        }
        let mut r = request(1);
        r.headers.push(("bad name".into(), "x".into()));
        assert!(
            check_output(&[r], &limits)
                .unwrap_err()
                .contains("invalid header")
        );
        let mut r = request(1);
        r.query = Some("a b".into());
        assert!(check_output(&[r], &limits).unwrap_err().contains("query"));
    }
}
