//! `/v1/apps/{app_id}/endpoints`: where an app's events go.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::query::Query;
use super::{ApiError, AppState, Page, page, parse_json};
use crate::delivery::RetrySchedule;
use crate::delivery::health::{self, BreakerState};
use crate::delivery::lanes::RateLimit;
use crate::delivery::signing::SigningKey;
use crate::filter::TypeFilter;
use crate::id::{new_id, now_ms, rfc3339};
use crate::payload_filter::PayloadFilter;
use crate::plugins::{CallError, GuestError};
use crate::store::apps;
use crate::store::deliveries::{self, AttemptOutcome};
use crate::store::endpoints::{self, Endpoint, EndpointChanges};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, update, remove))
        .routes(routes!(secret))
        .routes(routes!(stats))
        .routes(routes!(rotate_secret))
}

const DEFAULT_PLUGIN: &str = "webhook";
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 1024;
const MAX_CONFIG_BYTES: usize = 64 << 10;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateEndpoint {
    pub(super) url: String,
    #[serde(default)]
    description: String,
    plugin: Option<String>,
    plugin_config: Option<Value>,
    #[serde(default)]
    filter_types: Vec<String>,
    /// A CEL expression over `event` and `data` (see `payload_filter`).
    filter: Option<String>,
    /// Run the CloudEvents validation handshake first; refuse the endpoint
    /// if the receiver does not agree.
    #[serde(default)]
    handshake: bool,
    secret: Option<String>,
    /// The scheme of a generated secret: `hmac` (`v1`, the default) or
    /// `ed25519` (`v1a`). A given secret's prefix says it by itself.
    signature: Option<String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    policy: PolicyInput,
}

/// A new secret of the scheme `signature` names (`hmac` or `ed25519`).
fn generate_secret(signature: Option<&str>) -> Result<String, ApiError> {
    match signature {
        None | Some("hmac") => Ok(SigningKey::generate()),
        Some("ed25519") => Ok(SigningKey::generate_ed25519()),
        Some(other) => Err(ApiError::invalid(
            "signature",
            format!("must be \"hmac\" or \"ed25519\", got {other:?}"),
        )),
    }
}

