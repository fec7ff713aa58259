//! Quarantine: a circuit breaker per plugin version and app.
//!
//! A guest fault (a trap, the deadline, the CPU budget, the memory cap, an
//! output the host refuses, `exit`) counts against the app whose call
//! faulted; a plugin's own error answer (`bad-config`, `bad-event`) and an
//! endpoint's failure do not. After `quarantine_after` faults in a row the
//! breaker opens for that app only, so one tenant's events cannot take a
//! plugin away from everyone. After the cool-down one call is let through as
//! a probe: success closes the breaker, a fault opens it again for twice as
//! long (up to 16 times the cool-down). An operator can lift it, and loading
//! the plugin file again (a new or the same build) starts a version with
//! every breaker closed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a breaker lets a caller do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Half-open: this call is the probe.
    Probe,
    /// Open, or a probe is out: wait until about `until_ms` (unix ms).
    Wait { until_ms: i64, reason: String },
}

/// What a call was admitted as, handed back with its outcome: only the
/// probe's outcome moves a half-open breaker, and an outcome from before the
/// breaker last opened moves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

/// A change that deliveries waiting on a breaker care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Opened for `app` until `until_ms`: its calls wait, then one probes.
    Opened { app: String, until_ms: i64 },
    /// Closed for `app` (a probe succeeded, or an operator lifted it).
    Closed { app: String },
}

/// One app's breaker, as `GET /v1/plugins` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppView {
    pub app_id: String,
    /// "closed", "open" or "half_open".
    pub state: &'static str,
    /// Faults in a row now.
    pub consecutive_faults: u32,
    /// Faults since the version was loaded.
    pub faults: u64,
    /// Times it opened.
    pub opened: u32,
    /// The fault that opened it, or the last fault.
    pub reason: Option<String>,
    /// When the next probe may go (unix ms), while open.
    pub probe_at_ms: Option<i64>,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant, until_ms: i64 },
    HalfOpen { since: Instant },
}

#[derive(Debug)]
struct Breaker {
    state: State,
    /// Times it opened: tickets from an older generation are stale.
    generation: u64,
    consecutive: u32,
    faults: u64,
    /// Times it opened in a row without a successful call between (sets the
    /// cool-down's doubling); `opened_total` is never reset.
    reopened: u32,
    opened_total: u32,
    reason: Option<String>,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            faults: 0,
            reopened: 0,
            opened_total: 0,
            reason: None,
        }
    }
}

/// The breakers of one plugin version.
pub struct Quarantine {
    after: u32,
    cooldown: Duration,
    /// A probe that has not reported within this long is presumed lost (its
    /// caller was cancelled), and another call may probe.
    probe_timeout: Duration,
    apps: Mutex<HashMap<String, Breaker>>,
}

