//! The command line exactly as typed (clap). `crate::config` turns it into
//! the validated configuration the engine runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::store::{DatabaseUrl, Durability};

/// The port `hookline serve` listens on unless told otherwise ("HOOK" on a phone keypad).
pub const DEFAULT_PORT: u16 = 4665;

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Webhook and chat-notification delivery engine with WebAssembly plugins"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    /// How logs are written to stderr: `text` (coloured only on a terminal)
    /// or `json` (one object per line, for log pipelines). `HOOKLINE_LOG`
    /// sets the levels (e.g. `info,hookline::delivery=debug`).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HOOKLINE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine: HTTP API, dispatcher and plugin host.
    Serve(Box<ServeArgs>),
    /// Work with plugins: the engine's (`list`, `lift`) and plugin files
    /// (`new`, `test`, `bench`).
    #[command(visible_alias = "plugins")]
    Plugin(PluginGroup),
    /// Apps of a running engine.
    Apps(super::api_args::Apps),
    /// Endpoints of an app: add, list, show, update, enable, disable,
    /// remove, rotate-secret, recover, test, stats.
    Endpoints(super::api_args::Endpoints),
    /// Emit, show and replay events.
    Events(super::api_args::Events),
    /// What was sent where: list, show with attempts, retry.
    Deliveries(super::api_args::Deliveries),
    /// Retries, recoveries and replays, with their progress.
    Operations(super::api_args::Operations),
    /// API keys: list, create, revoke.
    Keys(super::api_args::Keys),
    /// Print a shell completion script (`hookline completions bash >
    /// /etc/bash_completion.d/hookline`).
    Completions { shell: clap_complete::Shell },
    /// Measure end-to-end delivery throughput and latency on this machine.
    Bench(BenchArgs),
    /// Measure the claim path alone (claim and complete, no sending) with
    /// 1…N workers on one database: what processes sharing it contend on.
    BenchClaims(BenchClaimsArgs),
    /// Keys that encrypt endpoint credentials at rest (`HOOKLINE_SECRET_KEY`).
    #[command(subcommand)]
    SecretKey(SecretKeyCommand),
    /// Apply the store's pending migrations and exit (`serve` applies them
    /// at start-up unless given --no-migrate).
    Migrate(MigrateArgs),
    /// Check a request's Standard Webhooks signature, as a receiver would
    /// (exit 0 valid, 1 invalid, 2 for bad input).
    Verify(VerifyArgs),
    /// Copy the SQLite store to a new file while the engine runs (a
    /// consistent snapshot, checked after it is written).
    Backup(BackupArgs),
    /// The configuration file (`hookline.toml`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move a SQLite store into an empty PostgreSQL database (stop the
    /// engine first): apps, endpoints, events, deliveries, attempts,
    /// operations and API keys, in one transaction.
    CopyStore(CopyStoreArgs),
}

/// The store's database: a SQLite file (the default) or a PostgreSQL server.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// The store: a SQLite file path, `sqlite://<path>`, or
    /// `postgres://user:password@host/database` [default: <data-dir>/hookline.db].
    #[arg(long = "database-url", alias = "database", env = "HOOKLINE_DATABASE_URL", value_parser = DatabaseUrl::parse)]
    pub database_url: Option<DatabaseUrl>,
}

