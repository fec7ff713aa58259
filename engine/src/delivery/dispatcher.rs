//! The dispatcher: claims due deliveries, sends them through their
//! endpoints' lanes, and records outcomes.
//!
//! Fresh events reach it through the [`Handoff`]; retries fall due on a timer
//! read from the store. Work is claimed in batches under a lease with a claim
//! token of its own (a crashed process's deliveries are claimed again when
//! the lease runs out, and only the current claim may complete a delivery).
//! Each delivery goes through its endpoint's lane ([`Lanes`]: in-flight cap,
//! rate limit, pauses), and at most `max_in_flight` run at once. Claims skip
//! endpoints whose lanes are full and, in the claim's own transaction, apply
//! the endpoints' circuit breakers ([`health::gate`]). Completions are
//! written in groups by one task, together with their effect on endpoint
//! health ([`health::record`]).
//!
//! One loop owns the lanes and every counter, so nothing here takes a lock.
//! Channels are bounded: tasks never outnumber `max_in_flight`, and the
//! completion writer pushes back on the loop when the store is slow.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::handoff::{Handoff, HandoffReceiver};
use super::health::{self, HealthPolicy};
use super::lanes::{LaneLimits, Lanes, Offer, RateLimit};
use super::retry_policy::{RetryPolicy, RetrySchedule};
use super::sender::{Outgoing, SendResult, Sender};
use super::signing::{SigningKey, signature_header};
use super::verdict;
use crate::id::{new_id, now_ms};
use crate::plugins::{
    CallError, GuestError, LoadedPlugin, PluginEvent, PluginHost, PluginResponse, Verdict,
};
use crate::store::deliveries::{
    self, Attempt, AttemptOutcome, ClaimRequest, Claimed, Completion, DeliveryStatus,
    EndpointSignal, HoldKind,
};
use crate::store::endpoints::Endpoint;
use crate::store::flow::{self, Reservation};
use crate::store::{Backend, Store};

/// Tuning of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Deliveries in flight at once, all endpoints together.
    pub max_in_flight: usize,
    /// Deliveries claimed per store round trip.
    pub claim_batch: usize,
    /// How long a claim is held; must outlast the slowest delivery.
    pub lease: Duration,
    /// Longest sleep without looking at the store (other processes' work, clock drift).
    pub poll_interval: Duration,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace: Duration,
    /// Requests in flight to one endpoint, unless the endpoint says otherwise.
    pub endpoint_max_in_flight: usize,
    /// Deliveries one endpoint's lane may keep waiting in memory.
    pub lane_queue: usize,
    /// A delivery whose lease has less than this left is given back instead
    /// of started: it could run past its lease and be sent twice.
    pub min_lease_left: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> DispatcherOptions {
        DispatcherOptions {
            max_in_flight: 256,
            claim_batch: 128,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            endpoint_max_in_flight: 8,
            lane_queue: 16,
            min_lease_left: Duration::from_secs(20),
        }
    }
}

/// Shared by the dispatcher loop and every delivery task.
struct Context {
    store: Store,
    host: Arc<PluginHost>,
    sender: Sender,
    policy: RetryPolicy,
    health: HealthPolicy,
    options: DispatcherOptions,
}

pub struct Dispatcher {
    ctx: Arc<Context>,
    handoff: Arc<Handoff>,
    fresh: HandoffReceiver,
}

/// A finished delivery task's report to the loop.
struct TaskDone {
    endpoint_id: String,
    outcome: TaskOutcome,
    /// Leave this endpoint alone for a while (429, rate-limit headers, the
    /// cluster's rate schedule).
    pause: Option<Duration>,
}

enum TaskOutcome {
    /// An outcome to record (boxed: the channel carries many of these).
    Completed(Box<Completion>),
    /// Not sent, and no attempt used: the cluster's flow control had no room
    /// for it (see [`cluster_gate`]); give it back, due at this time (ms).
    Deferred {
        id: String,
        token: Arc<str>,
        due: i64,
    },
}

