//! Endpoint health: the circuit breaker, the failure streak, auto-disable,
//! and the operational events they emit.
//!
//! The state lives in the store (`endpoints.breaker_*`, `consecutive_failures`,
//! `failing_since`) and moves only inside store transactions: [`gate`] runs
//! in the claim's transaction and [`record`] in the completions'. So the
//! state survives restarts, every process that shares the database agrees
//! on it, and an operational event is committed together with the change
//! that caused it (an outbox, like every other event).
//!
//! The breaker: closed → open after `threshold` consecutive failures → after
//! a cool-down that doubles with each failed probe (up to a cap), one probe
//! delivery goes (half-open) → closed on its success, open again on its
//! failure. While it is open the endpoint's deliveries are postponed to the
//! probe without using attempts; when it closes they are all due at once.
//!
//! What counts: a failure is an answer other than 2xx (or none at all) that
//! is retried; 429 and the plugin's own errors are neutral (the endpoint is
//! alive, or was never reached); 410 and a plugin's "disable" verdict disable
//! the endpoint at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::id::{new_id, rfc3339};
use crate::store::deliveries::{self, Claimed, Completion, EndpointSignal};
use crate::store::endpoints::{self, Endpoint, Health};
use crate::store::events::{self, NewEvent};
use crate::store::sealed::Sealer;
use crate::store::{Conn, StoreError};

/// The app that operational events are emitted into. Operators add
/// endpoints to it (with any plugin) to route them.
pub const SYSTEM_APP: &str = "app_system";
/// The `source` of operational events.
pub const SYSTEM_SOURCE: &str = "hookline";

/// Operational event types.
pub const FAILING: &str = "hookline.endpoint.failing";
pub const DISABLED: &str = "hookline.endpoint.disabled";
pub const RECOVERED: &str = "hookline.endpoint.recovered";