impl DatabaseArgs {
    /// The URL given, or the SQLite file in the data directory.
    pub fn resolve(&self, data_dir: &std::path::Path) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::in_data_dir(data_dir))
    }
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The engine's data directory (where the default SQLite file is).
    #[arg(long, env = "HOOKLINE_DATA_DIR", default_value = "hookline-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print the configuration `serve` would run
    /// with (file, environment and defaults), secrets masked.
    Check(ConfigCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigCheckArgs {
    /// The file to check.
    #[arg(long, env = "HOOKLINE_CONFIG", default_value = "hookline.toml")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CopyStoreArgs {
    /// The SQLite store: a file path or `sqlite://<path>`.
    #[arg(long, value_parser = DatabaseUrl::parse)]
    pub from: DatabaseUrl,
    /// An empty PostgreSQL database: `postgres://user:password@host/database`.
    #[arg(long, value_parser = DatabaseUrl::parse)]
    pub to: DatabaseUrl,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The engine's data directory (where the default SQLite file is).
    #[arg(long, env = "HOOKLINE_DATA_DIR", default_value = "hookline-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The file to write; it must not exist yet.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SecretKeyCommand {
    /// Print a new random key for `HOOKLINE_SECRET_KEY`.
    New,
    /// Show which keys the stored endpoint credentials are sealed with
    /// (read-only; safe while the engine runs).
    Status(SecretKeyStatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct SecretKeyStatusArgs {
    /// The engine's data directory.
    #[arg(long, env = "HOOKLINE_DATA_DIR", default_value = "hookline-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML file of these settings, keyed by flag name
    /// (`max_in_flight = 512`); the environment and flags override it.
    #[arg(long, env = "HOOKLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "HOOKLINE_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Serve the API without API keys, every caller an admin. For development
    /// only: refused unless --listen is a loopback address.
    #[arg(long, env = "HOOKLINE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Directory for the database and plugin files (created if missing).
    #[arg(long, env = "HOOKLINE_DATA_DIR", default_value = "hookline-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Do not apply pending migrations at start-up; refuse to start while
    /// there are some (for deployments that run `hookline migrate` first).
    #[arg(long, env = "HOOKLINE_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Read connections to the database (each process; the writer has one
    /// more of its own).
    #[arg(long, env = "HOOKLINE_DATABASE_POOL", default_value_t = 4)]
    pub database_pool: u32,
    /// Directory of plugin `.wasm` files loaded at start-up [default: <data-dir>/plugins].
    #[arg(long, env = "HOOKLINE_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Commit durability: `full` survives power loss, `normal` survives a process crash.
    #[arg(long, env = "HOOKLINE_DURABILITY", value_enum, default_value = "full")]
    pub durability: Durability,
    /// Default retry schedule: the delays between attempts, comma-separated
    /// (an empty list means one attempt). Endpoints may set their own.
    #[arg(
        long,
        env = "HOOKLINE_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
    )]
    pub retry_schedule: String,
    /// Deliveries in flight at once, all endpoints together.
    #[arg(long, env = "HOOKLINE_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Requests in flight to one endpoint, unless the endpoint sets its own.
    #[arg(long, env = "HOOKLINE_ENDPOINT_MAX_IN_FLIGHT", default_value_t = 8)]
    pub endpoint_max_in_flight: usize,
    /// Consecutive failures after which an endpoint's circuit breaker opens
    /// (and `hookline.endpoint.failing` is emitted).
    #[arg(long, env = "HOOKLINE_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// How long an open breaker waits before its first probe; each failed probe doubles it.
    #[arg(long, env = "HOOKLINE_BREAKER_COOLDOWN", value_parser = humantime::parse_duration, default_value = "30s")]
    pub breaker_cooldown: Duration,
    /// The longest wait between two probes.
    #[arg(long, env = "HOOKLINE_BREAKER_MAX_COOLDOWN", value_parser = humantime::parse_duration, default_value = "30m")]
    pub breaker_max_cooldown: Duration,
    /// An endpoint failing without a single success for this long is disabled.
    #[arg(long, env = "HOOKLINE_DISABLE_AFTER", value_parser = humantime::parse_duration, default_value = "5days")]
    pub disable_after: Duration,
    /// How long delivered deliveries (and events left without deliveries) are kept.
    #[arg(long, env = "HOOKLINE_RETENTION", value_parser = humantime::parse_duration, default_value = "30days")]
    pub retention: Duration,
    /// How long failed deliveries (dead letters) are kept.
    #[arg(long, env = "HOOKLINE_RETENTION_FAILED", value_parser = humantime::parse_duration, default_value = "90days")]
    pub retention_failed: Duration,
    /// How often retention looks for what to prune.
    #[arg(long, env = "HOOKLINE_RETENTION_INTERVAL", value_parser = humantime::parse_duration, default_value = "1h")]
    pub retention_interval: Duration,
    /// Let outgoing requests reach this special-purpose range or host despite
    /// the SSRF guard (loopback, private, link-local … are refused by
    /// default). Repeat it or separate with commas: `127.0.0.0/8,::1`.
    #[arg(long, env = "HOOKLINE_ALLOW_NETWORK", value_delimiter = ',')]
    pub allow_network: Vec<String>,
    /// Resolve a host name to this address, like curl's `--resolve`
    /// (`name=address`); the address is still checked by the SSRF guard.
    #[arg(long, env = "HOOKLINE_RESOLVE", value_delimiter = ',')]
    pub resolve: Vec<String>,
    /// Timeout to connect to an endpoint.
    #[arg(long, env = "HOOKLINE_CONNECT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,
    /// Timeout of a whole request to an endpoint.
    #[arg(long, env = "HOOKLINE_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "15s")]
    pub request_timeout: Duration,
    /// Wall-clock deadline of one plugin call, time the plugin spends waiting in WASI included.
    #[arg(long, env = "HOOKLINE_PLUGIN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "1s")]
    pub plugin_timeout: Duration,
    /// Deadline of a plugin's `validate-config` when an endpoint is created or changed (the client waits for it).
    #[arg(long, env = "HOOKLINE_PLUGIN_VALIDATE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub plugin_validate_timeout: Duration,
    /// CPU budget of one plugin call, in wasmtime fuel (about one unit per Wasm instruction).
    #[arg(long, env = "HOOKLINE_PLUGIN_FUEL", default_value_t = crate::plugins::limits::DEFAULT_FUEL)]
    pub plugin_fuel: u64,
    /// CPU time of one plugin call on its thread, host calls included.
    #[arg(long, env = "HOOKLINE_PLUGIN_CPU_TIME", value_parser = humantime::parse_duration, default_value = "200ms")]
    pub plugin_cpu_time: Duration,
    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, env = "HOOKLINE_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,
    /// Memory all plugin instances together may hold, in MiB; with the per-instance cap it sets how many instances exist at once.
    #[arg(
        long,
        env = "HOOKLINE_PLUGIN_MEMORY_BUDGET_MIB",
        default_value_t = 4096
    )]
    pub plugin_memory_budget_mib: usize,
    /// Total body bytes the requests of one transform may hold, in KiB.
    #[arg(long, env = "HOOKLINE_PLUGIN_OUTPUT_KIB", default_value_t = 1024)]
    pub plugin_output_kib: usize,
    /// Faults in a row (traps, deadlines, CPU, memory, refused output) after which a plugin version is quarantined for the app whose calls faulted.
    #[arg(long, env = "HOOKLINE_PLUGIN_QUARANTINE_AFTER", default_value_t = 5)]
    pub plugin_quarantine_after: u32,
    /// How long a quarantine lasts before one probe call; doubled while probes fail (up to 16 times).
    #[arg(long, env = "HOOKLINE_PLUGIN_QUARANTINE_COOLDOWN", value_parser = humantime::parse_duration, default_value = "30s")]
    pub plugin_quarantine_cooldown: Duration,
    /// Largest `POST /v1/events` body, in KiB.
    #[arg(long, env = "HOOKLINE_MAX_BODY_KIB", default_value_t = 8192)]
    pub max_body_kib: usize,
    /// The DNS name this engine gives as `WebHook-Request-Origin` in the
    /// validation handshake of endpoints that opt in (`"handshake": true`).
    #[arg(long, env = "HOOKLINE_WEBHOOK_ORIGIN", default_value = "hookline")]
    pub webhook_origin: String,
    /// Largest `data` of one event, in KiB (JSON text as sent, or the bytes of binary data).
    #[arg(long, env = "HOOKLINE_MAX_DATA_KIB", default_value_t = 512)]
    pub max_data_kib: usize,
    /// Most events in one batch request.
    #[arg(long, env = "HOOKLINE_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// How long the secret a rotation replaces stays valid; meanwhile every request carries both signatures.
    #[arg(long, env = "HOOKLINE_SECRET_ROTATION_OVERLAP", value_parser = humantime::parse_duration, default_value = "24h")]
    pub secret_rotation_overlap: Duration,
    /// How long a claimed delivery stays leased to this process; if it dies,
    /// its deliveries are claimed again after this [default: 16 request timeouts + the connect timeout, at least 60s].
    #[arg(long, env = "HOOKLINE_LEASE", value_parser = humantime::parse_duration)]
    pub lease: Option<Duration>,
    /// How long shutdown waits for deliveries in flight.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "20s")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, clap::Args)]