/// What the completion writer tells the loop after a commit.
#[derive(Debug, Default)]
struct Written {
    /// Endpoints whose breaker opened, until when (ms).
    blocked: Vec<(String, i64)>,
    /// Claim now: deliveries became due.
    wake: bool,
    /// The earliest retry among the written completions (ms).
    next_due: Option<i64>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        host: Arc<PluginHost>,
        sender: Sender,
        policy: RetryPolicy,
        health: HealthPolicy,
        options: DispatcherOptions,
        handoff: (Arc<Handoff>, HandoffReceiver),
    ) -> Dispatcher {
        let (handoff, fresh) = handoff;
        Dispatcher {
            ctx: Arc::new(Context {
                store,
                host,
                sender,
                policy,
                health,
                options,
            }),
            handoff,
            fresh,
        }
    }

    /// Runs until `shutdown` turns true, then stops claiming, lets deliveries
    /// in flight finish up to the grace period, aborts the rest, writes the
    /// outcomes and gives back every lease this process holds.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Dispatcher {
            ctx,
            handoff,
            mut fresh,
        } = self;
        let owner = handoff.owner().clone();
        let max = ctx.options.max_in_flight;
        let (done_tx, mut done_rx) = mpsc::channel::<TaskDone>(max + 1);
        let (complete_tx, complete_rx) = mpsc::channel::<Completion>(4 * max + 1024);
        let (written_tx, mut written_rx) = mpsc::channel::<Written>(256);
        let completer = tokio::spawn(write_completions(
            ctx.store.clone(),
            ctx.health.clone(),
            complete_rx,
            written_tx,
        ));
        let mut loop_ = Loop {
            ctx: ctx.clone(),
            handoff: handoff.clone(),
            lanes: Lanes::new(ctx.options.lane_queue),
            tasks: JoinSet::new(),
            in_flight: 0,
            done_tx,
            give_back: Vec::new(),
            refused: false,
            refill: false,
            empty_claim_at: None,
            attempts: 0,
            delivered: 0,
        };
        tracing::info!(%owner, "dispatcher started");

        // Claim at once on start: work left by an earlier run may be waiting.
        let mut claim_due = true;
        let mut next_claim = Instant::now();
        let mut last_gc = Instant::now();
        let mut last_saturated = Instant::now();
        // The last claim stopped for lack of room, not of work.
        let mut room_wanted = false;
        // The least room worth a claim while deliveries are in flight: a
        // quarter of a batch, or of what this process may have in flight
        // when that is smaller (else a small process would claim only when
        // it is idle).
        let worth_claiming = (ctx.options.claim_batch / 4).min(max / 4).max(1);
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Start whatever the lanes allow now.
            let room = max.saturating_sub(loop_.in_flight);
            let (ready, next_lane) = loop_.lanes.ready(Instant::now(), room);
            for job in ready {
                loop_.start(job);
            }
            loop_.flush_give_backs();
            if loop_.refused || last_saturated.elapsed() > Duration::from_millis(50) {
                loop_.refused = false;
                let saturated = loop_.lanes.saturated(Instant::now());
                // Ingest stores these endpoints' deliveries unleased: claim
                // them as their lanes drain.
                loop_.lanes.mark_backlog(&saturated);
                handoff.set_saturated(saturated);
                last_saturated = Instant::now();
            }
            if loop_.refill {
                loop_.refill = false;
                claim_due = true;
                next_claim = next_claim.min(Instant::now());
            }
            if last_gc.elapsed() > Duration::from_secs(60) {
                loop_.lanes.forget_idle();
                last_gc = Instant::now();
            }

            let in_memory = loop_.in_flight + loop_.lanes.waiting();
            let wake_at = next_lane.map_or(next_claim, |l| l.min(next_claim));
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(done) = done_rx.recv() => {
                    loop_.finished(done, &complete_tx).await;
                    let busy = loop_.in_flight + loop_.lanes.waiting();
                    if room_wanted && max.saturating_sub(busy) >= worth_claiming {
                        room_wanted = false;
                        claim_due = true;
                        next_claim = Instant::now();
                    }
                    continue;
                }
                Some(written) = written_rx.recv() => {
                    for (endpoint, until) in written.blocked {
                        let wait = Duration::from_millis((until - now_ms()).max(0) as u64);
                        for job in loop_.lanes.block(&endpoint, Instant::now() + wait, until) {
                            loop_.give_back.push((job.id, job.token, until));
                        }
                    }
                    if written.wake {
                        claim_due = true;
                        next_claim = Instant::now();
                    }
                    if let Some(due) = written.next_due {
                        let at = Instant::now() + Duration::from_millis((due - now_ms()).max(0) as u64);
                        next_claim = next_claim.min(at);
                    }
                    continue;
                }
                Some(job) = fresh.rx.recv(), if in_memory < max + ctx.options.lane_queue => {
                    handoff.taken();
                    loop_.offer(job);
                    continue;
                }
                _ = handoff.wake.notified() => {
                    claim_due = true;
                    next_claim = Instant::now();
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if Instant::now() >= next_claim {
                        claim_due = true;
                    }
                }
            }

            if !claim_due {
                continue;
            }
            // Claim while there is room and work. With little room, wait for
            // more to free up (a finished task brings the claim back) rather
            // than claim a handful at a time.
            let mut throttled = false;
            loop {
                let busy = loop_.in_flight + loop_.lanes.waiting();
                let room = max.saturating_sub(busy).min(ctx.options.claim_batch);
                if room == 0 || (room < worth_claiming && busy > 0) {
                    room_wanted = true;
                    break;
                }
                // A claim that leaves full lanes out scans past their
                // backlog; when the last such claim found nothing, don't
                // repeat it on every wake-up.
                if loop_
                    .empty_claim_at
                    .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
                    && !loop_.lanes.saturated(Instant::now()).is_empty()
                {
                    throttled = true;
                    break;
                }
                match loop_.claim(room).await {
                    Ok(n) if n == room => continue,
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "claiming deliveries failed"),
                }
                claim_due = false;
                break;
            }

            // Claim again when the next retry falls due, or after the poll
            // interval (leases that ran out, other processes' work). Work that
            // is due now but was not claimed is leased, or waits for a full
            // lane: a finished task, a wake-up or the poll brings it, not a
            // rescan of the queue.
            let now = now_ms();
            let sleep = match ctx.store.read(deliveries::next_due).await.ok().flatten() {
                Some(due) if due > now => {
                    Duration::from_millis((due - now) as u64).min(ctx.options.poll_interval)
                }
                _ => ctx.options.poll_interval,
            };
            next_claim = Instant::now() + sleep;
            if throttled {
                next_claim = next_claim.min(Instant::now() + Duration::from_millis(100));
            }
        }

        tracing::info!("dispatcher stopping: waiting for deliveries in flight");
        let deadline = Instant::now() + ctx.options.shutdown_grace;
        while loop_.in_flight > 0 {
            tokio::select! {
                Some(done) = done_rx.recv() => loop_.finished(done, &complete_tx).await,
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if loop_.in_flight > 0 {
            tracing::warn!(
                deliveries = loop_.in_flight,
                "deliveries still in flight after the grace period were aborted; their leases are given back"
            );
            loop_.tasks.abort_all();
            while loop_.tasks.join_next().await.is_some() {}
        }
        // Reports of tasks that finished just before the abort.
        while let Ok(done) = done_rx.try_recv() {
            loop_.finished(done, &complete_tx).await;
        }
        tracing::info!(
            %owner,
            attempts = loop_.attempts,
            delivered = loop_.delivered,
            "dispatcher finished its work"
        );
        drop(loop_);
        drop(complete_tx); // the writer ends once it has written what it has
        let store = match completer.await {
            Ok(store) => store,
            Err(_) => return,
        };
        // Everything this process still holds (aborted, waiting in lanes,
        // queued in the handoff) goes back, so the next start sends it at once.
        let release_owner = owner.clone();
        match store
            .write(move |c| deliveries::release(c, &release_owner))
            .await
        {
            Ok(n) if n > 0 => tracing::info!(released = n, "gave back unfinished leases"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "failed to give back leases"),
        }
        drop(fresh);
    }
}