/// The `whpk_` key receivers verify an ed25519 secret's signatures with.
fn public_key(secret: &str) -> Option<String> {
    SigningKey::parse(secret).ok()?.public_key()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateEndpoint {
    url: Option<String>,
    description: Option<String>,
    plugin: Option<String>,
    plugin_config: Option<Value>,
    filter_types: Option<Vec<String>>,
    /// Absent leaves it, `null` removes it, a string sets it.
    #[serde(default, deserialize_with = "some")]
    filter: Option<Option<String>>,
    /// `true` runs the handshake again (also after a URL change while it is
    /// on), `false` turns it off.
    handshake: Option<bool>,
    secret: Option<String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    policy: PolicyInput,
}

/// Delivery policy an endpoint may set. Each field: absent leaves it as it
/// is, `null` returns to the engine's default, a value sets it.
#[derive(Deserialize, Default, ToSchema)]
struct PolicyInput {
    /// Delays between attempts: durations such as `"5s"` or milliseconds.
    #[serde(default, deserialize_with = "some")]
    retry_schedule: Option<Option<Vec<Value>>>,
    #[serde(default, deserialize_with = "some")]
    max_in_flight: Option<Option<i64>>,
    /// `{"per_second": 1.0, "burst": 3}`; `per_second: 0` is unlimited.
    #[serde(default, deserialize_with = "some")]
    rate_limit: Option<Option<Value>>,
    ordered: Option<bool>,
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The checked policy changes, as stored.
struct PolicyChanges {
    retry_schedule: Option<Option<String>>,
    max_in_flight: Option<Option<i32>>,
    rate_limit: Option<Option<String>>,
    ordered: Option<bool>,
}

fn check_policy(input: PolicyInput) -> Result<PolicyChanges, ApiError> {
    let retry_schedule = match input.retry_schedule {
        None => None,
        Some(None) => Some(None),
        Some(Some(steps)) => {
            let mut delays = Vec::with_capacity(steps.len());
            for (i, step) in steps.iter().enumerate() {
                let delay = match step {
                    Value::String(s) => humantime::parse_duration(s).map_err(|e| {
                        ApiError::invalid(format!("retry_schedule[{i}]"), format!("{s:?}: {e}"))
                    })?,
                    Value::Number(n) => match n.as_u64() {
                        Some(ms) => std::time::Duration::from_millis(ms),
                        None => {
                            return Err(ApiError::invalid(
                                format!("retry_schedule[{i}]"),
                                "must be a duration (\"5m\") or whole milliseconds",
                            ));
                        }
                    },
                    _ => {
                        return Err(ApiError::invalid(
                            format!("retry_schedule[{i}]"),
                            "must be a duration (\"5m\") or whole milliseconds",
                        ));
                    }
                };
                delays.push(delay);
            }
            let schedule = RetrySchedule::new(delays).map_err(|m| {
                match m.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
                    Some((i, rest)) => ApiError::invalid(
                        format!("retry_schedule[{i}]"),
                        rest.trim_start_matches(':').trim(),
                    ),
                    None => ApiError::invalid("retry_schedule", m),
                }
            })?;
            Some(Some(schedule.to_json()))
        }
    };
    let max_in_flight = match input.max_in_flight {
        None => None,
        Some(None) => Some(None),
        Some(Some(n)) if (1..=1000).contains(&n) => Some(Some(n as i32)),
        Some(Some(n)) => {
            return Err(ApiError::invalid(
                "max_in_flight",
                format!("must be 1 to 1000, got {n}"),
            ));
        }
    };
    let rate_limit = match input.rate_limit {
        None => None,
        Some(None) => Some(None),
        Some(Some(value)) => {
            let rate: RateLimit = serde_json::from_value(value).map_err(|e| {
                ApiError::invalid(
                    "rate_limit",
                    format!("must be {{\"per_second\": number, \"burst\": integer}}: {e}"),
                )
            })?;
            rate.check()
                .map_err(|(field, m)| ApiError::invalid(format!("rate_limit.{field}"), m))?;
            Some(Some(serde_json::to_string(&rate).unwrap_or_default()))
        }
    };
    Ok(PolicyChanges {
        retry_schedule,
        max_in_flight,
        rate_limit,
        ordered: input.ordered,
    })
}

/// An endpoint as the API shows it; the secret only on creation and from `/secret`.
#[derive(Serialize, ToSchema)]
pub(super) struct EndpointOut {
    id: String,
    app_id: String,
    url: String,
    description: String,
    plugin: String,
    plugin_config: Value,
    filter_types: Vec<String>,
    /// The payload filter, `null` when there is none.
    filter: Option<String>,
    /// The validation handshake, `null` when the endpoint did not opt in.
    handshake: Option<HandshakeOut>,
    enabled: bool,
    disabled_reason: Option<String>,
    /// The endpoint's own schedule in ms, or `null` for the engine's default.
    retry_schedule: Option<Value>,
    max_in_flight: Option<i32>,
    /// The endpoint's own rate limit, or `null` for its plugin's platform default.
    rate_limit: Option<Value>,
    ordered: bool,
    health: HealthOut,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// For an ed25519 secret: the `whpk_` public key receivers verify with.
    public_key: Option<String>,
}

/// When the receiver agreed to receive events, and at what rate.
#[derive(Serialize, ToSchema)]
struct HandshakeOut {
    validated_at: String,
    /// `WebHook-Allowed-Rate`, requests per minute; `null` for no limit.
    allowed_rate: Option<i32>,
}

/// The circuit breaker and the current failure streak.
#[derive(Serialize, ToSchema)]
struct HealthOut {
    /// `closed`, `open` or `half_open`.
    breaker: &'static str,
    /// When an open breaker lets its next probe through.
    breaker_retry_at: Option<String>,
    breaker_opened_at: Option<String>,
    consecutive_failures: i32,
    failing_since: Option<String>,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    last_error: Option<String>,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> EndpointOut {
        let h = e.health;
        EndpointOut {
            id: e.id,
            app_id: e.app_id,
            url: e.url,
            description: e.description,
            plugin: e.plugin,
            plugin_config: serde_json::from_str(&e.plugin_config).unwrap_or(Value::Null),
            filter_types: serde_json::from_str(&e.filter_types).unwrap_or_default(),
            filter: e.filter,
            handshake: e.handshake_at.map(|at| HandshakeOut {
                validated_at: rfc3339(at),
                allowed_rate: e.handshake_rate,
            }),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            retry_schedule: e
                .retry_schedule
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            max_in_flight: e.max_in_flight,
            rate_limit: e
                .rate_limit
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            ordered: e.ordered,
            health: HealthOut {
                breaker: BreakerState::from_i16(h.breaker_state).name(),
                breaker_retry_at: (h.breaker_state != 0)
                    .then_some(h.breaker_retry_at)
                    .flatten()
                    .map(rfc3339),
                breaker_opened_at: (h.breaker_state != 0)
                    .then_some(h.breaker_opened_at)
                    .flatten()
                    .map(rfc3339),
                consecutive_failures: h.consecutive_failures,
                failing_since: h.failing_since.map(rfc3339),
                last_success_at: h.last_success_at.map(rfc3339),
                last_failure_at: h.last_failure_at.map(rfc3339),
                last_error: h.last_error,
            },
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            secret: None,
            public_key: public_key(&e.secret),
        }
    }
}

/// Checks an endpoint URL: its form, and the SSRF guard on its host (an IP
/// literal, or what a name resolves to now; a name that does not resolve yet
/// is accepted and checked again at every connection).
async fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::invalid(
            "url",
            format!("{} bytes, the limit is {MAX_URL}", url.len()),
        ));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| ApiError::invalid("url", format!("not a valid URL: {e}")))?;
    if parsed.fragment().is_some() {
        return Err(ApiError::invalid("url", "must not contain a fragment"));
    }
    // Scheme, credentials, host and an IP literal: the same check the sender
    // makes before every request.
    state
        .network
        .check_url(&parsed)
        .map_err(|why| ApiError::invalid("url", why))?;
    if let Some(url::Host::Domain(name)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(80);
        let lookup = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            state.network.resolve(name, port),
        )
        .await;
        if let Ok(Err(why)) = lookup
            && !why.contains("does not resolve")
        {
            return Err(ApiError::invalid("url", why));
        }
    }
    Ok(())
}

