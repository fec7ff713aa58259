//! The validated configuration the engine runs with, derived from the command
//! line (`cli::args`) with defaults resolved and limits checked.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::ensure;

use crate::cli::args::ServeArgs;
use crate::cloudevent::EventLimits;
use crate::delivery::net_guard::NetworkPolicy;
use crate::delivery::retention::Retention;
use crate::delivery::sender::SenderOptions;
use crate::delivery::{DispatcherOptions, HealthPolicy, RetryPolicy, RetrySchedule};
use crate::plugins::Limits;
use crate::store::sealed::Sealer;
use crate::store::{DatabaseUrl, StoreOptions};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `--insecure-no-auth`: no API keys (loopback only).
    pub insecure_no_auth: bool,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub plugins_dir: PathBuf,
    pub store: StoreOptions,
    pub retry: RetryPolicy,
    pub health: HealthPolicy,
    pub retention: Retention,
    pub dispatcher: DispatcherOptions,
    pub sender: SenderOptions,
    pub plugin_limits: Limits,
    pub network: std::sync::Arc<NetworkPolicy>,
    pub event_limits: EventLimits,
    pub max_body_bytes: usize,
    /// How long a rotated-out endpoint secret still signs.
    pub secret_rotation_overlap: std::time::Duration,
    /// `WebHook-Request-Origin` of the validation handshake.
    pub webhook_origin: String,
    /// Apps and endpoints the config file declares, applied at start-up.
    pub declared: Vec<DeclaredApp>,
}

/// An app declared in the config file (`[[apps]]`), with its endpoints.
#[derive(Debug, Clone, Default)]
pub struct DeclaredApp {
    pub id: String,
    pub name: String,
    pub endpoints: Vec<DeclaredEndpoint>,
}

