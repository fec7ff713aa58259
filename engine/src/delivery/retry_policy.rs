//! When to try a failed delivery again: bounded exponential backoff with
//! jitter, overridden by the endpoint's `Retry-After`. The full per-endpoint
//! policy (schedules, breaker, auto-disable) builds on this.

use std::time::Duration;

/// The retry schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the first retry; each later one doubles it.
    pub base: Duration,
    /// No delay exceeds this.
    pub max_delay: Duration,
    /// Attempts in all (the first included); then the delivery fails.
    pub max_attempts: u32,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        // 5 s, 10 s, 20 s … capped at 1 h: 12 attempts span about 2.5 hours.
        RetryPolicy {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            max_attempts: 12,
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failed attempts, or `None` when they are
    /// used up. `jitter` in [0, 1) spreads retries by ±20% so that endpoints
    /// coming back are not hit by a thundering herd.
    pub fn delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        if let Some(after) = retry_after {
            return Some(after.min(self.max_retry_after));
        }
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max_delay);
        Some(raw.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_then_gives_up() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_attempts: 6,
            ..RetryPolicy::default()
        };
        let mid = |n| p.delay(n, None, 0.5).map(|d| d.as_secs_f64());
        assert_eq!(mid(1), Some(1.0));
        assert_eq!(mid(2), Some(2.0));
        assert_eq!(mid(3), Some(4.0));
        assert_eq!(mid(4), Some(8.0));
        assert_eq!(mid(5), Some(10.0));
        assert_eq!(mid(6), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_secs(6)));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(90)), 0.3),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(10 << 20)), 0.3),
            Some(p.max_retry_after)
        );
        assert_eq!(
            p.delay(p.max_attempts, Some(Duration::from_secs(1)), 0.3),
            None
        );
    }
}