fn check_filters(filters: &[String]) -> Result<String, ApiError> {
    TypeFilter::parse(filters).map_err(|m| {
        // The parser's message starts with "[i] …"; attach it to the field.
        match m.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
            Some((i, rest)) => ApiError::invalid(format!("filter_types[{i}]"), rest.trim_start()),
            None => ApiError::invalid("filter_types", m),
        }
    })?;
    Ok(serde_json::to_string(filters).unwrap_or_else(|_| "[]".into()))
}

/// Runs the validation handshake against `url`; the receiver's refusal is a
/// 422 on `url`. Returns the rate it allowed, per minute.
async fn handshake(state: &AppState, url: &str) -> Result<Option<i32>, ApiError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ApiError::invalid("url", format!("not a valid URL: {e}")))?;
    let rate = state
        .sender
        .handshake(&parsed, &state.webhook_origin)
        .await
        .map_err(|why| ApiError::invalid("url", format!("validation handshake: {why}")))?;
    Ok(rate.map(|r| r.min(i32::MAX as u32) as i32))
}

/// A payload filter that compiles and uses only `event` and `data`; the
/// error says where it is wrong.
fn check_payload_filter(filter: &str) -> Result<(), ApiError> {
    PayloadFilter::compile(filter)
        .map(|_| ())
        .map_err(|m| ApiError::invalid("filter", m))
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    SigningKey::parse(secret)
        .map(|_| ())
        .map_err(|m| ApiError::invalid("secret", m))
}

