//! Per-endpoint lanes: how many requests an endpoint may have in flight, how
//! fast it may be sent to, and when it must be left alone.
//!
//! The dispatcher owns one [`Lanes`] (no locks: only its loop touches it).
//! A delivery claimed or handed off is offered to its endpoint's lane; the
//! lane starts it when the endpoint has a free slot and a rate token, keeps
//! it in a short queue otherwise, and refuses it when that queue is full or
//! the endpoint is paused for longer than a queue should wait: refused
//! deliveries go back to the store, due when the lane expects room, without
//! using an attempt. Lanes that cannot take more are left out of claims, so
//! a slow or black-holed endpoint holds at most its own slots and queue,
//! never the engine's.
//!
//! Rate limits are a token bucket per endpoint. With several processes on
//! one PostgreSQL database, the dispatcher also books each request in the
//! database (`store::flow`), so the limit holds for all of them. A
//! platform's 429, or a Discord-style `X-RateLimit-Remaining: 0`, pauses the
//! lane until the platform says.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::store::deliveries::Claimed;

/// A rate limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per second, sustained; 0 means unlimited.
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell (at least 1).
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    /// Checks a rate limit from the API; the error names the sub-field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.per_second.is_finite() || !(0.0..=10_000.0).contains(&self.per_second) {
            return Err(("per_second", "must be 0 (unlimited) to 10000".into()));
        }
        if !(1..=10_000).contains(&self.burst) {
            return Err(("burst", "must be 1 to 10000".into()));
        }
        Ok(())
    }

    /// The limit fitting a built-in plugin's platform (INTEGRATIONS.md), or
    /// `None` for plain webhooks and unknown plugins.
    pub fn platform_default(plugin: &str) -> Option<RateLimit> {
        let (per_second, burst) = match plugin {
            // About one message per second per incoming webhook, short bursts tolerated.
            "slack" => (1.0, 3),
            // 5 requests per 2 seconds per webhook.
            "discord" => (2.5, 5),
            // At most 4 requests per second per URL.
            "teams" => (4.0, 4),
            _ => return None,
        };
        Some(RateLimit { per_second, burst })
    }
}

/// The limits of one endpoint's lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneLimits {
    pub max_in_flight: usize,
    pub rate: Option<RateLimit>,
}

/// What became of an offered delivery.
#[derive(Debug)]
pub enum Offer {
    /// Start it now.
    Start(Claimed),
    /// It waits in its lane's queue.
    Queued,
    /// The lane cannot take it: give it back, due at this time (ms).
    Refused(Claimed, i64),
}

struct Lane {
    limits: LaneLimits,
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    /// The endpoint's breaker is open until then (ms): nothing goes, nothing waits.
    blocked_until: Option<(Instant, i64)>,
    waiting: VecDeque<Claimed>,
    /// Deliveries of this endpoint are due in the store that the lane had no
    /// room for (it refused some, or ingest stored them unleased while it
    /// was full): claim for it again as it drains.
    backlog: bool,
}

impl Lane {
    fn new(limits: LaneLimits, now: Instant) -> Lane {
        Lane {
            limits,
            in_flight: 0,
            tokens: limits.rate.map_or(0.0, |r| r.burst as f64),
            refilled: now,
            paused_until: None,
            blocked_until: None,
            waiting: VecDeque::new(),
            backlog: false,
        }
    }

    /// The breaker's block, if it still holds at `now` (ms to be due again).
    fn blocked(&mut self, now: Instant) -> Option<i64> {
        match self.blocked_until {
            Some((until, due)) if until > now => Some(due),
            Some(_) => {
                self.blocked_until = None;
                None
            }
            None => None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.limits.rate.filter(|r| r.per_second > 0.0) {
            let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst as f64);
        }
        self.refilled = now;
    }

    fn limited(&self) -> bool {
        self.limits.rate.is_some_and(|r| r.per_second > 0.0)
    }