/// The loop's state.
struct Loop {
    ctx: Arc<Context>,
    handoff: Arc<Handoff>,
    lanes: Lanes,
    /// The delivery tasks, to abort those past the shutdown grace.
    tasks: JoinSet<()>,
    /// Tasks started and not yet reported done. Not `tasks.len()`: a task
    /// that has sent its report may not have returned yet, and counting it
    /// would hold shutdown for the whole grace period after the last report.
    in_flight: usize,
    done_tx: mpsc::Sender<TaskDone>,
    /// Deliveries to give back to the store: (id, claim token, due at).
    give_back: Vec<(String, Arc<str>, i64)>,
    /// A lane refused a delivery: tell ingest which lanes are full now.
    refused: bool,
    /// A lane with deliveries waiting in the store has drained: claim.
    refill: bool,
    /// When the last claim that left full lanes out found nothing.
    empty_claim_at: Option<Instant>,
    /// Attempts this process finished, and how many of them delivered
    /// (logged at shutdown: with several processes, who did what).
    attempts: u64,
    delivered: u64,
}

impl Loop {
    /// The limits of a delivery's lane.
    fn limits(&self, endpoint: &Endpoint) -> LaneLimits {
        let max_in_flight = if endpoint.ordered {
            1
        } else {
            endpoint
                .max_in_flight
                .map_or(self.ctx.options.endpoint_max_in_flight, |n| {
                    n.max(1) as usize
                })
        };
        let rate = match &endpoint.rate_limit {
            Some(text) => serde_json::from_str::<RateLimit>(text).ok(),
            None => RateLimit::platform_default(&endpoint.plugin),
        }
        .filter(|r| r.per_second > 0.0);
        // A receiver that agreed to a rate in the validation handshake
        // (WebHook-Allowed-Rate, per minute) gets no more than that.
        let allowed = endpoint
            .handshake_rate
            .filter(|n| *n > 0)
            .map(|per_minute| RateLimit {
                per_second: f64::from(per_minute) / 60.0,
                burst: 1,
            });
        let rate = match (rate, allowed) {
            (Some(own), Some(allowed)) if own.per_second <= allowed.per_second => Some(own),
            (_, Some(allowed)) => Some(allowed),
            (own, None) => own,
        };
        LaneLimits {
            max_in_flight,
            rate,
        }
    }

    fn offer(&mut self, job: Claimed) {
        let limits = self.limits(&job.endpoint);
        match self.lanes.offer(job, limits, Instant::now()) {
            Offer::Start(job) => self.start(job),
            Offer::Queued => {}
            Offer::Refused(job, due) => {
                self.refused = true;
                self.give_back.push((job.id, job.token, due));
            }
        }
    }

