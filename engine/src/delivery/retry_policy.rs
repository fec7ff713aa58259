//! When to try a failed delivery again: a schedule of delays between
//! attempts, per endpoint, with jitter, overridden by the endpoint's
//! `Retry-After`.
//!
//! The default follows the Standard Webhooks guidance: an attempt at once,
//! then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (ten
//! attempts over about three days). Each delay is jittered over its whole
//! step ("full jitter" kept monotonic): the n-th delay is drawn uniformly
//! between the previous step's delay and its own, so retries of many
//! deliveries that failed together spread out instead of arriving as a herd,
//! and the schedule never runs backwards.

use std::time::Duration;

/// Delays between attempts; an attempt count beyond them fails the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// At most this many steps in a schedule.
pub const MAX_STEPS: usize = 50;
/// No step is longer than this.
pub const MAX_STEP: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for RetrySchedule {
    fn default() -> RetrySchedule {
        let m = 60;
        let h = 3600;
        RetrySchedule::new(
            [
                5,
                5 * m,
                30 * m,
                2 * h,
                5 * h,
                10 * h,
                14 * h,
                20 * h,
                24 * h,
            ]
            .map(Duration::from_secs)
            .to_vec(),
        )
        .expect("the default schedule is valid")
    }
}

impl RetrySchedule {
    /// A schedule of these delays (between attempts, in order): at most
    /// [`MAX_STEPS`] steps, each at most [`MAX_STEP`], never decreasing.
    pub fn new(delays: Vec<Duration>) -> Result<RetrySchedule, String> {
        if delays.len() > MAX_STEPS {
            return Err(format!("{} steps, the limit is {MAX_STEPS}", delays.len()));
        }
        for (i, d) in delays.iter().enumerate() {
            if *d > MAX_STEP {
                return Err(format!("[{i}]: {d:?} is longer than the limit of 7 days"));
            }
            if i > 0 && *d < delays[i - 1] {
                return Err(format!(
                    "[{i}]: {d:?} is shorter than the step before it; delays never decrease"
                ));
            }
        }
        Ok(RetrySchedule { delays })
    }

    /// Parses `5s,5m,30m` (humantime durations, comma-separated; empty for
    /// "one attempt, no retries").
    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| humantime::parse_duration(s).map_err(|e| format!("[{i}]: {s:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays)
    }

    /// The schedule as stored: a JSON array of milliseconds.
    pub fn to_json(&self) -> String {
        let ms: Vec<u64> = self.delays.iter().map(|d| d.as_millis() as u64).collect();
        serde_json::to_string(&ms).unwrap_or_else(|_| "[]".into())
    }

    /// A stored schedule.
    pub fn from_json(text: &str) -> Result<RetrySchedule, String> {
        let ms: Vec<u64> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        RetrySchedule::new(ms.into_iter().map(Duration::from_millis).collect())
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Attempts in all: the first and one per step.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delay after `failed` attempts of this schedule (1 after the first
    /// attempt failed), or `None` when the schedule is used up. `jitter` in
    /// [0, 1) picks the point within the step. A `Retry-After` (already capped
    /// by the caller) replaces the step's delay but not the count.
    pub fn delay(
        &self,
        failed: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let step = (failed as usize).checked_sub(1)?;
        let this = *self.delays.get(step)?;
        if let Some(after) = retry_after {
            return Some(after);
        }
        let previous = step
            .checked_sub(1)
            .and_then(|i| self.delays.get(i))
            .copied()
            .unwrap_or(Duration::ZERO);
        let spread = this.saturating_sub(previous);
        Some(previous + spread.mul_f64(jitter.clamp(0.0, 1.0)))
    }
}

/// The engine-wide retry policy: the default schedule (endpoints may have
/// their own) and the cap on `Retry-After`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub schedule: RetrySchedule,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            schedule: RetrySchedule::default(),
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after `failed` attempts under `schedule` (the endpoint's, or
    /// the default), honouring a capped `Retry-After`.
    pub fn delay(
        &self,
        schedule: Option<&RetrySchedule>,
        failed: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let schedule = schedule.unwrap_or(&self.schedule);
        schedule.delay(
            failed,
            retry_after.map(|a| a.min(self.max_retry_after)),
            jitter,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> RetrySchedule {
        RetrySchedule::new(v.iter().copied().map(Duration::from_secs).collect()).unwrap()
    }

    #[test]
    fn the_default_spans_about_three_days_in_ten_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 10);
        let total: Duration = s.delays().iter().sum();
        let hours = total.as_secs_f64() / 3600.0;
        assert!((75.0..=77.0).contains(&hours), "{hours} h");
    }

    #[test]
    fn each_delay_falls_within_its_step_and_the_schedule_ends() {
        let s = secs(&[1, 10, 100]);
        let at = |n, j| s.delay(n, None, j).map(|d| d.as_secs_f64());
        assert_eq!(at(1, 0.0), Some(0.0));
        assert_eq!(at(1, 1.0), Some(1.0));
        assert_eq!(at(2, 0.0), Some(1.0));
        assert_eq!(at(2, 0.5), Some(5.5));
        assert_eq!(at(3, 1.0), Some(100.0));
        assert_eq!(at(4, 0.5), None, "three steps, four attempts");
        assert_eq!(at(0, 0.5), None);
    }

    #[test]
    fn retry_after_replaces_the_delay_but_not_the_count() {
        let p = RetryPolicy {
            schedule: secs(&[1, 2]),
            max_retry_after: Duration::from_secs(60),
        };
        let after = Some(Duration::from_secs(30));
        assert_eq!(p.delay(None, 1, after, 0.3), after);
        assert_eq!(
            p.delay(None, 1, Some(Duration::from_secs(1 << 20)), 0.3),
            Some(Duration::from_secs(60)),
            "capped"
        );
        assert_eq!(p.delay(None, 3, after, 0.3), None, "schedule used up");
        let own = secs(&[7]);
        assert_eq!(
            p.delay(Some(&own), 1, None, 1.0),
            Some(Duration::from_secs(7))
        );
        assert_eq!(p.delay(Some(&own), 2, None, 1.0), None);
    }

    #[test]
    fn schedules_parse_round_trip_and_refuse_nonsense() {
        let s = RetrySchedule::parse("100ms, 1s,5m").unwrap();
        assert_eq!(
            s.delays(),
            &[
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(300)
            ]
        );
        assert_eq!(RetrySchedule::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(RetrySchedule::parse("").unwrap().attempts(), 1);
        assert!(RetrySchedule::parse("5m,1s").unwrap_err().contains("[1]"));
        assert!(RetrySchedule::parse("soon").unwrap_err().contains("[0]"));
        assert!(
            RetrySchedule::parse("8days")
                .unwrap_err()
                .contains("7 days")
        );
    }
}
