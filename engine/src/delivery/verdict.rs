//! The engine's standard reading of an HTTP answer, used when a plugin gives
//! no verdict of its own (DESIGN.md, failure handling).

use std::time::Duration;

use crate::plugins::Verdict;

/// 2xx success; 410 disables the endpoint; every other answer is retried on
/// the schedule, honouring `Retry-After`. That includes 3xx (redirects are
/// never followed) and 4xx other than 410: a receiver answering 401 or 404
/// during a deploy must get the message when it is back, as Stripe and Svix
/// do. Only a plugin may declare an answer permanent.
pub fn standard(status: u16, headers: &[(String, String)]) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        410 => Verdict::DisableEndpoint("the endpoint answered 410 Gone".into()),
        _ => match retry_after(headers) {
            Some(after) => Verdict::RetryAfter(after.as_secs().min(u32::MAX as u64) as u32),
            None => Verdict::RetryAfter(0),
        },
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
        for status in [400, 401, 403, 404, 413, 422] {
            assert_eq!(standard(status, &[]), Verdict::RetryAfter(0), "{status}");
        }
        assert_eq!(standard(401, &h("30")), Verdict::RetryAfter(30));
    }

    #[test]
    fn retry_after_as_a_date() {
        let later = chrono::Utc::now() + chrono::Duration::seconds(100);
        let secs = retry_after(&h(&later.to_rfc2822())).unwrap().as_secs();
        assert!((98..=100).contains(&secs), "{secs}");
        assert_eq!(retry_after(&h("soon")), None);
    }
}