    /// Spawns a delivery task, unless the delivery's lease is about to run out.
    fn start(&mut self, job: Claimed) {
        let left = job.lease_until - now_ms();
        if left < self.ctx.options.min_lease_left.as_millis() as i64 {
            // It could still be running when the lease ends and another claim
            // sends it again: give it back to be claimed afresh.
            self.lanes.finished(&job.endpoint.id);
            self.give_back.push((job.id, job.token, now_ms()));
            return;
        }
        // Several processes on one database share the endpoint's limits
        // through it (one SQLite process has them all in its lanes).
        let shared = (self.ctx.store.backend() == Backend::Postgres)
            .then(|| SharedLimits::of(&job.endpoint, self.limits(&job.endpoint)))
            .filter(|limits| limits.max_in_flight.is_some() || limits.rate.is_some());
        // Every log line of the delivery names it, its event and endpoint.
        let span = tracing::info_span!(
            "delivery",
            id = %job.id,
            event = %job.event.id,
            endpoint = %job.endpoint.id
        );
        let ctx = self.ctx.clone();
        let done = self.done_tx.clone();
        let task = async move {
            let endpoint_id = job.endpoint.id.clone();
            let (outcome, pause) = match cluster_gate(&ctx, &job, shared).await {
                Ok(slot) => {
                    let (completion, pause) = deliver(&ctx, job).await;
                    if let Some(free) = slot {
                        free.release(&ctx.store).await;
                    }
                    (TaskOutcome::Completed(Box::new(completion)), pause)
                }
                Err(deferral) => deferral,
            };
            // The loop outlives every task unless shutdown aborted it.
            let _ = done
                .send(TaskDone {
                    endpoint_id,
                    outcome,
                    pause,
                })
                .await;
        };
        self.tasks.spawn(task.instrument(span));
        self.in_flight += 1;
    }

    async fn finished(&mut self, done: TaskDone, complete: &mpsc::Sender<Completion>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let endpoint = done.endpoint_id;
        if self.lanes.finished(&endpoint) {
            self.refill = true;
        }
        if let Some(pause) = done.pause {
            self.lanes.pause(&endpoint, Instant::now() + pause);
        }
        while self.tasks.try_join_next().is_some() {}
        let completion = match done.outcome {
            TaskOutcome::Completed(completion) => *completion,
            TaskOutcome::Deferred { id, token, due } => {
                self.give_back.push((id, token, due));
                return;
            }
        };
        if completion.attempt.is_some() {
            self.attempts += 1;
        }
        if completion.status == DeliveryStatus::Delivered {
            self.delivered += 1;
        }
        if complete.send(completion).await.is_err() {
            tracing::error!("the completion writer has stopped");
        }
    }

    /// Claims up to `room` deliveries and offers them to their lanes; returns
    /// how many the claim took.
    async fn claim(&mut self, room: usize) -> Result<usize, crate::store::StoreError> {
        let now = now_ms();
        let exclude = self.lanes.saturated(Instant::now());
        self.handoff.set_saturated(exclude.clone());
        let excluded = exclude.clone();
        let request = ClaimRequest {
            token: self.handoff.token(),
            now,
            lease_until: now + self.ctx.options.lease.as_millis() as i64,
            limit: room as i64,
            exclude,
            per_endpoint: self
                .lanes
                .per_endpoint(self.ctx.options.endpoint_max_in_flight)
                as i64,
        };
        let per_endpoint = request.per_endpoint as usize;
        let policy = self.ctx.health.clone();
        let sealer = self.ctx.store.sealer();
        let (taken, claimed) = self
            .ctx
            .store
            .write(move |c| {
                let claimed = deliveries::claim(c, &sealer, &request)?;
                let taken = claimed.len();
                Ok((taken, health::gate(c, claimed, request.now, &policy)?))
            })
            .await?;
        let mut per: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for job in &claimed {
            *per.entry(job.endpoint.id.as_str()).or_default() += 1;
        }
        self.lanes.claimed(&per, per_endpoint, &excluded);
        self.empty_claim_at = (taken == 0 && !excluded.is_empty()).then(Instant::now);
        tracing::debug!(
            taken,
            going = claimed.len(),
            room,
            excluded = excluded.len(),
            per_endpoint,
            "claimed"
        );
        for job in claimed {
            self.offer(job);
        }
        Ok(taken)
    }

    /// Writes the give-backs collected so far, off the loop.
    fn flush_give_backs(&mut self) {
        if self.give_back.is_empty() {
            return;
        }
        let back = std::mem::take(&mut self.give_back);
        let store = self.ctx.store.clone();
        let handoff = self.handoff.clone();
        tokio::spawn(async move {
            let n = back.len();
            let result = store
                .write(move |c| {
                    for (id, token, due) in &back {
                        deliveries::give_back(c, token, &[(id.as_str(), *due)])?;
                    }
                    Ok(())
                })
                .await;
            match result {
                // Some may be due at once (a lease about to run out).
                Ok(()) => handoff.wake.notify_one(),
                // Their leases run out and they are claimed again.
                Err(e) => {
                    tracing::error!(error = %e, deliveries = n, "failed to give back deliveries")
                }
            }
        });
    }
}

/// Writes completions in groups (whatever arrived while the last group was
/// committing), with their effect on endpoint health, and reports to the loop.
/// How often a batch of outcomes is written again after a passing failure
/// (about a minute with the back-off, enough for a database restart).
const COMPLETION_TRIES: u32 = 20;

