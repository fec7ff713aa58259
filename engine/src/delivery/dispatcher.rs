//! The dispatcher: claims due deliveries, sends them, and records outcomes.
//!
//! Fresh events wake it through an in-process [`Notify`], so an idle engine
//! sends within milliseconds; retries fall due on a timer read from the store.
//! Work is claimed in batches under a lease (a crashed process's deliveries
//! are claimed again when the lease runs out), at most `max_in_flight` run at
//! once, and completions are written in groups by one task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::handoff::{Handoff, HandoffReceiver};
use super::retry_policy::RetryPolicy;
use super::sender::{Outgoing, SendResult, Sender};
use super::signing::{SigningKey, signature_header};
use super::verdict;
use crate::id::{new_id, now_ms};
use crate::plugins::{
    CallError, GuestError, LoadedPlugin, PluginEvent, PluginHost, PluginResponse, Verdict,
};
use crate::store::Store;
use crate::store::deliveries::{
    self, Attempt, AttemptOutcome, Claimed, Completion, DeliveryStatus, WAITING_FOR_PLUGIN,
};

/// Tuning of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Deliveries in flight at once.
    pub max_in_flight: usize,
    /// Deliveries claimed per store round trip.
    pub claim_batch: usize,
    /// How long a claim is held; must outlast the slowest delivery.
    pub lease: Duration,
    /// Longest sleep without looking at the store (other processes' work, clock drift).
    pub poll_interval: Duration,
    /// How long a delivery waits when its plugin is not loaded.
    pub missing_plugin_wait: Duration,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace: Duration,
}

impl Default for DispatcherOptions {
    fn default() -> DispatcherOptions {
        DispatcherOptions {
            max_in_flight: 256,
            claim_batch: 128,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            missing_plugin_wait: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Shared by the dispatcher loop and every delivery task.
struct Context {
    store: Store,
    host: Arc<PluginHost>,
    sender: Sender,
    policy: RetryPolicy,
    options: DispatcherOptions,
    done: mpsc::UnboundedSender<Completion>,
}

pub struct Dispatcher {
    ctx: Arc<Context>,
    handoff: Arc<Handoff>,
    fresh: HandoffReceiver,
    completions: mpsc::UnboundedReceiver<Completion>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        host: Arc<PluginHost>,
        sender: Sender,
        policy: RetryPolicy,
        options: DispatcherOptions,
        handoff: (Arc<Handoff>, HandoffReceiver),
    ) -> Dispatcher {
        let (done, completions) = mpsc::unbounded_channel();
        let (handoff, fresh) = handoff;
        Dispatcher {
            ctx: Arc::new(Context {
                store,
                host,
                sender,
                policy,
                options,
                done,
            }),
            handoff,
            fresh,
            completions,
        }
    }

    /// Runs until `shutdown` turns true, then stops claiming, lets deliveries
    /// in flight finish (up to the grace period), writes their outcomes and
    /// gives back the leases of any that did not finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Dispatcher {
            ctx,
            handoff,
            mut fresh,
            completions,
        } = self;
        let owner = handoff.owner().clone();
        let completer = tokio::spawn(write_completions(
            ctx.store.clone(),
            owner.clone(),
            completions,
        ));
        let slots = Arc::new(Semaphore::new(ctx.options.max_in_flight));
        let mut in_flight = JoinSet::new();
        let spawn = |in_flight: &mut JoinSet<()>, job: Claimed, permit: OwnedSemaphorePermit| {
            let ctx = ctx.clone();
            in_flight.spawn(async move {
                let completion = deliver(&ctx, job).await;
                let _ = ctx.done.send(completion);
                drop(permit);
            });
        };
        tracing::info!(%owner, "dispatcher started");

        // Claim at once on start: work left by an earlier run may be waiting.
        let mut next_claim = tokio::time::Instant::now();
        'outer: while !*shutdown.borrow() {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(job) = fresh.rx.recv() => {
                    handoff.taken();
                    let permit = tokio::select! {
                        p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                        _ = shutdown.changed() => break,
                    };
                    // Reap finished tasks so the set holds only what is in flight.
                    while in_flight.try_join_next().is_some() {}
                    spawn(&mut in_flight, job, permit);
                    continue;
                }
                _ = handoff.wake.notified() => {}
                _ = tokio::time::sleep_until(next_claim) => {}
            }

            // Claim while there is room and work.
            loop {
                let room = slots.available_permits().min(ctx.options.claim_batch);
                if room == 0 {
                    // Wait for a slot, then claim again.
                    tokio::select! {
                        permit = slots.clone().acquire_owned() => drop(permit),
                        _ = shutdown.changed() => break 'outer,
                    }
                    continue;
                }
                let now = now_ms();
                let lease_until = now + ctx.options.lease.as_millis() as i64;
                let claim_owner = owner.clone();
                let claimed = ctx
                    .store
                    .write(move |c| {
                        deliveries::claim(c, &claim_owner, now, lease_until, room as i64)
                    })
                    .await;
                let claimed = match claimed {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming deliveries failed");
                        break;
                    }
                };
                let full = claimed.len() == room;
                while in_flight.try_join_next().is_some() {}
                for job in claimed {
                    let permit = slots.clone().try_acquire_owned().expect("room was counted");
                    spawn(&mut in_flight, job, permit);
                }
                if !full {
                    break;
                }
            }

            // Claim again when the next retry falls due, or after the poll
            // interval (leases that ran out, other processes' work).
            let next_due = ctx.store.read(deliveries::next_due).await.ok().flatten();
            let mut sleep = ctx.options.poll_interval;
            if let Some(due) = next_due {
                let until = Duration::from_millis((due - now_ms()).max(0) as u64);
                // Due now but not claimable (leased, maybe to us): don't spin.
                sleep = sleep.min(until.max(Duration::from_millis(20)));
            }
            next_claim = tokio::time::Instant::now() + sleep;
        }

        tracing::info!("dispatcher stopping: waiting for deliveries in flight");
        let all = ctx.options.max_in_flight as u32;
        let drained = tokio::time::timeout(ctx.options.shutdown_grace, slots.acquire_many(all))
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                "deliveries still in flight after the grace period; their leases are given back"
            );
        }
        drop(ctx); // closes the completion channel once every task is done or dropped
        let store = match completer.await {
            Ok(store) => store,
            Err(_) => return,
        };
        let release_owner = owner.clone();
        match store
            .write(move |c| deliveries::release(c, &release_owner))
            .await
        {
            Ok(n) if n > 0 => tracing::info!(released = n, "gave back unfinished leases"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "failed to give back leases"),
        }
    }
}