/// Checks the plugin exists and accepts the config; returns the config as JSON text.
async fn check_plugin(
    state: &AppState,
    app_id: &str,
    plugin: &str,
    config: Option<Value>,
) -> Result<String, ApiError> {
    let config = config.unwrap_or_else(|| Value::Object(Default::default()));
    if !config.is_object() {
        return Err(ApiError::invalid("plugin_config", "must be a JSON object"));
    }
    let text = config.to_string();
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ApiError::invalid(
            "plugin_config",
            format!("{} bytes, the limit is {MAX_CONFIG_BYTES}", text.len()),
        ));
    }
    let Some(loaded) = state.host.registry.get(plugin) else {
        return Err(ApiError::invalid(
            "plugin",
            format!(
                "no plugin named {plugin:?} is loaded (loaded: {})",
                state.host.registry.names().join(", ")
            ),
        ));
    };
    let config_text = text.clone();
    let app = app_id.to_string();
    // The client waits for this answer: the plugin gets the API's shorter deadline.
    let deadline = Some(state.host.limits().validate_timeout);
    let verdict =
        tokio::task::spawn_blocking(move || loaded.validate_config(&app, &config_text, deadline))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    match verdict {
        Ok(()) => Ok(text),
        Err(CallError::Guest(g)) => {
            let message = match g.0 {
                GuestError::BadConfig(m) | GuestError::BadEvent(m) | GuestError::Internal(m) => m,
            };
            Err(ApiError::invalid("plugin_config", message))
        }
        Err(e) => Err(ApiError::invalid(
            "plugin",
            format!("plugin {plugin:?} failed to check the config: {e}"),
        )),
    }
}

/// Add an endpoint to an app; the answer carries its secret.
#[utoipa::path(post, path = "/{app_id}/endpoints", tag = "endpoints", params(("app_id" = String, Path)), request_body = CreateEndpoint,
    responses((status = 201, body = EndpointOut), (status = "4XX", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let input: CreateEndpoint = parse_json(body)?;
    let out = create_endpoint(&state, app_id, new_id("ep"), input).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Checks and stores a new endpoint `id` of `app_id`: the API's create, and
/// an endpoint declared in the config file. The answer carries the secret.
pub(super) async fn create_endpoint(
    state: &AppState,
    app_id: String,
    id: String,
    input: CreateEndpoint,
) -> Result<EndpointOut, ApiError> {
    let state = state.clone();
    let lookup = app_id.clone();
    state.store.read(move |c| apps::get(c, &lookup)).await?;
    check_url(&state, &input.url).await?;
    if input.description.len() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(
            "description",
            format!("the limit is {MAX_DESCRIPTION} bytes"),
        ));
    }
    let filter_types = check_filters(&input.filter_types)?;
    if let Some(filter) = &input.filter {
        check_payload_filter(filter)?;
    }
    let secret = match input.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(input.signature.as_deref())?,
    };
    let policy = check_policy(input.policy)?;
    let plugin = input.plugin.unwrap_or_else(|| DEFAULT_PLUGIN.into());
    let plugin_config = check_plugin(&state, &app_id, &plugin, input.plugin_config).await?;
    let now = now_ms();
    let enabled = input.enabled.unwrap_or(true);
    let mut endpoint = Endpoint::new(
        id,
        app_id,
        input.url,
        input.description,
        plugin,
        plugin_config,
        filter_types,
        secret.clone(),
        now,
    );
    endpoint.enabled = enabled;
    endpoint.disabled_reason = (!enabled).then(|| "disabled by operator".to_string());
    endpoint.retry_schedule = policy.retry_schedule.flatten();
    endpoint.max_in_flight = policy.max_in_flight.flatten();
    endpoint.rate_limit = policy.rate_limit.flatten();
    endpoint.ordered = policy.ordered.unwrap_or(false);
    endpoint.filter = input.filter;
    if input.handshake {
        endpoint.handshake_rate = handshake(&state, &endpoint.url).await?;
        endpoint.handshake_at = Some(now_ms());
    }
    let row = endpoint.clone();
    let sealer = state.store.sealer();
    state
        .store
        .write(move |c| endpoints::insert(c, &sealer, &row))
        .await?;
    let mut out = EndpointOut::from(endpoint);
    out.secret = Some(secret);
    Ok(out)
}