async fn write_completions(
    store: Store,
    policy: HealthPolicy,
    mut rx: mpsc::Receiver<Completion>,
    written: mpsc::Sender<Written>,
) -> Store {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let done = Arc::new(std::mem::take(&mut batch));
        let n = done.len();
        let ordered = done.iter().any(|c| c.ordered);
        let next_due = done
            .iter()
            .filter(|c| c.status == DeliveryStatus::Pending)
            .map(|c| c.next_attempt_at)
            .min();
        // Outcomes are worth keeping: a write that failed for a passing
        // reason (the database away, a deadlock between processes broken by
        // failing this transaction) is tried again. Dropped, the deliveries
        // would stay leased and be sent again when the leases ran out.
        let mut tries = 0u32;
        let result = loop {
            let (done, policy, sealer) = (done.clone(), policy.clone(), store.sealer());
            let result = store
                .write(move |c| {
                    let now = now_ms();
                    deliveries::complete(c, &done, now)?;
                    health::record(c, &sealer, &done, now, &policy)
                })
                .await;
            match result {
                Err(e) if e.is_transient() && tries < COMPLETION_TRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, deliveries = n, tries, "recording delivery outcomes failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50u64 << tries.min(6))).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(effects) => {
                let report = Written {
                    blocked: effects.blocked,
                    // The next delivery of an ordered lane may be claimed now.
                    wake: effects.wake || ordered,
                    next_due,
                };
                // A full channel only delays a wake-up: claims poll anyway.
                let _ = written.try_send(report);
            }
            // The leases will run out and the deliveries be sent again: at
            // least once, never lost.
            Err(e) => {
                tracing::error!(error = %e, deliveries = n, "failed to record delivery outcomes")
            }
        }
    }
    store
}

/// What one attempt came to, before it is turned into a completion.
struct AttemptResult {
    outcome: Outcome,
    status_code: Option<u16>,
    excerpt: Option<String>,
    error: Option<String>,
    signal: EndpointSignal,
    /// Requests of the delivery accepted so far (this attempt's included).
    requests_done: i32,
    pause: Option<Duration>,
}

enum Outcome {
    Delivered,
    Skipped,
    Retry(Option<Duration>),
    Fail,
    Disable,
    /// The plugin is quarantined for this app: no attempt was made.
    PluginQuarantined,
}

/// Longest response excerpt kept on an attempt.
const EXCERPT_CAP: usize = 4 << 10;

async fn deliver(ctx: &Context, job: Claimed) -> (Completion, Option<Duration>) {
    let started_ms = now_ms();
    let started = std::time::Instant::now();
    let endpoint = job.endpoint.clone();

    if endpoint.deleted_at.is_some() {
        return (
            without_attempt(
                &job,
                DeliveryStatus::Failed,
                HoldKind::None,
                "endpoint deleted".into(),
            ),
            None,
        );
    }
    if !endpoint.enabled {
        // Held, not failed: enabling the endpoint resumes it.
        let why = match &endpoint.disabled_reason {
            Some(reason) => format!("endpoint disabled: {reason}"),
            None => "endpoint disabled".to_string(),
        };
        return (
            without_attempt(&job, DeliveryStatus::Held, HoldKind::Endpoint, why),
            None,
        );
    }
    let Some(plugin) = ctx.host.registry.get(&endpoint.plugin) else {
        // Not an attempt: the delivery is held without using up its retries,
        // and resumes when a version of the plugin is loaded.
        let why = format!("waiting for plugin {:?}: not loaded", endpoint.plugin);
        tracing::warn!(delivery = %job.id, plugin = %endpoint.plugin, "{why}");
        return (
            without_attempt(&job, DeliveryStatus::Held, HoldKind::Plugin, why),
            None,
        );
    };

    let result = attempt(ctx, &job, &plugin).await;
    if let Outcome::PluginQuarantined = result.outcome {
        // The plugin is quarantined for this app (its transform refused to
        // run): not an attempt. The delivery resumes when a probe may go.
        let why = format!(
            "waiting for plugin {:?}: {}",
            endpoint.plugin,
            result.error.unwrap_or_default()
        );
        return (
            without_attempt(&job, DeliveryStatus::Held, HoldKind::Plugin, why),
            None,
        );
    }
    let attempts = job.attempts + 1;
    // A failed probe says the endpoint is still down, not that this delivery
    // used up a step of its schedule: its schedule starts one later.
    let schedule_start = if job.probe && matches!(result.outcome, Outcome::Retry(_)) {
        job.schedule_start + 1
    } else {
        job.schedule_start
    };
    let now = now_ms();
    let mut error = result.error;
    let (status, hold, next_attempt_at) = match result.outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, HoldKind::None, now),
        Outcome::Skipped => (DeliveryStatus::Skipped, HoldKind::None, now),
        Outcome::Fail => (DeliveryStatus::Failed, HoldKind::None, now),
        // The endpoint is being disabled: this delivery waits with the rest.
        Outcome::Disable => (DeliveryStatus::Held, HoldKind::Endpoint, now),
        Outcome::PluginQuarantined => unreachable!("handled above"),
        Outcome::Retry(after) => {
            let schedule = endpoint
                .retry_schedule
                .as_deref()
                .and_then(|s| RetrySchedule::from_json(s).ok());
            let failed = (attempts - schedule_start).max(1) as u32;
            match ctx
                .policy
                .delay(schedule.as_ref(), failed, after, rand::random())
            {
                Some(delay) => (
                    DeliveryStatus::Pending,
                    HoldKind::None,
                    now + delay.as_millis() as i64,
                ),
                None => {
                    let last = error.take().unwrap_or_else(|| "failed".into());
                    error = Some(format!("gave up after {failed} attempts: {last}"));
                    (DeliveryStatus::Failed, HoldKind::None, now)
                }
            }
        }
    };
    let attempt_row = Attempt {
        id: new_id("atm"),
        delivery_id: job.id.clone(),
        attempt: attempts,
        started_at: started_ms,
        duration_ms: started.elapsed().as_millis() as i64,
        // The attempt's outcome is what became of the delivery: the last of
        // a run of retries is a failure.
        outcome: match status {
            DeliveryStatus::Delivered => AttemptOutcome::Success,
            DeliveryStatus::Skipped => AttemptOutcome::Skipped,
            DeliveryStatus::Pending => AttemptOutcome::Retry,
            DeliveryStatus::Failed => AttemptOutcome::Failed,
            DeliveryStatus::Held => AttemptOutcome::Held,
        } as i16,
        status_code: result.status_code.map(i32::from),
        response_excerpt: result.excerpt,
        error: error.clone(),
        plugin_name: plugin.info.name.clone(),
        plugin_version: plugin.info.version.clone(),
        plugin_hash: plugin.hash.clone(),
    };
    if status == DeliveryStatus::Failed {
        tracing::info!(delivery = %job.id, endpoint = %endpoint.id, error = ?error, "delivery failed for good");
    }
    let outcome =
        AttemptOutcome::from_i16(attempt_row.outcome).map_or("unknown", AttemptOutcome::name);
    let took = started.elapsed();
    crate::metrics::global().attempt(&plugin.info.name, outcome, took);
    tracing::debug!(
        attempt = attempts,
        outcome,
        // 0: no answer came (connection refused, timeout, plugin fault).
        status_code = attempt_row.status_code.unwrap_or_default(),
        ms = took.as_millis() as u64,
        "attempt finished"
    );
    let completion = Completion {
        delivery_id: job.id,
        endpoint_id: endpoint.id.clone(),
        token: job.token,
        status,
        attempts,
        schedule_start,
        next_attempt_at,
        last_error: error,
        requests_done: result.requests_done,
        hold,
        attempt: Some(attempt_row),
        signal: result.signal,
        ordered: endpoint.ordered,
    };
    (completion, result.pause)
}