pub struct PluginGroup {
    /// For `list` and `lift`, which ask a running engine.
    #[command(flatten)]
    pub connection: super::api_args::Connection,
    #[command(subcommand)]
    pub action: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The plugins a running engine serves, with their state and quarantines.
    List,
    /// Lift a plugin's quarantine (for one app, or every app); its held
    /// deliveries go now.
    Lift {
        /// The plugin's name.
        name: String,
        /// Lift it for this app only.
        #[arg(long)]
        app: Option<String>,
    },
    /// Create a new plugin crate that builds for wasm32-wasip2 and passes its own tests.
    New(PluginNewArgs),
    /// Load a plugin exactly as the engine does, run one event through it, and report
    /// the requests, the verdict on an answer, and what the calls cost against the limits.
    /// Exits with 1 when a call broke a limit.
    #[command(visible_alias = "check")]
    Test(PluginTestArgs),
    /// Measure the per-call cost of plugin transforms through wasmtime.
    Bench(PluginBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits, `-` and `_` (e.g. `pagerduty`).
    pub name: String,
    /// Directory to create the crate in; it becomes `<dir>/hookline-plugin-<name>`.
    #[arg(long, default_value = ".")]
    pub dir: std::path::PathBuf,
    /// Path of the hookline-sdk crate to depend on [default: the SDK this binary was built from,
    /// else hookline-sdk from crates.io].
    #[arg(long)]
    pub sdk_path: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The plugin component (`.wasm`).
    pub file: PathBuf,
    /// A CloudEvent (JSON file) to transform [default: a sample `order.created`].
    #[arg(long)]
    pub event: Option<PathBuf>,
    /// The endpoint's plugin config: a JSON file, or JSON text.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// The answer to read with `interpret-response`: its status.
    #[arg(long, default_value_t = 200)]
    pub response_status: u16,
    /// The answer's body: a file, or text.
    #[arg(long)]
    pub response_body: Option<String>,
    /// An answer header, `name: value` (repeatable).
    #[arg(long = "response-header")]
    pub response_headers: Vec<String>,
    /// The wall-clock deadline of a call.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub timeout: Duration,
    /// The CPU budget of a call, in fuel.
    #[arg(long, default_value_t = crate::plugins::limits::DEFAULT_FUEL)]
    pub fuel: u64,
    /// The CPU time of a call, host calls included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub cpu_time: Duration,
    /// The memory cap of an instance, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// The cap on one transform's request bodies, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub output_kib: usize,
}

#[derive(Debug, clap::Args)]
pub struct PluginBenchArgs {
    /// Plugin files to measure [default: every built-in plugin].
    pub files: Vec<PathBuf>,
    /// Timed calls per plugin.
    #[arg(long, default_value_t = 20_000)]
    pub calls: usize,
    /// The endpoint config every plugin gets: a JSON file, or JSON text.
    #[arg(long, default_value = "{}")]
    pub config: String,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Events to emit.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Bytes of `data` per event.
    #[arg(long, default_value_t = 1024)]
    pub data_bytes: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Plugin of the benchmark's endpoint.
    #[arg(long, default_value = "webhook")]
    pub plugin: String,
    /// Requests in flight to one endpoint, per engine process (passed to each
    /// as `--endpoint-max-in-flight`).
    #[arg(long, default_value_t = 1000)]
    pub endpoint_max_in_flight: u32,
    /// Endpoints in the benchmark's app; every event goes to each of them.
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// A payload filter (CEL) on every endpoint. To measure its cost, give
    /// one that every bench event satisfies, so the same deliveries are made.
    #[arg(long)]
    pub filter: Option<String>,
    /// Commit durability of the engine under test.
    #[arg(long, value_enum, default_value = "full")]
    pub durability: Durability,
    /// Run the engine on this database instead of a SQLite file in a
    /// temporary directory: `postgres://…` measures PostgreSQL (use an empty
    /// database; the bench leaves its rows there).
    #[arg(long = "database-url", value_parser = DatabaseUrl::parse)]
    pub database_url: Option<DatabaseUrl>,
    /// Engine processes sharing the one database (more than one needs
    /// `--database-url postgres://…`); events are emitted to them in turn,
    /// as a load balancer would.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Give up after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct BenchClaimsArgs {
    /// An empty database to fill and measure: a SQLite file or
    /// `postgres://…` (the bench leaves its rows there).
    #[arg(long = "database-url", value_parser = DatabaseUrl::parse)]
    pub database_url: DatabaseUrl,
    /// Pending deliveries, made due again for each worker count.
    #[arg(long, default_value_t = 20_000)]
    pub deliveries: usize,
    /// Endpoints they are spread over.
    #[arg(long, default_value_t = 50)]
    pub endpoints: usize,
    /// Deliveries per claim, at most.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Worker counts to measure, each a round of its own.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub workers: Vec<usize>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The endpoint's secret (`whsec_…`, `whsk_…`) or ed25519 public key
    /// (`whpk_…`).
    #[arg(long, env = "HOOKLINE_VERIFY_KEY", hide_env_values = true)]
    pub key: String,
    /// The request's headers as `name: value` lines (a request dump); they
    /// give webhook-id, webhook-timestamp and webhook-signature unless the
    /// flags below do.
    #[arg(long)]
    pub headers: Option<PathBuf>,
    /// The `webhook-id` header.
    #[arg(long)]
    pub id: Option<String>,
    /// The `webhook-timestamp` header (Unix seconds).
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// The `webhook-signature` header.
    #[arg(long)]
    pub signature: Option<String>,
    /// The body exactly as received: a file, or `-` for stdin.
    #[arg(long, default_value = "-")]
    pub body: PathBuf,
    /// How far `webhook-timestamp` may be from now.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub tolerance: Duration,
    /// Skip the timestamp check (to verify a request captured earlier).
    #[arg(long)]
    pub ignore_timestamp: bool,
}