/// An app's endpoints with their health.
#[utoipa::path(get, path = "/{app_id}/endpoints", tag = "endpoints", params(("app_id" = String, Path), Page),
    responses((status = 200, description = "`{data: [Endpoint], next_cursor}`"), (status = "4XX", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit()?;
    let sealer = state.store.sealer();
    let rows = state
        .store
        .read(move |c| {
            apps::get(c, &app_id)?;
            endpoints::list(c, &sealer, &app_id, p.cursor.as_deref(), limit)
        })
        .await?;
    let out: Vec<EndpointOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(page(out, limit, |e| e.id.clone())))
}

/// One endpoint, its settings and health.
#[utoipa::path(get, path = "/{app_id}/endpoints/{endpoint_id}", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointOut), (status = "4XX", body = ErrorBody)))]
async fn fetch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    let sealer = state.store.sealer();
    let endpoint = state
        .store
        .read(move |c| endpoints::get(c, &sealer, &app_id, &endpoint_id))
        .await?;
    Ok(Json(endpoint.into()))
}

/// The endpoint's signing secret (and the previous one during a rotation).
#[utoipa::path(get, path = "/{app_id}/endpoints/{endpoint_id}/secret", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, description = "`{secret, public_key, previous_secret_expires_at}`"), (status = "4XX", body = ErrorBody)))]
async fn secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let sealer = state.store.sealer();
    let endpoint = state
        .store
        .read(move |c| endpoints::get(c, &sealer, &app_id, &endpoint_id))
        .await?;
    Ok(Json(secret_out(&endpoint)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// How far back, e.g. `1h`, `24h`, `7d` (default 24 h, at most 30 days).
    window: Option<String>,
}

/// Longest statistics window.
const MAX_STATS_WINDOW: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// An endpoint's attempts over a window: how many, by outcome, the success
/// rate and latency percentiles, with its current health and queue.
/// Attempts over a window by outcome, success rate, latency percentiles, queue and health.
#[utoipa::path(get, path = "/{app_id}/endpoints/{endpoint_id}/stats", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path), StatsQuery),
    responses((status = 200, description = "Statistics"), (status = "4XX", body = ErrorBody)))]
async fn stats(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let window = match query.window.as_deref() {
        None => std::time::Duration::from_secs(24 * 3600),
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|w| !w.is_zero() && *w <= MAX_STATS_WINDOW)
            .ok_or_else(|| {
                ApiError::invalid("window", "must be a duration such as 1h or 7d, at most 30d")
            })?,
    };
    let now = now_ms();
    let since = now - window.as_millis() as i64;
    let sealer = state.store.sealer();
    let spans = spans(since, now);
    let asked = spans.clone();
    let (endpoint, attempts, (pending, held)) = state
        .store
        .read(move |c| {
            let endpoint = endpoints::get(c, &sealer, &app_id, &endpoint_id)?;
            let attempts = deliveries::endpoint_attempt_stats(c, &endpoint.id, since, &asked)?;
            let queue = deliveries::endpoint_queue(c, &endpoint.id)?;
            Ok((endpoint, attempts, queue))
        })
        .await?;
    let counts = attempts.by_outcome;
    let mut durations = attempts.durations_ms;
    let series = series(&spans, &attempts.by_span);
    let count = |outcome: AttemptOutcome| {
        counts
            .iter()
            .filter(|(o, _)| *o == outcome as i16)
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let success = count(AttemptOutcome::Success);
    // Attempts that sent something and heard back a verdict (a skipped one
    // had nothing to send).
    let judged = total - count(AttemptOutcome::Skipped);
    durations.sort_unstable();
    let percentile = |p: f64| -> Option<i64> {
        let last = durations.len().checked_sub(1)?;
        Some(durations[((last as f64) * p).round() as usize])
    };
    let health: EndpointOut = endpoint.into();
    Ok(Json(serde_json::json!({
        "endpoint_id": health.id,
        "window_seconds": window.as_secs(),
        "since": rfc3339(since),
        "attempts": total,
        "by_outcome": {
            "success": success,
            "retry": count(AttemptOutcome::Retry),
            "failed": count(AttemptOutcome::Failed),
            "held": count(AttemptOutcome::Held),
            "skipped": count(AttemptOutcome::Skipped),
        },
        "success_rate": (judged > 0).then(|| success as f64 / judged as f64),
        "latency_ms": {
            "p50": percentile(0.50),
            "p90": percentile(0.90),
            "p99": percentile(0.99),
            "max": durations.last(),
            // Percentiles are over the most recent attempts, at most this many.
            "sampled": durations.len(),
        },
        "queue": { "pending": pending, "held": held },
        "health": health.health,
        "series": series,
    })))
}