/// What a delivery held for a quarantined plugin says.
fn quarantine_note(until_ms: i64, reason: &str) -> String {
    format!(
        "quarantined for this app after repeated faults ({reason}); a probe may go at {}",
        crate::id::rfc3339(until_ms)
    )
}

/// The limits an endpoint's deliveries ask the database about before they
/// are sent, when several processes share it.
#[derive(Debug, Clone, Copy)]
struct SharedLimits {
    /// The endpoint's own `max_in_flight` (the process-wide default stays a
    /// per-process guard, and ordered lanes are kept by the claim).
    max_in_flight: Option<i64>,
    rate: Option<RateLimit>,
}

impl SharedLimits {
    fn of(endpoint: &Endpoint, limits: LaneLimits) -> SharedLimits {
        SharedLimits {
            max_in_flight: endpoint
                .max_in_flight
                .filter(|_| !endpoint.ordered)
                .map(|n| i64::from(n.max(1))),
            rate: limits.rate,
        }
    }
}

/// How long a delivery may wait for its place in the cluster's rate
/// schedule before it is given back instead (holding its slot meanwhile).
const MAX_RATE_WAIT: Duration = Duration::from_secs(1);
/// When a delivery that found every cluster slot of its endpoint taken is
/// tried again (slots free as other processes' sends end).
const SLOT_RETRY: Duration = Duration::from_millis(200);

/// A cluster slot held while a delivery is sent.
struct HeldSlot {
    endpoint_id: String,
    delivery_id: String,
}

impl HeldSlot {
    /// Frees the slot; if that fails, it frees itself when the lease ends.
    async fn release(self, store: &Store) {
        let result = store
            .coordinate(move |c| flow::free_slot(c, &self.endpoint_id, &self.delivery_id))
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "failed to free a cluster slot; it frees itself when the lease ends");
        }
    }
}

