//! The sandbox's per-call limits and the checks on what a plugin returns.

use std::time::Duration;

use super::PluginRequest;

/// Limits applied to every plugin call, and the budget all instances share.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock deadline of one call, host calls (WASI clocks and polls)
    /// included: a guest that sleeps is stopped here.
    pub call_timeout: Duration,
    /// The shorter deadline of `validate-config` on the API path, where a
    /// client waits for the answer.
    pub validate_timeout: Duration,
    /// CPU budget of one call, in wasmtime fuel (about one unit per Wasm
    /// instruction). Fuel counts only what the guest executes, so a loaded
    /// machine cannot trip it by itself.
    pub fuel: u64,
    /// CPU time of one call on its thread, host calls (WASI, logging)
    /// included: the backstop for a guest that spins in host calls, which
    /// cost it little fuel. Counted only while the thread runs, so a loaded
    /// machine does not trip it either.
    pub cpu_time: Duration,
    /// Linear memory one instance may grow to (all its memories together).
    pub memory_bytes: usize,
    /// Memory all plugin instances together may hold: it sets how many
    /// instances exist at once (warm ones plus calls in progress).
    pub memory_budget: usize,
    /// Total body bytes of the requests one transform may return.
    pub output_bytes: usize,
    /// Requests one transform may return.
    pub max_requests: usize,
    /// Consecutive guest faults (traps, deadlines, limits) after which a
    /// plugin version is quarantined for the app whose calls faulted.
    pub quarantine_after: u32,
    /// How long a quarantine lasts before one probe call may try again;
    /// doubled each time the probe fails, up to 16 times.
    pub quarantine_cooldown: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            call_timeout: Duration::from_secs(1),
            validate_timeout: Duration::from_millis(250),
            fuel: DEFAULT_FUEL,
            cpu_time: Duration::from_millis(200),
            memory_bytes: 64 << 20,
            memory_budget: 4 << 30,
            output_bytes: 1 << 20,
            max_requests: 16,
            quarantine_after: 5,
            quarantine_cooldown: Duration::from_secs(30),
        }
    }
}

/// The default CPU budget of a call; see docs/plugins.md for how it was chosen.
pub const DEFAULT_FUEL: u64 = 500_000_000;

/// Fuel after which a running guest yields to the executor, so that the
/// call's deadline is checked while it computes. Typical transforms use far
/// less and never yield.
pub(super) const YIELD_EVERY_FUEL: u64 = 2_000_000;

/// Bytes a guest may hand the host in one lift (a call's result, or the
/// arguments of one host call): the output cap plus room for headers and
/// strings. Checked by wasmtime before it copies anything.
pub(super) fn lift_budget(limits: &Limits) -> usize {
    limits.output_bytes + (256 << 10)
}

/// Longest string the host keeps from a guest (errors, reasons, log lines).
pub const MAX_KEPT_STRING: usize = 1024;

/// Cuts a guest's string to [`MAX_KEPT_STRING`] bytes at a character boundary.
pub fn cut(s: &str) -> String {
    if s.len() <= MAX_KEPT_STRING {
        return s.to_string();
    }
    let mut end = MAX_KEPT_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

impl Limits {
    /// Instances that may exist at once: the memory budget over one
    /// instance's cap (at least 4).
    pub fn instance_slots(&self) -> usize {
        (self.memory_budget / self.memory_bytes.max(1)).max(4)
    }

    /// Of those, how many may wait warm between calls; the rest are for
    /// calls in progress.
    pub fn warm_slots(&self) -> usize {
        self.instance_slots() / 2
    }

    /// Calls that may run at once.
    pub fn call_slots(&self) -> usize {
        self.instance_slots() - self.warm_slots()
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
    fn kept_strings_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_KEPT_STRING);
        let kept = cut(&long);
        assert!(kept.len() < MAX_KEPT_STRING + 40, "{}", kept.len());
        assert!(kept.ends_with("bytes cut)"), "{kept}");
    }

    #[test]
    fn slots_follow_the_memory_budget() {
        let limits = Limits {
            memory_bytes: 64 << 20,
            memory_budget: 1 << 30,
            ..Limits::default()
        };
        assert_eq!(limits.instance_slots(), 16);
        assert_eq!(limits.warm_slots() + limits.call_slots(), 16);
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