/// Bars of the statistics' chart.
const SERIES_BUCKETS: i64 = 24;

/// The window cut into [`SERIES_BUCKETS`] equal spans, `[from, to)` in ms,
/// oldest first; the last ends now.
fn spans(since: i64, now: i64) -> Vec<(i64, i64)> {
    let span = ((now - since) / SERIES_BUCKETS).max(1);
    (0..SERIES_BUCKETS)
        .map(|i| {
            let from = since + i * span;
            let to = if i == SERIES_BUCKETS - 1 {
                now + 1
            } else {
                from + span
            };
            (from, to)
        })
        .collect()
}

/// Each span with its successful and failed attempts (a retry or a final
/// failure): `[{start, success, failed}]`, oldest first.
fn series(spans: &[(i64, i64)], counts: &[Vec<(i16, i64)>]) -> Value {
    Value::Array(
        spans
            .iter()
            .zip(counts)
            .map(|(&(from, _), counts)| {
                let sum = |wanted: &[AttemptOutcome]| -> i64 {
                    counts
                        .iter()
                        .filter(|(o, _)| wanted.iter().any(|w| *w as i16 == *o))
                        .map(|(_, n)| n)
                        .sum()
                };
                serde_json::json!({
                    "start": rfc3339(from),
                    "success": sum(&[AttemptOutcome::Success]),
                    "failed": sum(&[AttemptOutcome::Retry, AttemptOutcome::Failed]),
                })
            })
            .collect(),
    )
}

fn secret_out(endpoint: &Endpoint) -> Value {
    let public = public_key(&endpoint.secret);
    let overlap = endpoint
        .previous_secret_expires_at
        .filter(|until| *until > now_ms());
    serde_json::json!({
        "secret": endpoint.secret,
        "public_key": public,
        // While a rotation's overlap lasts, the old secret signs too.
        "previous_secret_valid_until": overlap.map(rfc3339),
    })
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    /// The new secret; generated when absent.
    secret: Option<String>,
    /// The scheme of a generated secret; the current one's when absent.
    signature: Option<String>,
}

/// `POST …/secret/rotate`: a new secret becomes current; the old one keeps
/// signing (a second signature on every request) for the overlap, so
/// receivers can switch without a gap.
/// A new secret; the old one keeps signing for the rotation overlap.
#[utoipa::path(post, path = "/{app_id}/endpoints/{endpoint_id}/secret/rotate", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = RotateSecret,
    responses((status = 200, description = "The secrets in force"), (status = "4XX", body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let input: RotateSecret = match &body {
        Ok(b) if b.is_empty() => RotateSecret::default(),
        _ => parse_json(body)?,
    };
    let secret = match input.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => match input.signature.as_deref() {
            Some(scheme) => generate_secret(Some(scheme))?,
            // The current scheme: look it up first.
            None => {
                let (a, e) = (app_id.clone(), endpoint_id.clone());
                let sealer = state.store.sealer();
                let current = state
                    .store
                    .read(move |c| endpoints::get(c, &sealer, &a, &e))
                    .await?;
                let scheme = if public_key(&current.secret).is_some() {
                    "ed25519"
                } else {
                    "hmac"
                };
                generate_secret(Some(scheme))?
            }
        },
    };
    let now = now_ms();
    let until = now + state.secret_rotation_overlap.as_millis() as i64;
    let sealer = state.store.sealer();
    let endpoint = state
        .store
        .write(move |c| {
            endpoints::rotate_secret(c, &sealer, &app_id, &endpoint_id, &secret, until, now)
        })
        .await?;
    tracing::info!(endpoint = %endpoint.id, "endpoint secret rotated");
    Ok(Json(secret_out(&endpoint)))
}