/// Cluster-wide flow control (PostgreSQL, see `store::flow`): takes one of
/// the endpoint's slots and books the request's place in its rate schedule,
/// waiting for that place when it is near. When there is no room, the
/// delivery goes back to the store unsent (no attempt used) with a pause for
/// its lane.
async fn cluster_gate(
    ctx: &Context,
    job: &Claimed,
    limits: Option<SharedLimits>,
) -> Result<Option<HeldSlot>, (TaskOutcome, Option<Duration>)> {
    let Some(limits) = limits else {
        return Ok(None);
    };
    let defer = |after: Duration| {
        (
            TaskOutcome::Deferred {
                id: job.id.clone(),
                token: job.token.clone(),
                due: now_ms() + after.as_millis() as i64,
            },
            Some(after),
        )
    };
    let unavailable = |e: crate::store::StoreError| {
        tracing::warn!(delivery = %job.id, error = %e, "cluster flow control unavailable; delivery deferred");
        defer(SLOT_RETRY * 5)
    };
    let mut held = None;
    if let Some(max) = limits.max_in_flight {
        let (endpoint_id, delivery_id, lease_until) =
            (job.endpoint.id.clone(), job.id.clone(), job.lease_until);
        let taken = ctx
            .store
            .coordinate(move |c| {
                flow::take_slot(c, &endpoint_id, &delivery_id, max, lease_until, now_ms())
            })
            .await
            .map_err(unavailable)?;
        if !taken {
            return Err(defer(SLOT_RETRY));
        }
        held = Some(HeldSlot {
            endpoint_id: job.endpoint.id.clone(),
            delivery_id: job.id.clone(),
        });
    }
    if let Some(rate) = limits.rate {
        let endpoint_id = job.endpoint.id.clone();
        let interval_us = (1_000_000.0 / rate.per_second).round() as i64;
        let now_us = now_ms() * 1000;
        let booked = ctx
            .store
            .coordinate(move |c| {
                flow::reserve_rate(
                    c,
                    &endpoint_id,
                    interval_us,
                    rate.burst,
                    MAX_RATE_WAIT.as_micros() as i64,
                    now_us,
                )
            })
            .await;
        match booked {
            Ok(Reservation::Wait(us)) => {
                if us > 0 {
                    tokio::time::sleep(Duration::from_micros(us as u64)).await;
                }
            }
            Ok(Reservation::Later(at_us)) => {
                if let Some(slot) = held {
                    slot.release(&ctx.store).await;
                }
                let after = Duration::from_micros((at_us - now_us).max(0) as u64);
                return Err(defer(after));
            }
            Err(e) => {
                if let Some(slot) = held {
                    slot.release(&ctx.store).await;
                }
                return Err(unavailable(e));
            }
        }
    }
    Ok(held)
}

fn without_attempt(
    job: &Claimed,
    status: DeliveryStatus,
    hold: HoldKind,
    why: String,
) -> Completion {
    Completion {
        delivery_id: job.id.clone(),
        endpoint_id: job.endpoint.id.clone(),
        token: job.token.clone(),
        status,
        attempts: job.attempts,
        schedule_start: job.schedule_start,
        next_attempt_at: now_ms(),
        last_error: Some(why),
        requests_done: job.requests_done,
        hold,
        attempt: None,
        signal: EndpointSignal::Neutral,
        ordered: job.endpoint.ordered,
    }
}