impl Quarantine {
    pub fn new(after: u32, cooldown: Duration, probe_timeout: Duration) -> Quarantine {
        Quarantine {
            after: after.max(1),
            cooldown,
            probe_timeout,
            apps: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `app` may call now; the first caller after the cool-down gets
    /// the probe.
    pub fn admit(&self, app: &str) -> (Admission, Ticket) {
        let mut apps = self.lock();
        let Some(b) = apps.get_mut(app) else {
            return (Admission::Call, Ticket::default());
        };
        let answer = self.decide(b);
        let ticket = Ticket {
            generation: b.generation,
            probe: answer == Admission::Probe,
        };
        if answer == Admission::Probe {
            b.state = State::HalfOpen {
                since: Instant::now(),
            };
        }
        (answer, ticket)
    }

    /// What [`Self::admit`] would answer, without taking the probe.
    pub fn peek(&self, app: &str) -> Admission {
        self.lock()
            .get(app)
            .map_or(Admission::Call, |b| self.decide(b))
    }

    fn decide(&self, b: &Breaker) -> Admission {
        let now = Instant::now();
        match b.state {
            State::Closed => Admission::Call,
            State::Open { until, until_ms } if now < until => Admission::Wait {
                until_ms,
                reason: b.reason.clone().unwrap_or_default(),
            },
            State::HalfOpen { since } if now < since + self.probe_timeout => Admission::Wait {
                until_ms: crate::id::now_ms() + self.probe_timeout.as_millis() as i64,
                reason: "a probe call is in progress".into(),
            },
            State::Open { .. } | State::HalfOpen { .. } => Admission::Probe,
        }
    }

    /// Records a call that ran without a guest fault. Returns a change when
    /// this closed an open breaker.
    pub fn success(&self, app: &str, ticket: Ticket) -> Option<Change> {
        let mut apps = self.lock();
        let b = apps.get_mut(app)?;
        match b.state {
            State::Closed => {
                b.consecutive = 0;
                b.reopened = 0;
                None
            }
            // Only the probe closes it; a call admitted before it opened
            // says nothing about the version's behaviour since.
            State::HalfOpen { .. } if ticket.probe && ticket.generation == b.generation => {
                b.consecutive = 0;
                b.reopened = 0;
                b.state = State::Closed;
                Some(Change::Closed {
                    app: app.to_string(),
                })
            }
            State::HalfOpen { .. } | State::Open { .. } => None,
        }
    }

    /// Records a guest fault. Returns a change when this opened the breaker.
    pub fn fault(&self, app: &str, reason: &str, ticket: Ticket) -> Option<Change> {
        let mut apps = self.lock();
        let b = apps.entry(app.to_string()).or_insert_with(Breaker::new);
        b.faults += 1;
        let open = match b.state {
            State::Closed => {
                b.consecutive += 1;
                b.reason = Some(super::limits::cut(reason));
                b.consecutive >= self.after
            }
            // A failed probe opens it again at once.
            State::HalfOpen { .. } if ticket.probe && ticket.generation == b.generation => {
                b.consecutive += 1;
                b.reason = Some(super::limits::cut(reason));
                true
            }
            // Calls admitted before it opened may still report: counted in
            // the total, but they change nothing.
            State::HalfOpen { .. } | State::Open { .. } => false,
        };
        if !open {
            return None;
        }
        b.generation += 1;
        let cooldown = self.cooldown * 2u32.pow(b.reopened.min(4));
        b.reopened += 1;
        b.opened_total += 1;
        let until_ms = crate::id::now_ms() + cooldown.as_millis() as i64;
        b.state = State::Open {
            until: Instant::now() + cooldown,
            until_ms,
        };
        Some(Change::Opened {
            app: app.to_string(),
            until_ms,
        })
    }

    /// Lifts the breaker of `app`, or of every app; returns the apps whose
    /// breaker was not closed.
    pub fn lift(&self, app: Option<&str>) -> Vec<String> {
        let mut apps = self.lock();
        let mut lifted = Vec::new();
        for (id, b) in apps.iter_mut() {
            if app.is_some_and(|a| a != id) {
                continue;
            }
            if !matches!(b.state, State::Closed) {
                lifted.push(id.clone());
            }
            b.state = State::Closed;
            b.consecutive = 0;
            b.reopened = 0;
        }
        lifted
    }

    /// Apps for which the breaker is open or half-open.
    pub fn open_apps(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, b)| !matches!(b.state, State::Closed))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every app with a fault on record, sorted by app id.
    pub fn view(&self) -> Vec<AppView> {
        let mut out: Vec<AppView> = self
            .lock()
            .iter()
            .map(|(id, b)| AppView {
                app_id: id.clone(),
                state: match b.state {
                    State::Closed => "closed",
                    State::Open { .. } => "open",
                    State::HalfOpen { .. } => "half_open",
                },
                consecutive_faults: b.consecutive,
                faults: b.faults,
                opened: b.opened_total,
                reason: b.reason.clone(),
                probe_at_ms: match b.state {
                    State::Open { until_ms, .. } => Some(until_ms),
                    _ => None,
                },
            })
            .collect();
        out.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ticket of a call admitted while closed.
    const T: Ticket = Ticket {
        generation: 0,
        probe: false,
    };

    fn quarantine(cooldown_ms: u64) -> Quarantine {
        Quarantine::new(
            3,
            Duration::from_millis(cooldown_ms),
            Duration::from_secs(5),
        )
    }

    fn open(q: &Quarantine, app: &str) {
        for _ in 0..3 {
            let (_, t) = q.admit(app);
            q.fault(app, "x", t);
        }
    }

    #[test]
    fn opens_after_faults_in_a_row_for_that_app_only() {
        let q = quarantine(60_000);
        assert_eq!(q.fault("a", "trap", T), None);
        assert_eq!(q.success("a", T), None, "a success resets the count");
        assert_eq!(q.fault("a", "trap", T), None);
        assert_eq!(q.fault("a", "trap", T), None);
        assert!(matches!(
            q.fault("a", "trap", T),
            Some(Change::Opened { .. })
        ));
        assert!(matches!(q.admit("a").0, Admission::Wait { reason, .. } if reason == "trap"));
        assert_eq!(
            q.admit("b").0,
            Admission::Call,
            "another app is not affected"
        );
        assert_eq!(q.open_apps(), vec!["a".to_string()]);
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_or_reopens_it() {
        let q = quarantine(0);
        open(&q, "a");
        let (answer, probe) = q.admit("a");
        assert_eq!(answer, Admission::Probe);
        assert!(
            matches!(q.admit("a").0, Admission::Wait { .. }),
            "only one probe at a time"
        );
        // The probe faults: open again (cool-down 0 doubles to 0 here).
        assert!(matches!(
            q.fault("a", "again", probe),
            Some(Change::Opened { .. })
        ));
        let (answer, probe) = q.admit("a");
        assert_eq!(answer, Admission::Probe);
        assert_eq!(
            q.success("a", probe),
            Some(Change::Closed { app: "a".into() })
        );
        assert_eq!(q.admit("a").0, Admission::Call);
        let view = q.view();
        assert_eq!(view[0].state, "closed");
        assert_eq!(view[0].opened, 2);
        assert_eq!(view[0].faults, 4);
    }

    #[test]
    fn outcomes_of_calls_admitted_before_it_opened_change_nothing() {
        let q = quarantine(0);
        // Admitted while closed, finishing after it opened.
        let (_, stale) = q.admit("a");
        open(&q, "a");
        assert_eq!(
            q.success("a", stale),
            None,
            "a stale success does not close it"
        );
        let (answer, probe) = q.admit("a");
        assert_eq!(answer, Admission::Probe);
        assert_eq!(
            q.fault("a", "late", stale),
            None,
            "a stale fault is not the probe's"
        );
        assert_eq!(q.view()[0].state, "half_open");
        assert!(q.success("a", probe).is_some());
    }

    #[test]
    fn the_cooldown_doubles_while_probes_fail() {
        let q = quarantine(1_000);
        open(&q, "a");
        let first = match q.view()[0].probe_at_ms {
            Some(t) => t - crate::id::now_ms(),
            None => panic!("open"),
        };
        // Force a probe now and fail it.
        let generation = {
            let mut apps = q.lock();
            let b = apps.get_mut("a").unwrap();
            b.state = State::HalfOpen {
                since: Instant::now(),
            };
            b.generation
        };
        q.fault(
            "a",
            "x",
            Ticket {
                generation,
                probe: true,
            },
        );
        let second = q.view()[0].probe_at_ms.unwrap() - crate::id::now_ms();
        assert!(first <= 1_000 && second > 1_500, "{first} then {second}");
    }

    #[test]
    fn lifting_closes_it() {
        let q = quarantine(60_000);
        open(&q, "a");
        open(&q, "b");
        assert_eq!(q.lift(Some("a")), vec!["a".to_string()]);
        assert_eq!(q.admit("a").0, Admission::Call);
        assert!(matches!(q.admit("b").0, Admission::Wait { .. }));
        assert_eq!(q.lift(None), vec!["b".to_string()]);
        assert!(q.open_apps().is_empty());
    }
}
