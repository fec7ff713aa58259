//! The engine's standard reading of an HTTP answer, used when a plugin gives
//! no verdict of its own (DESIGN.md, failure handling).

use std::time::Duration;

use crate::plugins::Verdict;

/// 2xx success; 408, 425, 429 and 5xx retried (honouring `Retry-After`);
/// 410 disables the endpoint; other 4xx fail for good. Redirects are not
/// followed and are retried: the receiver may fix its URL, and dropping is
/// worse than retrying.
pub fn standard(status: u16, headers: &[(String, String)]) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        410 => Verdict::DisableEndpoint("the endpoint answered 410 Gone".into()),
        408 | 425 | 429 | 500..=599 => match retry_after(headers) {
            Some(after) => Verdict::RetryAfter(after.as_secs().min(u32::MAX as u64) as u32),
            None => Verdict::RetryAfter(0),
        },
        300..=399 => Verdict::RetryAfter(0),
        _ => Verdict::Fail(format!("the endpoint answered {status}")),
    }
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let value = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> Vec<(String, String)> {
        vec![("retry-after".into(), v.into())]
    }

    #[test]
    fn status_classes() {
        assert_eq!(standard(200, &[]), Verdict::Success);
        assert_eq!(standard(204, &[]), Verdict::Success);
        assert_eq!(standard(500, &[]), Verdict::RetryAfter(0));
        assert_eq!(standard(503, &h("7")), Verdict::RetryAfter(7));
        assert_eq!(standard(429, &h("120")), Verdict::RetryAfter(120));
        assert_eq!(standard(408, &[]), Verdict::RetryAfter(0));
        assert_eq!(standard(425, &[]), Verdict::RetryAfter(0));
        assert_eq!(standard(301, &[]), Verdict::RetryAfter(0));
        assert!(matches!(standard(410, &[]), Verdict::DisableEndpoint(_)));
        assert!(matches!(standard(400, &[]), Verdict::Fail(m) if m.contains("400")));
        assert!(matches!(standard(404, &[]), Verdict::Fail(_)));
    }

    #[test]
    fn retry_after_as_a_date() {
        let later = chrono::Utc::now() + chrono::Duration::seconds(100);
        let secs = retry_after(&h(&later.to_rfc2822())).unwrap().as_secs();
        assert!((98..=100).contains(&secs), "{secs}");
        assert_eq!(retry_after(&h("soon")), None);
    }
}