/// Transform, sign, send each request not yet accepted, and read the answers.
async fn attempt(ctx: &Context, job: &Claimed, plugin: &Arc<LoadedPlugin>) -> AttemptResult {
    let done_before = job.requests_done.max(0);
    let fail = |outcome, error: String| AttemptResult {
        outcome,
        status_code: None,
        excerpt: None,
        error: Some(error),
        signal: EndpointSignal::Neutral,
        requests_done: done_before,
        pause: None,
    };

    let endpoint = &job.endpoint;
    // During a rotation's overlap both secrets sign (newest first).
    let keys = match endpoint
        .signing_secrets(now_ms())
        .into_iter()
        .map(SigningKey::parse)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(k) => k,
        Err(e) => return fail(Outcome::Fail, format!("endpoint secret is unusable: {e}")),
    };
    let mut base_url = match url::Url::parse(&endpoint.url) {
        Ok(u) => u,
        Err(e) => return fail(Outcome::Fail, format!("endpoint url is unusable: {e}")),
    };

    let requests = {
        let plugin = plugin.clone();
        let event = job.event.clone();
        let config = endpoint.plugin_config.clone();
        tokio::task::spawn_blocking(move || {
            let e = &*event;
            plugin.transform(
                &PluginEvent {
                    id: &e.ce_id,
                    ty: &e.event_type,
                    source: &e.source,
                    subject: e.subject.as_deref(),
                    time: &e.time,
                    data: &e.data,
                    extensions: &e.extensions,
                    app_id: &e.app_id,
                },
                &config,
            )
        })
        .await
    };
    let requests = match requests {
        Ok(Ok(r)) => r,
        Ok(Err(CallError::Guest(g))) => {
            let outcome = match g.0 {
                GuestError::BadConfig(_) | GuestError::BadEvent(_) => Outcome::Fail,
                GuestError::Internal(_) => Outcome::Retry(None),
            };
            return fail(outcome, format!("plugin {}: {g}", plugin.info.name));
        }
        Ok(Err(CallError::Quarantined { until_ms, reason })) => {
            return fail(
                Outcome::PluginQuarantined,
                quarantine_note(until_ms, &reason),
            );
        }
        Ok(Err(e)) => {
            return fail(
                Outcome::Retry(None),
                format!("plugin {}: {e}", plugin.info.name),
            );
        }
        Err(e) => return fail(Outcome::Retry(None), format!("plugin call panicked: {e}")),
    };
    if requests.is_empty() {
        return AttemptResult {
            outcome: Outcome::Skipped,
            status_code: None,
            excerpt: None,
            error: None,
            signal: EndpointSignal::Neutral,
            requests_done: 0,
            pause: None,
        };
    }

    let base_query = base_url.query().map(str::to_string);
    let mut last = AttemptResult {
        outcome: Outcome::Delivered,
        status_code: None,
        excerpt: None,
        error: None,
        signal: EndpointSignal::Success,
        requests_done: done_before,
        pause: None,
    };
    // Requests an earlier attempt got accepted are not sent again.
    for (i, request) in requests.into_iter().enumerate().skip(done_before as usize) {
        // One webhook-id per request, stable across retries, so receivers can de-duplicate.
        let msg_id = if i == 0 {
            job.id.clone()
        } else {
            format!("{}_{i}", job.id)
        };
        let query = match (&base_query, &request.query) {
            (Some(a), Some(b)) => Some(format!("{a}&{b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        base_url.set_query(query.as_deref());
        let timestamp = chrono::Utc::now().timestamp();
        let body = Bytes::from(request.body);
        let signature = signature_header(&keys, &msg_id, timestamp, &body);
        let sent = ctx
            .sender
            .send(Outgoing {
                url: base_url.clone(),
                body,
                content_type: request.content_type,
                headers: request.headers,
                msg_id,
                timestamp,
                signature,
            })
            .await;
        let (status, headers, body) = match sent {
            SendResult::Answered {
                status,
                headers,
                body,
            } => (status, headers, body),
            SendResult::NoAnswer(why) => {
                return AttemptResult {
                    signal: EndpointSignal::Failure,
                    requests_done: last.requests_done,
                    ..fail(Outcome::Retry(None), why)
                };
            }
        };
        let excerpt = excerpt(&body);
        let pause = rate_limit_pause(status, &headers);
        let response = PluginResponse {
            status,
            headers,
            body,
        };
        let plugin_verdict = {
            let plugin = plugin.clone();
            let config = endpoint.plugin_config.clone();
            let app = endpoint.app_id.clone();
            tokio::task::spawn_blocking(move || {
                let verdict = plugin.interpret_response(&app, &response, &config);
                (verdict, response)
            })
            .await
        };
        let verdict = match plugin_verdict {
            Ok((Ok(Some(v)), _)) => v,
            Ok((Ok(None), response)) => verdict::standard(status, &response.headers),
            Ok((Err(e), response)) => {
                tracing::warn!(plugin = %plugin.info.name, error = %e, "interpret-response failed; standard rules apply");
                verdict::standard(status, &response.headers)
            }
            Err(e) => return fail(Outcome::Retry(None), format!("plugin call panicked: {e}")),
        };
        let (outcome, error, signal) = match verdict {
            Verdict::Success => (Outcome::Delivered, None, EndpointSignal::Success),
            Verdict::RetryAfter(s) => {
                let after = (s > 0).then(|| Duration::from_secs(s as u64));
                let error = match after {
                    Some(_) => format!("endpoint answered {status}; retry after {s} s"),
                    None => format!("endpoint answered {status}"),
                };
                // A rate limit says the endpoint is alive: it slows its lane
                // but does not count towards its breaker.
                let signal = if status == 429 {
                    EndpointSignal::Neutral
                } else {
                    EndpointSignal::Failure
                };
                (Outcome::Retry(after), Some(error), signal)
            }
            // The plugin declared this answer permanent: a dead letter, but
            // the endpoint answered, so its health is not affected.
            Verdict::Fail(why) => (Outcome::Fail, Some(why), EndpointSignal::Neutral),
            Verdict::DisableEndpoint(why) => (
                Outcome::Disable,
                Some(why.clone()),
                EndpointSignal::Disable(why),
            ),
        };
        let accepted = matches!(outcome, Outcome::Delivered);
        last = AttemptResult {
            outcome,
            status_code: Some(status),
            excerpt,
            error,
            signal,
            requests_done: last.requests_done + accepted as i32,
            pause: pause.or(last.pause),
        };
        if !accepted {
            break;
        }
    }
    last
}

/// How long to leave an endpoint alone after this answer: a 429's
/// `Retry-After` (at least a second), or a Discord-style
/// `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After`.
fn rate_limit_pause(status: u16, headers: &[(String, String)]) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let cap = Duration::from_secs(300);
    if status == 429 {
        let after = verdict::retry_after(headers)
            .or_else(|| {
                header("x-ratelimit-reset-after")
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
            })
            .unwrap_or(Duration::from_secs(1));
        return Some(after.max(Duration::from_millis(100)).min(cap));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        return header("x-ratelimit-reset-after")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s).min(cap));
    }
    None
}

fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_CAP)]);
    Some(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rate_limit_answers_pause_the_endpoint() {
        assert_eq!(
            rate_limit_pause(429, &h(&[("Retry-After", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            rate_limit_pause(429, &h(&[("x-ratelimit-reset-after", "0.5")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(rate_limit_pause(429, &[]), Some(Duration::from_secs(1)));
        assert_eq!(
            rate_limit_pause(
                204,
                &h(&[
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset-After", "1.25")
                ])
            ),
            Some(Duration::from_millis(1250))
        );
        assert_eq!(
            rate_limit_pause(204, &h(&[("X-RateLimit-Remaining", "3")])),
            None
        );
        assert_eq!(rate_limit_pause(500, &[]), None);
    }
}