    /// When this lane may start one more, if not now (`None` = now).
    fn blocked_until(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Some(until);
            }
            self.paused_until = None;
        }
        if !self.limited() {
            return None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            return None;
        }
        let rate = self.limits.rate.map_or(1.0, |r| r.per_second);
        Some(now + Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    fn can_start(&mut self, now: Instant) -> bool {
        self.in_flight < self.limits.max_in_flight && self.blocked_until(now).is_none()
    }

    fn start(&mut self) {
        self.in_flight += 1;
        if self.limited() {
            self.tokens -= 1.0;
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.waiting.is_empty()
            && self.paused_until.is_none()
            && self.blocked_until.is_none()
    }
}

/// Every endpoint's lane in this process.
pub struct Lanes {
    lanes: HashMap<Arc<str>, Lane>,
    /// Deliveries a lane may keep waiting before it refuses more.
    queue_cap: usize,
    /// A pause longer than this refuses deliveries instead of queueing them.
    max_queued_pause: Duration,
    waiting_total: usize,
}

impl Lanes {
    pub fn new(queue_cap: usize) -> Lanes {
        Lanes {
            lanes: HashMap::new(),
            queue_cap: queue_cap.max(1),
            max_queued_pause: Duration::from_secs(2),
            waiting_total: 0,
        }
    }

    /// Deliveries waiting in lanes.
    pub fn waiting(&self) -> usize {
        self.waiting_total
    }

    /// Offers a delivery to its endpoint's lane.
    pub fn offer(&mut self, job: Claimed, limits: LaneLimits, now: Instant) -> Offer {
        let max_pause = self.max_queued_pause;
        // Look up before inserting: the key is allocated once per endpoint,
        // not once per delivery.
        if !self.lanes.contains_key(job.endpoint.id.as_str()) {
            self.lanes
                .insert(job.endpoint.id.as_str().into(), Lane::new(limits, now));
        }
        let lane = self
            .lanes
            .get_mut(job.endpoint.id.as_str())
            .expect("inserted above");
        lane.limits = limits;
        let queue_cap = self.queue_cap.max(2 * limits.max_in_flight);
        if let Some(due) = lane.blocked(now) {
            // The breaker is open: back to the store until its probe is due
            // (the claim decides who probes).
            return Offer::Refused(job, due);
        }
        if lane.waiting.is_empty() && lane.can_start(now) {
            lane.start();
            return Offer::Start(job);
        }
        let wait = lane
            .blocked_until(now)
            .map(|t| t.saturating_duration_since(now));
        if lane.waiting.len() >= queue_cap || wait.is_some_and(|w| w > max_pause) {
            // Due again when this lane should have room: after its pause, or
            // after the queue ahead of it has drained at its rate. A lane that
            // is only full is left out of claims until it has room, so its
            // deliveries may be due at once.
            let ahead = lane.waiting.len() as f64 + 1.0;
            let drain = lane
                .limits
                .rate
                .filter(|r| r.per_second > 0.0)
                .map_or(Duration::ZERO, |r| {
                    Duration::from_secs_f64(ahead / r.per_second)
                });
            let after = wait.unwrap_or_default().max(drain);
            let due = crate::id::now_ms() + after.as_millis() as i64;
            lane.backlog = true;
            return Offer::Refused(job, due);
        }
        lane.waiting.push_back(job);
        self.waiting_total += 1;
        Offer::Queued
    }

    /// A delivery of `endpoint` finished. Returns true when its lane has
    /// drained to half its queue and the store holds more for it: time to
    /// claim again.
    pub fn finished(&mut self, endpoint: &str) -> bool {
        let queue_cap = self.queue_cap;
        match self.lanes.get_mut(endpoint) {
            Some(lane) => {
                lane.in_flight = lane.in_flight.saturating_sub(1);
                let cap = queue_cap.max(2 * lane.limits.max_in_flight);
                lane.backlog && lane.waiting.len() <= cap / 2
            }
            None => false,
        }
    }

    /// Marks lanes whose endpoints may have deliveries waiting in the store
    /// (ingest skipped them while they were full).
    pub fn mark_backlog(&mut self, endpoints: &[String]) {
        for id in endpoints {
            if let Some(lane) = self.lanes.get_mut(id.as_str()) {
                lane.backlog = true;
            }
        }
    }

    /// A claim that left out `excluded` took `taken` deliveries of each
    /// endpoint, out of at most `per_endpoint`: a lane it looked at that got
    /// fewer has nothing more due in the store.
    pub fn claimed(
        &mut self,
        taken: &std::collections::HashMap<&str, usize>,
        per_endpoint: usize,
        excluded: &[String],
    ) {
        for (id, lane) in self.lanes.iter_mut() {
            if lane.backlog
                && taken.get(&**id).copied().unwrap_or(0) < per_endpoint
                && !excluded.iter().any(|e| **e == **id)
            {
                lane.backlog = false;
            }
        }
    }

    /// Leaves `endpoint` alone until `until` (a 429, rate-limit headers, an
    /// open breaker).
    pub fn pause(&mut self, endpoint: &str, until: Instant) {
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            lane.paused_until = Some(lane.paused_until.map_or(until, |p| p.max(until)));
        } else {
            let mut lane = Lane::new(
                LaneLimits {
                    max_in_flight: 1,
                    rate: None,
                },
                Instant::now(),
            );
            lane.paused_until = Some(until);
            self.lanes.insert(endpoint.into(), lane);
        }
    }

    /// The endpoint's breaker opened: nothing of it goes until `until` (due
    /// again at `due`, ms). Returns what was waiting, to give back.
    pub fn block(&mut self, endpoint: &str, until: Instant, due: i64) -> Vec<Claimed> {
        let lane = self.lanes.entry(endpoint.into()).or_insert_with(|| {
            Lane::new(
                LaneLimits {
                    max_in_flight: 1,
                    rate: None,
                },
                until,
            )
        });
        lane.blocked_until = Some((until, due));
        let back: Vec<Claimed> = lane.waiting.drain(..).collect();
        self.waiting_total -= back.len();
        back
    }

    /// Up to `room` waiting deliveries that may start now, and the earliest
    /// time another may (for the dispatcher's timer).
    pub fn ready(&mut self, now: Instant, mut room: usize) -> (Vec<Claimed>, Option<Instant>) {
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        for lane in self.lanes.values_mut() {
            while room > 0 && !lane.waiting.is_empty() {
                if lane.in_flight >= lane.limits.max_in_flight {
                    break; // woken again when one finishes
                }
                if let Some(at) = lane.blocked_until(now) {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    break;
                }
                lane.start();
                if let Some(job) = lane.waiting.pop_front() {
                    out.push(job);
                    room -= 1;
                }
            }
        }
        self.waiting_total -= out.len();
        (out, next)
    }

    /// How many deliveries a claim may take for any one endpoint: the most
    /// room any lane has left (in flight and waiting), and at least the
    /// default in-flight cap for endpoints without a lane yet.
    pub fn per_endpoint(&self, default_max_in_flight: usize) -> usize {
        self.lanes
            .values()
            .map(|l| {
                let capacity =
                    l.limits.max_in_flight + self.queue_cap.max(2 * l.limits.max_in_flight);
                capacity.saturating_sub(l.in_flight + l.waiting.len())
            })
            .fold(default_max_in_flight.max(1), usize::max)
    }

    /// Endpoints whose lanes cannot take another delivery now: claims skip them.
    pub fn saturated(&mut self, now: Instant) -> Vec<String> {
        let queue_cap = self.queue_cap;
        self.lanes
            .iter_mut()
            .filter_map(|(id, lane)| {
                // Full: its queue cannot take more. A lane at its cap with a
                // few waiting is not full: a claim may top its queue up.
                let full = lane.blocked(now).is_some()
                    || lane.waiting.len() >= queue_cap.max(2 * lane.limits.max_in_flight)
                    || lane
                        .paused_until
                        .is_some_and(|p| p > now + Duration::from_millis(100));
                full.then(|| id.to_string())
            })
            .collect()
    }

    /// Takes every waiting delivery (shutdown, or leases about to run out).
    pub fn drain(&mut self) -> Vec<Claimed> {
        self.waiting_total = 0;
        self.lanes
            .values_mut()
            .flat_map(|l| l.waiting.drain(..))
            .collect()
    }

    /// Forgets idle lanes, so memory follows the endpoints in use.
    pub fn forget_idle(&mut self) {
        self.lanes.retain(|_, lane| !lane.idle());
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::endpoints::Endpoint;
    use crate::store::events::Event;

    fn job(endpoint: &str, n: usize) -> Claimed {
        let endpoint = Endpoint::new(
            endpoint.into(),
            "app".into(),
            "http://127.0.0.1:9/".into(),
            String::new(),
            "webhook".into(),
            "{}".into(),
            "[]".into(),
            "whsec_x".into(),
            0,
        );
        Claimed {
            id: format!("msg_{n}"),
            token: "t/1".into(),
            lease_until: i64::MAX,
            attempts: 0,
            schedule_start: 0,
            requests_done: 0,
            probe: false,
            event: Arc::new(Event {
                id: "evt".into(),
                app_id: "app".into(),
                source: "s".into(),
                ce_id: "1".into(),
                event_type: "t".into(),
                subject: None,
                time: String::new(),
                data: "null".into(),
                extensions: "{}".into(),
                received_at: 0,
            }),
            endpoint: Arc::new(endpoint),
        }
    }

    const CAP2: LaneLimits = LaneLimits {
        max_in_flight: 2,
        rate: None,
    };

    #[test]
    fn an_endpoint_gets_its_slots_then_its_queue_then_refusals() {
        let mut lanes = Lanes::new(2);
        let now = Instant::now();
        assert!(matches!(
            lanes.offer(job("a", 0), CAP2, now),
            Offer::Start(_)
        ));
        assert!(matches!(
            lanes.offer(job("a", 1), CAP2, now),
            Offer::Start(_)
        ));
        // The queue holds twice the in-flight cap (at least the configured 2).
        for n in 2..6 {
            assert!(matches!(lanes.offer(job("a", n), CAP2, now), Offer::Queued));
        }
        assert!(matches!(
            lanes.offer(job("a", 6), CAP2, now),
            Offer::Refused(..)
        ));
        // Another endpoint is not affected.
        assert!(matches!(
            lanes.offer(job("b", 7), CAP2, now),
            Offer::Start(_)
        ));
        assert_eq!(lanes.saturated(now), vec!["a".to_string()]);
        assert_eq!(lanes.ready(now, 10).0.len(), 0, "a is at its cap");
        assert!(!lanes.finished("a"), "four still waiting: no claim yet");
        let (ready, _) = lanes.ready(now, 10);
        assert_eq!(
            ready.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["msg_2"]
        );
        assert_eq!(lanes.waiting(), 3);
        assert!(lanes.saturated(now).is_empty(), "room in the queue again");
        // A claim takes at most the most room a lane has left: a has
        // 2 + 4 − 2 − 3 = 1, b has 2 + 4 − 1 = 5.
        assert_eq!(lanes.per_endpoint(1), 5);
        assert_eq!(lanes.per_endpoint(8), 8, "at least the default cap");
        // Drained to half its queue with deliveries left in the store: claim.
        lanes.ready(now, 10);
        assert!(!lanes.finished("a"));
        lanes.ready(now, 10);
        assert!(lanes.finished("a"), "two waiting, a backlog: claim now");
    }

    #[test]
    fn a_rate_limit_spaces_starts_and_says_when_the_next_may_go() {
        let limits = LaneLimits {
            max_in_flight: 10,
            rate: Some(RateLimit {
                per_second: 2.0,
                burst: 2,
            }),
        };
        let mut lanes = Lanes::new(10);
        let t0 = Instant::now();
        assert!(matches!(
            lanes.offer(job("a", 0), limits, t0),
            Offer::Start(_)
        ));
        assert!(matches!(
            lanes.offer(job("a", 1), limits, t0),
            Offer::Start(_)
        ));
        assert!(matches!(
            lanes.offer(job("a", 2), limits, t0),
            Offer::Queued
        ));
        let (ready, next) = lanes.ready(t0, 10);
        assert!(ready.is_empty());
        let next = next.expect("a time for the next token");
        assert!(
            next > t0 && next <= t0 + Duration::from_millis(500),
            "{:?}",
            next - t0
        );
        let (ready, _) = lanes.ready(t0 + Duration::from_millis(500), 10);
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn a_long_pause_refuses_with_the_time_it_ends() {
        let mut lanes = Lanes::new(10);
        let now = Instant::now();
        assert!(matches!(
            lanes.offer(job("a", 0), CAP2, now),
            Offer::Start(_)
        ));
        lanes.pause("a", now + Duration::from_secs(30));
        let before = crate::id::now_ms();
        match lanes.offer(job("a", 1), CAP2, now) {
            Offer::Refused(_, due) => assert!(due >= before + 29_000, "{}", due - before),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A short pause queues instead.
        lanes.pause("b", now + Duration::from_millis(500));
        assert!(matches!(lanes.offer(job("b", 2), CAP2, now), Offer::Queued));
    }

    #[test]
    fn an_open_breaker_sends_back_what_waits_and_refuses_until_it_ends() {
        let mut lanes = Lanes::new(10);
        let now = Instant::now();
        let one = LaneLimits {
            max_in_flight: 1,
            rate: None,
        };
        assert!(matches!(
            lanes.offer(job("a", 0), one, now),
            Offer::Start(_)
        ));
        assert!(matches!(lanes.offer(job("a", 1), one, now), Offer::Queued));
        let back = lanes.block("a", now + Duration::from_millis(300), 12_345);
        assert_eq!(back.len(), 1);
        assert_eq!(lanes.waiting(), 0);
        assert!(matches!(
            lanes.offer(job("a", 2), one, now),
            Offer::Refused(_, 12_345)
        ));
        assert_eq!(lanes.saturated(now), vec!["a".to_string()]);
        lanes.finished("a");
        let later = now + Duration::from_millis(300);
        assert!(matches!(
            lanes.offer(job("a", 3), one, later),
            Offer::Start(_)
        ));
    }

    #[test]
    fn platform_defaults_and_checks() {
        assert_eq!(
            RateLimit::platform_default("slack").unwrap().per_second,
            1.0
        );
        assert_eq!(RateLimit::platform_default("discord").unwrap().burst, 5);
        assert!(RateLimit::platform_default("webhook").is_none());
        assert!(
            RateLimit {
                per_second: -1.0,
                burst: 1
            }
            .check()
            .is_err()
        );
        assert_eq!(
            RateLimit {
                per_second: 1.0,
                burst: 0
            }
            .check()
            .unwrap_err()
            .0,
            "burst"
        );
    }
}