/// Breaker states, as stored in `endpoints.breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    /// A probe is in flight; nothing else goes until it is answered.
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_i16(v: i16) -> BreakerState {
        match v {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The health policy, engine-wide.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// Consecutive failures that open the breaker (and emit `failing`).
    pub threshold: u32,
    /// The first cool-down; each failed probe doubles it.
    pub cooldown: Duration,
    /// The longest cool-down.
    pub max_cooldown: Duration,
    /// How long a probe may take before another may go (its lease).
    pub probe_window: Duration,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
}

impl Default for HealthPolicy {
    fn default() -> HealthPolicy {
        HealthPolicy {
            threshold: 5,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(30 * 60),
            probe_window: Duration::from_secs(120),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

impl HealthPolicy {
    /// The cool-down after the `trips`-th opening in a row.
    pub fn cooldown(&self, trips: i32) -> Duration {
        let doublings = trips.saturating_sub(1).clamp(0, 20) as u32;
        self.cooldown
            .saturating_mul(1u32 << doublings)
            .min(self.max_cooldown)
    }
}

/// What the breaker lets through now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Closed: everything goes.
    Go,
    /// One delivery goes as the probe; the rest wait until `until`.
    Probe { health: Health, until: i64 },
    /// Nothing goes before this time.
    Wait(i64),
}

/// What the breaker lets through at `now`.
pub fn admit(health: &Health, now: i64, policy: &HealthPolicy) -> Admit {
    let retry_at = health.breaker_retry_at.unwrap_or(0);
    match BreakerState::from_i16(health.breaker_state) {
        BreakerState::Closed => Admit::Go,
        // Open and cooling down, or a probe still within its window.
        BreakerState::Open | BreakerState::HalfOpen if retry_at > now => Admit::Wait(retry_at),
        // Cool-down over, or the last probe was lost (its process died): probe.
        BreakerState::Open | BreakerState::HalfOpen => {
            let until = now + policy.probe_window.as_millis() as i64;
            let mut health = health.clone();
            health.breaker_state = BreakerState::HalfOpen as i16;
            health.breaker_retry_at = Some(until);
            Admit::Probe { health, until }
        }
    }
}

/// What one outcome did to an endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The breaker opened; `first` when this streak had not opened it yet.
    Opened { first: bool, retry_at: i64 },
    /// A success after the breaker had opened in this streak.
    Recovered,
    /// Failing for longer than the policy allows.
    AutoDisable(String),
}

/// Applies one signal to `health`; returns what changed state.
pub fn step(
    health: &mut Health,
    signal: &EndpointSignal,
    error: Option<&str>,
    now: i64,
    policy: &HealthPolicy,
) -> Option<Transition> {
    match signal {
        EndpointSignal::Success => {
            let was_failing = health.breaker_trips > 0;
            *health = Health {
                last_success_at: Some(now),
                last_failure_at: health.last_failure_at,
                last_error: health.last_error.take(),
                ..Health::default()
            };
            was_failing.then_some(Transition::Recovered)
        }
        EndpointSignal::Failure => {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            let since = *health.failing_since.get_or_insert(now);
            health.last_failure_at = Some(now);
            health.last_error = error.map(|e| cut(e, 512));
            if now - since >= policy.disable_after.as_millis() as i64 {
                // Disabled, the endpoint gets nothing until it is enabled
                // (which resets its health): no probe is due.
                health.breaker_state = BreakerState::Open as i16;
                health.breaker_retry_at = None;
                return Some(Transition::AutoDisable(format!(
                    "failing without a success since {} ({} consecutive failures)",
                    rfc3339(since),
                    health.consecutive_failures
                )));
            }
            let state = BreakerState::from_i16(health.breaker_state);
            let opens = match state {
                BreakerState::Closed => health.consecutive_failures >= policy.threshold as i32,
                // The probe failed.
                BreakerState::HalfOpen => true,
                // A straggler that was in flight when it opened: stay open.
                BreakerState::Open => false,
            };
            if !opens {
                return None;
            }
            let first = health.breaker_trips == 0;
            health.breaker_trips = health.breaker_trips.saturating_add(1);
            let retry_at = now + policy.cooldown(health.breaker_trips).as_millis() as i64;
            health.breaker_state = BreakerState::Open as i16;
            health.breaker_opened_at = Some(now);
            health.breaker_retry_at = Some(retry_at);
            Some(Transition::Opened { first, retry_at })
        }
        EndpointSignal::Neutral | EndpointSignal::Disable(_) => None,
    }
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Applies the breaker to freshly claimed deliveries, in the claim's
/// transaction: deliveries of an endpoint whose breaker is open are given
/// back until its probe is due, and when it is due one of them becomes the
/// probe. Returns the deliveries that may go.
pub fn gate(
    conn: &mut Conn,
    claimed: Vec<Claimed>,
    now: i64,
    policy: &HealthPolicy,
) -> Result<Vec<Claimed>, StoreError> {
    if claimed
        .iter()
        .all(|c| c.endpoint.health.breaker_state == BreakerState::Closed as i16)
    {
        return Ok(claimed);
    }
    let mut go = Vec::with_capacity(claimed.len());
    let mut back: Vec<(String, Arc<str>, i64)> = Vec::new();
    // Decisions per endpoint, taken once per claim.
    let mut decided: Vec<(String, Admit)> = Vec::new();
    for mut job in claimed {
        let endpoint = job.endpoint.clone();
        if endpoint.health.breaker_state == BreakerState::Closed as i16 {
            go.push(job);
            continue;
        }
        let position = decided.iter().position(|(id, _)| *id == endpoint.id);
        let decision = match position {
            Some(i) => match &decided[i].1 {
                // The probe was taken by an earlier delivery of this claim.
                Admit::Probe { until, .. } => Admit::Wait(*until),
                other => other.clone(),
            },
            None => {
                let decision = admit(&endpoint.health.clone(), now, policy);
                if let Admit::Probe { health, .. } = &decision {
                    endpoints::set_health(conn, &endpoint.id, health)?;
                    tracing::info!(endpoint = %endpoint.id, delivery = %job.id, "breaker half-open: probing");
                }
                decided.push((endpoint.id.clone(), decision.clone()));
                decision
            }
        };
        match decision {
            Admit::Go => go.push(job),
            Admit::Probe { .. } => {
                job.probe = true;
                go.push(job);
            }
            Admit::Wait(until) => back.push((job.id.clone(), job.token.clone(), until)),
        }
    }
    for (id, token, until) in &back {
        deliveries::give_back(conn, token, &[(id.as_str(), *until)])?;
    }
    Ok(go)
}

/// What recording outcomes asks of the dispatcher.
#[derive(Debug, Default)]
pub struct Effects {
    /// Endpoints whose breaker opened, and until when nothing goes.
    pub blocked: Vec<(String, i64)>,
    /// Deliveries became due now (recovered endpoints, new operational
    /// events): claim again.
    pub wake: bool,
}

/// Records the health effects of completed deliveries in their transaction:
/// moves breakers, disables endpoints (holding their deliveries), and emits
/// operational events.
pub fn record(
    conn: &mut Conn,
    sealer: &Sealer,
    done: &[Completion],
    now: i64,
    policy: &HealthPolicy,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    let mut ids: Vec<&str> = done
        .iter()
        .filter(|c| !matches!(c.signal, EndpointSignal::Neutral))
        .map(|c| c.endpoint_id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(effects);
    }
    ids.sort_unstable();
    ids.dedup();
    // Endpoint rows are written in id order: processes sharing a PostgreSQL
    // database then lock them in the same order, and cannot deadlock on them.
    let mut rows = endpoints::by_ids(conn, sealer, &ids)?;
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    for endpoint in rows {
        let before = endpoint.health.clone();
        let mut health = before.clone();
        let mut transitions = Vec::new();
        let mut disable = None;
        for c in done.iter().filter(|c| c.endpoint_id == endpoint.id) {
            if let EndpointSignal::Disable(reason) = &c.signal {
                disable = Some(reason.clone());
                continue;
            }
            if let Some(t) = step(&mut health, &c.signal, c.last_error.as_deref(), now, policy) {
                if let Transition::AutoDisable(reason) = &t {
                    disable = Some(reason.clone());
                }
                transitions.push(t);
            }
        }
        if health != before {
            endpoints::set_health(conn, &endpoint.id, &health)?;
        }
        for t in &transitions {
            match t {
                Transition::Opened { first, retry_at } => {
                    deliveries::postpone_for_endpoint(conn, &endpoint.id, *retry_at)?;
                    effects.blocked.push((endpoint.id.clone(), *retry_at));
                    tracing::warn!(endpoint = %endpoint.id, failures = health.consecutive_failures, retry_at = %rfc3339(*retry_at), "breaker open");
                    if *first {
                        emit(conn, sealer, FAILING, &endpoint, &health, None, now)?;
                        effects.wake = true;
                    }
                }
                Transition::Recovered => {
                    tracing::info!(endpoint = %endpoint.id, "breaker closed: endpoint recovered");
                    deliveries::due_now_for_endpoint(conn, &endpoint.id, now)?;
                    emit(conn, sealer, RECOVERED, &endpoint, &health, None, now)?;
                    effects.wake = true;
                }
                Transition::AutoDisable(_) => {}
            }
        }
        if let Some(reason) = disable
            && endpoints::disable(conn, &endpoint.id, &reason, now)?
        {
            tracing::warn!(endpoint = %endpoint.id, %reason, "endpoint disabled");
            emit(
                conn,
                sealer,
                DISABLED,
                &endpoint,
                &health,
                Some(&reason),
                now,
            )?;
            effects.wake = true;
        }
    }
    Ok(effects)
}

/// Emits an operational event about `endpoint` into the system app. Events
/// about the system app's own endpoints are not emitted: they would be sent
/// through the endpoint that is failing.
pub fn emit(
    conn: &mut Conn,
    sealer: &Sealer,
    kind: &str,
    endpoint: &Endpoint,
    health: &Health,
    reason: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    if endpoint.app_id == SYSTEM_APP {
        return Ok(());
    }
    // Never the URL: chat webhook URLs are credentials.
    let data = json!({
        "endpoint_id": endpoint.id,
        "app_id": endpoint.app_id,
        "description": endpoint.description,
        "plugin": endpoint.plugin,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": health.failing_since.map(rfc3339),
        "last_success_at": health.last_success_at.map(rfc3339),
        "last_error": health.last_error,
        "breaker": BreakerState::from_i16(health.breaker_state).name(),
        "breaker_retry_at": health.breaker_retry_at.map(rfc3339),
        "reason": reason,
    });
    let event = NewEvent {
        source: SYSTEM_SOURCE.into(),
        ce_id: new_id("sys"),
        event_type: kind.into(),
        subject: Some(endpoint.id.clone()),
        time: rfc3339(now),
        data: data.to_string(),
        extensions: "{}".into(),
    };
    events::ingest(conn, sealer, SYSTEM_APP, vec![event], now, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            threshold: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(35),
            probe_window: Duration::from_secs(5),
            disable_after: Duration::from_secs(1000),
        }
    }

    fn fail(h: &mut Health, now: i64) -> Option<Transition> {
        step(h, &EndpointSignal::Failure, Some("500"), now, &policy())
    }

    #[test]
    fn opens_after_the_threshold_probes_and_closes_on_success() {
        let p = policy();
        let mut h = Health::default();
        assert_eq!(fail(&mut h, 1_000), None);
        assert_eq!(fail(&mut h, 2_000), None);
        assert_eq!(
            fail(&mut h, 3_000),
            Some(Transition::Opened {
                first: true,
                retry_at: 13_000
            })
        );
        assert_eq!(admit(&h, 12_999, &p), Admit::Wait(13_000));
        let Admit::Probe { health, until } = admit(&h, 13_000, &p) else {
            panic!("expected a probe")
        };
        assert_eq!(until, 18_000);
        assert_eq!(
            admit(&health, 14_000, &p),
            Admit::Wait(18_000),
            "one probe at a time"
        );
        h = health;
        // The probe fails: open again with a doubled cool-down.
        assert_eq!(
            fail(&mut h, 14_000),
            Some(Transition::Opened {
                first: false,
                retry_at: 34_000
            })
        );
        // The cool-down is capped.
        h.breaker_state = BreakerState::HalfOpen as i16;
        assert_eq!(
            fail(&mut h, 40_000),
            Some(Transition::Opened {
                first: false,
                retry_at: 75_000
            })
        );
        assert_eq!(
            step(&mut h, &EndpointSignal::Success, None, 80_000, &p),
            Some(Transition::Recovered)
        );
        assert_eq!(
            BreakerState::from_i16(h.breaker_state),
            BreakerState::Closed
        );
        assert_eq!(h.consecutive_failures, 0);
        assert_eq!(h.failing_since, None);
        assert_eq!(admit(&h, 80_001, &p), Admit::Go);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_its_window() {
        let p = policy();
        let h = Health {
            breaker_state: BreakerState::HalfOpen as i16,
            breaker_retry_at: Some(5_000),
            breaker_trips: 1,
            ..Health::default()
        };
        assert_eq!(admit(&h, 4_000, &p), Admit::Wait(5_000));
        assert!(matches!(
            admit(&h, 5_000, &p),
            Admit::Probe { until: 10_000, .. }
        ));
    }

    #[test]
    fn neutral_signals_change_nothing_and_success_without_trips_is_quiet() {
        let p = policy();
        let mut h = Health::default();
        fail(&mut h, 1);
        let before = h.clone();
        assert_eq!(step(&mut h, &EndpointSignal::Neutral, None, 2, &p), None);
        assert_eq!(h, before);
        assert_eq!(step(&mut h, &EndpointSignal::Success, None, 3, &p), None);
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn failing_past_the_window_disables() {
        let mut h = Health::default();
        fail(&mut h, 0);
        assert!(matches!(
            fail(&mut h, 999_000),
            None | Some(Transition::Opened { .. })
        ));
        assert!(
            matches!(fail(&mut h, 1_000_000), Some(Transition::AutoDisable(r)) if r.contains("failing"))
        );
    }
}