/// Change an endpoint: absent fields stay, `null` returns a policy to the default.
#[utoipa::path(patch, path = "/{app_id}/endpoints/{endpoint_id}", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointOut), (status = "4XX", body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointOut>, ApiError> {
    let input: UpdateEndpoint = parse_json(body)?;
    Ok(Json(
        update_endpoint(&state, app_id, endpoint_id, input).await?,
    ))
}

/// Checks and applies changes to an endpoint: the API's update, and a
/// declared endpoint whose fields in the config file changed.
pub(super) async fn update_endpoint(
    state: &AppState,
    app_id: String,
    endpoint_id: String,
    input: UpdateEndpoint,
) -> Result<EndpointOut, ApiError> {
    let state = state.clone();
    let (a, e) = (app_id.clone(), endpoint_id.clone());
    let sealer = state.store.sealer();
    let current = state
        .store
        .read(move |c| endpoints::get(c, &sealer, &a, &e))
        .await?;
    let mut changes = EndpointChanges {
        updated_at: Some(now_ms()),
        ..Default::default()
    };
    if let Some(url) = &input.url {
        check_url(&state, url).await?;
        changes.url = Some(url.clone());
    }
    // The handshake runs when asked for, and again for a new URL while on.
    let handshake_on = input.handshake.unwrap_or(current.handshake_at.is_some());
    if handshake_on && (input.handshake == Some(true) || input.url.is_some()) {
        let url = input.url.as_deref().unwrap_or(&current.url);
        changes.handshake_rate = Some(handshake(&state, url).await?);
        changes.handshake_at = Some(Some(now_ms()));
    } else if input.handshake == Some(false) {
        changes.handshake_at = Some(None);
        changes.handshake_rate = Some(None);
    }
    if let Some(d) = input.description {
        if d.len() > MAX_DESCRIPTION {
            return Err(ApiError::invalid(
                "description",
                format!("the limit is {MAX_DESCRIPTION} bytes"),
            ));
        }
        changes.description = Some(d);
    }
    if let Some(f) = input.filter_types {
        changes.filter_types = Some(check_filters(&f)?);
    }
    if let Some(filter) = input.filter {
        if let Some(text) = &filter {
            check_payload_filter(text)?;
        }
        changes.filter = Some(filter);
    }
    if let Some(s) = input.secret {
        check_secret(&s)?;
        changes.secret = Some(s);
    }
    // A new plugin or config is checked by the plugin that will use it.
    if input.plugin.is_some() || input.plugin_config.is_some() {
        let plugin = input.plugin.unwrap_or(current.plugin);
        let config = match input.plugin_config {
            Some(c) => Some(c),
            None => serde_json::from_str(&current.plugin_config).ok(),
        };
        changes.plugin_config = Some(check_plugin(&state, &app_id, &plugin, config).await?);
        changes.plugin = Some(plugin);
    }
    if let Some(enabled) = input.enabled {
        changes.enabled = Some(enabled);
        changes.disabled_reason = Some((!enabled).then(|| "disabled by operator".to_string()));
    }
    let policy = check_policy(input.policy)?;
    changes.retry_schedule = policy.retry_schedule;
    changes.max_in_flight = policy.max_in_flight;
    changes.rate_limit = policy.rate_limit;
    changes.ordered = policy.ordered;
    let sealer = state.store.sealer();
    let (updated, toggled) = state
        .store
        .write(move |c| {
            let now = now_ms();
            let (updated, toggled) =
                endpoints::update(c, &sealer, &app_id, &endpoint_id, &changes, now)?;
            if toggled.disabled {
                health::emit(
                    c,
                    &sealer,
                    health::DISABLED,
                    &updated,
                    &updated.health,
                    Some("disabled by operator"),
                    now,
                )?;
            }
            Ok((updated, toggled))
        })
        .await?;
    if toggled.enabled || toggled.disabled {
        // Held deliveries resumed, or an operational event to send.
        state.handoff.wake.notify_one();
    }
    Ok(updated.into())
}

/// Remove an endpoint.
#[utoipa::path(delete, path = "/{app_id}/endpoints/{endpoint_id}", tag = "endpoints", params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .write(move |c| endpoints::soft_delete(c, &app_id, &endpoint_id, now_ms()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
