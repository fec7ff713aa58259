//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Counters and histograms are updated where things happen (ingest, each
//! attempt, each group commit, plugin loads); the queue depth, the oldest
//! pending delivery and the endpoints' breaker states are read from the
//! store when scraped, so every process on a shared database reports the
//! same queue. Labels are low-cardinality on purpose: plugin names and
//! outcomes, never app, endpoint or delivery ids (those are in the logs and
//! the API).
//!
//! One set per process ([`global`]): the metrics are the process's, and the
//! store, the dispatcher and the API each record into it without being
//! handed a registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of what [`Metrics::encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub plugin: String,
    /// success, retry, failed, held or skipped.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the engine exports.
pub struct Metrics {
    registry: Registry,
    pub events_ingested: Counter,
    pub events_duplicate: Counter,
    pub ingest_batch_events: Histogram,
    pub attempts: Family<AttemptLabels, Counter>,
    pub attempt_seconds: HistogramFamily<PluginLabels>,
    pub plugin_loads: Family<OutcomeLabels, Counter>,
    pub plugin_call_seconds: HistogramFamily<PluginLabels>,
    pub plugin_faults: Family<PluginLabels, Counter>,
    pub plugin_quarantines: Family<PluginLabels, Counter>,
    pub store_commit_seconds: Histogram,
    pub store_commit_jobs: Histogram,
    pub store_commit_failures: Counter,
    pub queue_pending: Gauge,
    pub queue_held: Gauge,
    pub oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub endpoints_by_breaker: Family<StateLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookline");
        let events_ingested = Counter::default();
        registry.register(
            "events_ingested",
            "Events accepted and stored (duplicates not counted)",
            events_ingested.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Events refused as duplicates of a stored event (same app, source and id)",
            events_duplicate.clone(),
        );
        let ingest_batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "ingest_batch_events",
            "Events per ingest request",
            ingest_batch_events.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by plugin and by what became of the delivery",
            attempts.clone(),
        );
        let attempt_seconds: HistogramFamily<PluginLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "attempt_duration",
            "Time of one delivery attempt: transform, signing, sending and reading the answer",
            Unit::Seconds,
            attempt_seconds.clone(),
        );
        let plugin_loads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "plugin_loads",
            "Plugin files loaded (loaded) or refused while the old version kept serving (refused)",
            plugin_loads.clone(),
        );
        let plugin_call_seconds: HistogramFamily<PluginLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "plugin_call_duration",
            "Wall-clock time of one plugin transform of a delivery, in the sandbox",
            Unit::Seconds,
            plugin_call_seconds.clone(),
        );
        let plugin_faults = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_faults",
            "Plugin calls that trapped, ran past a limit or produced refused output",
            plugin_faults.clone(),
        );
        let plugin_quarantines = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_quarantines",
            "Times a plugin version was quarantined for an app after repeated faults",
            plugin_quarantines.clone(),
        );
        let store_commit_seconds = latency_histogram();
        registry.register_with_unit(
            "store_commit_duration",
            "Time of one group commit of the store's writer",
            Unit::Seconds,
            store_commit_seconds.clone(),
        );
        let store_commit_jobs = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "store_commit_jobs",
            "Writes sharing one group commit",
            store_commit_jobs.clone(),
        );
        let store_commit_failures = Counter::default();
        registry.register(
            "store_commit_failures",
            "Group commits that failed (database unavailable or refused)",
            store_commit_failures.clone(),
        );
        let queue_pending = Gauge::default();
        registry.register(
            "queue_pending",
            "Deliveries pending (due now or later), read from the store when scraped",
            queue_pending.clone(),
        );
        let queue_held = Gauge::default();
        registry.register(
            "queue_held",
            "Deliveries held (endpoint disabled or plugin missing), read from the store when scraped",
            queue_held.clone(),
        );
        let oldest_pending_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "oldest_pending_age",
            "Age of the oldest pending delivery, read from the store when scraped",
            Unit::Seconds,
            oldest_pending_seconds.clone(),
        );
        let endpoints_by_breaker = Family::<StateLabels, Gauge>::default();
        registry.register(
            "endpoints_breaker",
            "Endpoints by circuit-breaker state (closed, open, half_open), read from the store when scraped",
            endpoints_by_breaker.clone(),
        );
        Metrics {
            registry,
            events_ingested,
            events_duplicate,
            ingest_batch_events,
            attempts,
            attempt_seconds,
            plugin_loads,
            plugin_call_seconds,
            plugin_faults,
            plugin_quarantines,
            store_commit_seconds,
            store_commit_jobs,
            store_commit_failures,
            queue_pending,
            queue_held,
            oldest_pending_seconds,
            endpoints_by_breaker,
        }
    }

    /// Records one delivery attempt.
    pub fn attempt(&self, plugin: &str, outcome: &str, took: Duration) {
        self.attempts
            .get_or_create(&AttemptLabels {
                plugin: plugin.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one plugin transform of a delivery.
    pub fn plugin_call(&self, plugin: &str, took: Duration) {
        self.plugin_call_seconds
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a plugin call's fault, and whether it quarantined the plugin.
    pub fn plugin_fault(&self, plugin: &str, quarantined: bool) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.plugin_faults.get_or_create(&labels).inc();
        if quarantined {
            self.plugin_quarantines.get_or_create(&labels).inc();
        }
    }

    /// Records a plugin file loaded or refused.
    pub fn plugin_load(&self, loaded: bool) {
        let outcome = if loaded { "loaded" } else { "refused" };
        self.plugin_loads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// This process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}