/// Writes completions in groups: whatever arrived while the last group was committing.
async fn write_completions(
    store: Store,
    owner: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<Completion>,
) -> Store {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let done = std::mem::take(&mut batch);
        let owner = owner.clone();
        let n = done.len();
        if let Err(e) = store
            .write(move |c| deliveries::complete(c, &owner, &done, now_ms()))
            .await
        {
            // The leases will run out and the deliveries be sent again: at
            // least once, never lost.
            tracing::error!(error = %e, deliveries = n, "failed to record delivery outcomes");
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
}

enum Outcome {
    Delivered,
    Skipped,
    Retry(Option<Duration>),
    Fail,
    Disable(String),
}

/// Longest response excerpt kept on an attempt.
const EXCERPT_CAP: usize = 4 << 10;

async fn deliver(ctx: &Context, job: Claimed) -> Completion {
    let started_ms = now_ms();
    let started = Instant::now();
    let endpoint = job.endpoint.clone();

    if endpoint.deleted_at.is_some() || !endpoint.enabled {
        let why = match (&endpoint.deleted_at, &endpoint.disabled_reason) {
            (Some(_), _) => "endpoint deleted".to_string(),
            (None, Some(reason)) => format!("endpoint disabled: {reason}"),
            (None, None) => "endpoint disabled".to_string(),
        };
        return finish_without_attempt(&job, DeliveryStatus::Failed, job.attempts, started_ms, why);
    }
    let plugin = ctx.host.registry.get(&endpoint.plugin);
    let waiting = match &plugin {
        None => Some("not loaded"),
        Some(p) if p.is_quarantined() => Some("quarantined after repeated failures"),
        Some(_) => None,
    };
    if let Some(why) = waiting {
        // Not an attempt: the delivery waits for the plugin without using up
        // its retries, and is woken early when a version of it is loaded.
        let wait = ctx.options.missing_plugin_wait.as_millis() as i64;
        let why = format!("{WAITING_FOR_PLUGIN} {:?}: {why}", endpoint.plugin);
        tracing::warn!(delivery = %job.id, plugin = %endpoint.plugin, "{why}");
        return finish_without_attempt(
            &job,
            DeliveryStatus::Pending,
            job.attempts,
            started_ms + wait,
            why,
        );
    }
    let plugin = plugin.expect("checked above");

    let result = attempt(ctx, &job, &plugin).await;
    let attempts = job.attempts + 1;
    let now = now_ms();
    let (status, next_attempt_at, disable) = match result.outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, now, None),
        Outcome::Skipped => (DeliveryStatus::Skipped, now, None),
        Outcome::Fail => (DeliveryStatus::Failed, now, None),
        Outcome::Disable(reason) => (
            DeliveryStatus::Failed,
            now,
            Some((endpoint.id.clone(), reason)),
        ),
        Outcome::Retry(after) => match ctx.policy.delay(attempts as u32, after, rand::random()) {
            Some(delay) => (
                DeliveryStatus::Pending,
                now + delay.as_millis() as i64,
                None,
            ),
            None => (DeliveryStatus::Failed, now, None),
        },
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
        } as i16,
        status_code: result.status_code.map(i32::from),
        response_excerpt: result.excerpt,
        error: result.error.clone(),
        plugin_name: plugin.info.name.clone(),
        plugin_version: plugin.info.version.clone(),
        plugin_hash: plugin.hash.clone(),
    };
    if status == DeliveryStatus::Failed {
        tracing::info!(delivery = %job.id, endpoint = %endpoint.id, error = ?result.error, "delivery failed for good");
    }
    Completion {
        delivery_id: job.id,
        status,
        attempts,
        next_attempt_at,
        last_error: result.error,
        attempt: Some(attempt_row),
        disable_endpoint: disable,
    }
}