/// An endpoint declared in the config file (`[[apps.endpoints]]`): its id
/// and the fields of the API's endpoint object it sets.
#[derive(Debug, Clone, Default)]
pub struct DeclaredEndpoint {
    pub id: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Config {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Config> {
        let schedule = RetrySchedule::parse(&args.retry_schedule)
            .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?;
        ensure!(
            (1..=1000).contains(&args.endpoint_max_in_flight),
            "--endpoint-max-in-flight must be 1 to 1000"
        );
        ensure!(
            args.breaker_threshold >= 1,
            "--breaker-threshold must be at least 1"
        );
        ensure!(
            !args.breaker_cooldown.is_zero(),
            "--breaker-cooldown must be more than 0"
        );
        ensure!(
            !args.retention_interval.is_zero(),
            "--retention-interval must be more than 0"
        );
        ensure!(
            (1..=10_000).contains(&args.max_in_flight),
            "--max-in-flight must be 1 to 10000"
        );
        ensure!(
            (1..=4096).contains(&args.plugin_memory_mib),
            "--plugin-memory-mib must be 1 to 4096"
        );
        ensure!(
            !args.plugin_timeout.is_zero()
                && !args.plugin_validate_timeout.is_zero()
                && !args.plugin_cpu_time.is_zero(),
            "--plugin-timeout, --plugin-validate-timeout and --plugin-cpu-time must be more than 0"
        );
        ensure!(
            args.plugin_fuel >= 1_000_000,
            "--plugin-fuel must be at least 1000000"
        );
        ensure!(
            args.plugin_memory_budget_mib >= 4 * args.plugin_memory_mib,
            "--plugin-memory-budget-mib must hold at least 4 instances of --plugin-memory-mib ({} MiB)",
            4 * args.plugin_memory_mib
        );
        ensure!(args.max_body_kib >= 1, "--max-body-kib must be at least 1");
        ensure!(
            !args.webhook_origin.is_empty()
                && args.webhook_origin.len() <= 253
                && args
                    .webhook_origin
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "--webhook-origin must be a DNS name, got {:?}",
            args.webhook_origin
        );
        ensure!(
            args.max_data_kib >= 1 && args.max_data_kib <= args.max_body_kib,
            "--max-data-kib must be 1 to --max-body-kib ({})",
            args.max_body_kib
        );
        ensure!(
            (1..=100_000).contains(&args.max_batch),
            "--max-batch must be 1 to 100000"
        );
        ensure!(
            !args.insecure_no_auth || args.listen.ip().is_loopback(),
            "--insecure-no-auth is refused with --listen {}: without API keys the API may only listen on a loopback address",
            args.listen
        );
        ensure!(
            (1..=256).contains(&args.database_pool),
            "--database-pool must be 1 to 256"
        );
        let database = args.database.resolve(&args.data_dir);
        let plugins_dir = args
            .plugins_dir
            .unwrap_or_else(|| args.data_dir.join("plugins"));
        let network = NetworkPolicy::new(&args.allow_network, &args.resolve)
            .map_err(|e| anyhow::anyhow!(e))?;
        let sender = SenderOptions {
            connect_timeout: args.connect_timeout,
            request_timeout: args.request_timeout,
        };
        // A lease must outlast the slowest delivery: every request of it timing out.
        let safe_lease = (args.request_timeout * 16 + args.connect_timeout)
            .max(std::time::Duration::from_secs(60));
        let lease = args.lease.unwrap_or(safe_lease);
        ensure!(
            lease >= std::time::Duration::from_secs(1),
            "--lease must be at least 1s"
        );
        if lease < args.request_timeout + args.connect_timeout {
            tracing::warn!(
                ?lease,
                "--lease is shorter than one request's timeouts: slow deliveries may be sent twice"
            );
        }
        let dispatcher = DispatcherOptions {
            max_in_flight: args.max_in_flight,
            claim_batch: args.max_in_flight.clamp(1, 128),
            lease,
            shutdown_grace: args.shutdown_grace,
            endpoint_max_in_flight: args.endpoint_max_in_flight,
            // Not a delivery that could outlive its lease: one request's
            // timeouts and a second to record the outcome (a loaded
            // database commits slowly), but never more than half the lease.
            min_lease_left: (args.request_timeout
                + args.connect_timeout
                + std::time::Duration::from_secs(1))
            .min(lease / 2),
            ..DispatcherOptions::default()
        };
        let health = HealthPolicy {
            threshold: args.breaker_threshold,
            cooldown: args.breaker_cooldown,
            max_cooldown: args.breaker_max_cooldown.max(args.breaker_cooldown),
            probe_window: lease,
            disable_after: args.disable_after,
        };
        Ok(Config {
            declared: Vec::new(),
            listen: args.listen,
            insecure_no_auth: args.insecure_no_auth,
            data_dir: args.data_dir,
            database,
            plugins_dir,
            store: StoreOptions {
                durability: args.durability,
                readers: args.database_pool,
                sealer: std::sync::Arc::new(Sealer::from_env()?),
                migrate: !args.no_migrate,
            },
            retry: RetryPolicy {
                schedule,
                ..RetryPolicy::default()
            },
            health,
            retention: Retention {
                delivered: args.retention,
                failed: args.retention_failed.max(args.retention),
                interval: args.retention_interval,
            },
            dispatcher,
            sender,
            plugin_limits: Limits {
                call_timeout: args.plugin_timeout,
                validate_timeout: args.plugin_validate_timeout,
                fuel: args.plugin_fuel,
                cpu_time: args.plugin_cpu_time,
                memory_bytes: args.plugin_memory_mib << 20,
                memory_budget: args.plugin_memory_budget_mib << 20,
                quarantine_cooldown: args.plugin_quarantine_cooldown,
                quarantine_after: args.plugin_quarantine_after.max(1),
                output_bytes: args.plugin_output_kib.max(1) << 10,
                ..Limits::default()
            },
            network: std::sync::Arc::new(network),
            event_limits: EventLimits {
                max_batch: args.max_batch,
                max_data_bytes: args.max_data_kib << 10,
            },
            max_body_bytes: args.max_body_kib << 10,
            secret_rotation_overlap: args.secret_rotation_overlap,
            webhook_origin: args.webhook_origin,
        })
    }
}