fn finish_without_attempt(
    job: &Claimed,
    status: DeliveryStatus,
    attempts: i32,
    next: i64,
    why: String,
) -> Completion {
    Completion {
        delivery_id: job.id.clone(),
        status,
        attempts,
        next_attempt_at: next,
        last_error: Some(why),
        attempt: None,
        disable_endpoint: None,
    }
}

/// Transform, sign, send each request, and read the answers.
async fn attempt(ctx: &Context, job: &Claimed, plugin: &Arc<LoadedPlugin>) -> AttemptResult {
    let fail = |outcome, error: String| AttemptResult {
        outcome,
        status_code: None,
        excerpt: None,
        error: Some(error),
    };

    let endpoint = &job.endpoint;
    let keys = match SigningKey::parse(&endpoint.secret) {
        Ok(k) => vec![k],
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
        };
    }

    let base_query = base_url.query().map(str::to_string);
    let mut last = AttemptResult {
        outcome: Outcome::Delivered,
        status_code: None,
        excerpt: None,
        error: None,
    };
    for (i, request) in requests.into_iter().enumerate() {
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
            SendResult::NoAnswer(why) => return fail(Outcome::Retry(None), why),
        };
        let excerpt = excerpt(&body);
        let response = PluginResponse {
            status,
            headers,
            body,
        };
        let plugin_verdict = {
            let plugin = plugin.clone();
            let config = endpoint.plugin_config.clone();
            tokio::task::spawn_blocking(move || {
                let verdict = plugin.interpret_response(&response, &config);
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
        let (outcome, error) = match verdict {
            Verdict::Success => (Outcome::Delivered, None),
            Verdict::RetryAfter(0) => (
                Outcome::Retry(None),
                Some(format!("endpoint answered {status}")),
            ),
            Verdict::RetryAfter(s) => (
                Outcome::Retry(Some(Duration::from_secs(s as u64))),
                Some(format!("endpoint answered {status}; retry after {s} s")),
            ),
            Verdict::Fail(why) => (Outcome::Fail, Some(why)),
            Verdict::DisableEndpoint(why) => (Outcome::Disable(why.clone()), Some(why)),
        };
        let done = !matches!(outcome, Outcome::Delivered);
        last = AttemptResult {
            outcome,
            status_code: Some(status),
            excerpt,
            error,
        };
        if done {
            break;
        }
    }
    last
}

fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_CAP)]);
    Some(text.into_owned())
}
