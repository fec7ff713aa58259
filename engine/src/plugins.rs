//! The WebAssembly plugin host: loads integration plugins (components of the
//! `hookline:plugin` world), keeps the ones in service in a [`Registry`], and
//! runs their calls inside the sandbox's [`Limits`].
//!
//! Plugins get no files, network, environment or clock beyond WASI's empty
//! context; they may only log. Calls are synchronous and CPU-bound: callers
//! run them on a blocking thread, never on the async workers. Each loaded
//! version keeps a few warm instances; an instance is discarded after any trap
//! or limit breach, and after a bounded number of calls. This module renders
//! nothing and decides nothing about delivery: it answers "what does this
//! plugin say".

pub mod builtin;
pub mod cache;
pub mod limits;
pub mod registry;
pub mod reload;
pub mod wit;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use limits::Limits;
pub use registry::{Refusal, Registry};
pub use wit::GuestError;

/// What a plugin says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: serde_json::Value,
}

/// Where a loaded plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Compiled into the engine.
    Builtin,
    /// A `.wasm` file in the plugins directory.
    File(String),
}

/// An event as a plugin receives it.
#[derive(Debug, Clone, Copy)]
pub struct PluginEvent<'a> {
    pub id: &'a str,
    pub ty: &'a str,
    pub source: &'a str,
    pub subject: Option<&'a str>,
    pub time: &'a str,
    pub data: &'a str,
    pub extensions: &'a str,
    pub app_id: &'a str,
}

/// A request a plugin asks the engine to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    pub body: Vec<u8>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub query: Option<String>,
}

/// An endpoint's answer, as shown to a plugin.
#[derive(Debug, Clone)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A plugin's reading of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    RetryAfter(u32),
    Fail(String),
    DisableEndpoint(String),
}

/// Why a plugin call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error.
    #[error("{0}")]
    Guest(GuestErrorDisplay),
    /// The call trapped, ran past its deadline, or broke a sandbox limit.
    #[error("plugin failed: {0}")]
    Trap(String),
    /// The plugin's output broke a limit or a rule.
    #[error("plugin output refused: {0}")]
    Output(String),
}

/// `GuestError` with a message for logs and attempt records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestErrorDisplay(pub GuestError);

impl std::fmt::Display for GuestErrorDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            GuestError::BadConfig(m) => write!(f, "bad config: {m}"),
            GuestError::BadEvent(m) => write!(f, "bad event: {m}"),
            GuestError::Internal(m) => write!(f, "plugin error: {m}"),
        }
    }
}

/// The state a plugin instance's store carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: Arc<str>,
    /// Log lines left in this call; plugin logging is rate-limited.
    log_budget: u32,
}

/// Log lines one plugin call may write.
const LOG_LINES_PER_CALL: u32 = 10;
/// Warm instances kept per plugin version.
const MAX_WARM: usize = 16;
/// Calls after which a warm instance is retired, bounding what it can accumulate.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

impl HostState {
    fn new(plugin: Arc<str>, limits: &Limits) -> HostState {
        HostState {
            // No preopens, no environment, no inherited stdio, no network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            log_budget: LOG_LINES_PER_CALL,
        }
    }

    fn log(&mut self, level: tracing::Level, message: &str) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let message: String = message.chars().take(1024).collect();
        let plugin = &*self.plugin;
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            _ => tracing::error!(plugin, "{message}"),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The wasmtime engine, linker and limits shared by every plugin.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Option<cache::ArtifactCache>,
    /// Components compiled, and components loaded from the cache, so far.
    compiled: AtomicU32,
    from_cache: AtomicU32,
    pub registry: Registry,
}

impl PluginHost {
    /// Builds the engine (pooling allocator, epoch interruption) and starts
    /// the epoch ticker that enforces call deadlines. With `cache_dir`,
    /// compiled artifacts are kept there (see [`cache`]).
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Arc<PluginHost>> {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.max_memory_size(limits.memory_bytes)
            // Keeping a little memory resident between instances makes a
            // fresh instance cheap and lets the pool scale across threads.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(2 << 20)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = wasmtime::Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let linker = wit::linker(&engine)?;
        let cache = match cache_dir {
            Some(dir) => Some(
                cache::ArtifactCache::new(dir, &engine)
                    .with_context(|| format!("failed to create plugin cache {}", dir.display()))?,
            ),
            None => None,
        };
        let host = Arc::new(PluginHost {
            engine,
            linker,
            limits,
            cache,
            compiled: AtomicU32::new(0),
            from_cache: AtomicU32::new(0),
            registry: Registry::default(),
        });
        start_epoch_ticker(Arc::downgrade(&host));
        Ok(host)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// (compiled, loaded from the cache) components so far.
    pub fn load_counts(&self) -> (u32, u32) {
        (
            self.compiled.load(Ordering::Relaxed),
            self.from_cache.load(Ordering::Relaxed),
        )
    }

    /// Compiles (or takes from the cache) and checks a component: it links
    /// against a supported world, `info` answers, and a sample transform
    /// completes within the limits. Blocking: call off the runtime.
    pub fn load(&self, bytes: &[u8], source: PluginSource) -> anyhow::Result<LoadedPlugin> {
        let hash = hex(&Sha256::digest(bytes));
        let (component, how) = match &self.cache {
            Some(cache) => cache.load(&self.engine, bytes, &hash),
            None => Component::new(&self.engine, bytes)
                .map(|c| (c, cache::Loaded::Compiled))
                .map_err(anyhow::Error::from),
        }
        .context("not a valid WebAssembly component")?;
        match how {
            cache::Loaded::Compiled => self.compiled.fetch_add(1, Ordering::Relaxed),
            cache::Loaded::Cached => self.from_cache.fetch_add(1, Ordering::Relaxed),
        };
        let (pre, world) = wit::prepare(&self.linker, &component)?;
        let mut plugin = LoadedPlugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                config_schema: serde_json::Value::Null,
            },
            hash,
            world,
            source,
            loaded_at_ms: crate::id::now_ms(),
            name_tag: Arc::from("(loading)"),
            pre,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            warm: Mutex::new(Vec::new()),
            health: Health::default(),
        };
        let info = plugin
            .call(|store, b| b.info(store))
            .context("plugin's info call failed")?;
        check_name(&info.name)?;
        plugin.name_tag = Arc::from(info.name.as_str());
        plugin.info = info;
        // A plugin that cannot turn a plain event into requests within the
        // limits would fail every delivery: refuse it now. Its own errors
        // (a config it needs, an event it does not take) are fine.
        match plugin.transform(&SAMPLE_EVENT, "{}") {
            Ok(_) | Err(CallError::Guest(_)) => {}
            Err(e) => anyhow::bail!("sample transform failed: {e}"),
        }
        plugin.health.reset();
        Ok(plugin)
    }

    /// Loads a plugin file; the error says which file and why.
    pub fn load_file(&self, path: &Path) -> anyhow::Result<LoadedPlugin> {
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
        self.load(&bytes, PluginSource::File(path.display().to_string()))
            .with_context(|| format!("plugin file {} refused", path.display()))
    }
}

/// The event a plugin must handle when it is loaded.
const SAMPLE_EVENT: PluginEvent<'static> = PluginEvent {
    id: "hookline-load-check",
    ty: "hookline.plugin.check",
    source: "hookline",
    subject: Some("load check"),
    time: "2026-01-01T00:00:00Z",
    data: r#"{"message":"Hookline checks that a plugin handles this event when loading it","count":1,"ok":true,"url":"https://example.com/"}"#,
    extensions: "{}",
    app_id: "app_check",
};

/// Consecutive failed calls (traps, deadlines, limits) and the quarantine
/// they lead to.
#[derive(Default)]
struct Health {
    consecutive_failures: AtomicU32,
    quarantined: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    fn reset(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.quarantined.store(false, Ordering::Relaxed);
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    anyhow::ensure!(
        ok,
        "plugin name {name:?} must be 1 to 64 characters of a-z, 0-9, - and _"
    );
    Ok(())
}

fn start_epoch_ticker(host: Weak<PluginHost>) {
    std::thread::Builder::new()
        .name("hookline-epoch".into())
        .spawn(move || {
            while let Some(host) = host.upgrade() {
                host.engine.increment_epoch();
                drop(host);
                std::thread::sleep(limits::EPOCH_TICK);
            }
        })
        .expect("failed to start the epoch ticker thread");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Warm {
    store: Store<HostState>,
    bindings: wit::Bindings,
    calls: u32,
}

/// One loaded version of a plugin.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    /// The WIT world version it was built against.
    pub world: &'static str,
    pub source: PluginSource,
    pub loaded_at_ms: i64,
    name_tag: Arc<str>,
    pre: wit::Pre,
    engine: Engine,
    limits: Limits,
    warm: Mutex<Vec<Warm>>,
    health: Health,
}

impl LoadedPlugin {
    /// Whether this version is quarantined after repeated failures; its
    /// deliveries wait until a new version is loaded.
    pub fn is_quarantined(&self) -> bool {
        self.health.quarantined.load(Ordering::Relaxed)
    }

    /// The last failure of a call, if any.
    pub fn last_error(&self) -> Option<String> {
        self.health
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Turns an event into requests, and checks them against the output limits.
    pub fn transform(
        &self,
        event: &PluginEvent<'_>,
        config: &str,
    ) -> Result<Vec<PluginRequest>, CallError> {
        let requests = self
            .call(|store, b| b.transform(store, event, config))
            .map_err(|e| CallError::Trap(format!("{e:#}")))?
            .map_err(|e| CallError::Guest(GuestErrorDisplay(e)))?;
        limits::check_output(&requests, &self.limits).map_err(CallError::Output)?;
        Ok(requests)
    }

    /// Checks an endpoint's config.
    pub fn validate_config(&self, config: &str) -> Result<(), CallError> {
        self.call(|store, b| b.validate_config(store, config))
            .map_err(|e| CallError::Trap(format!("{e:#}")))?
            .map_err(|e| CallError::Guest(GuestErrorDisplay(e)))
    }

    /// The plugin's reading of an answer; `None` for the standard rules.
    pub fn interpret_response(
        &self,
        response: &PluginResponse,
        config: &str,
    ) -> Result<Option<Verdict>, CallError> {
        self.call(|store, b| b.interpret_response(store, response, config))
            .map_err(|e| CallError::Trap(format!("{e:#}")))
    }

    /// Drops the warm instances, so the next calls start fresh ones.
    pub fn drop_warm(&self) {
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs one call on a warm instance (or a fresh one) under the limits.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &wit::Bindings) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match warm {
            Some(w) => w,
            None => self.instantiate()?,
        };
        instance
            .store
            .set_epoch_deadline(self.limits.deadline_ticks());
        instance.store.data_mut().log_budget = LOG_LINES_PER_CALL;
        let started = Instant::now();
        match f(&mut instance.store, &instance.bindings) {
            Ok(r) => {
                self.health.consecutive_failures.store(0, Ordering::Relaxed);
                instance.calls += 1;
                if instance.calls < MAX_CALLS_PER_INSTANCE {
                    let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
                    if warm.len() < MAX_WARM {
                        warm.push(instance);
                    }
                }
                Ok(r)
            }
            // The instance is dropped: after a trap its state is not to be trusted.
            Err(e) => {
                let e = self.explain(e, started);
                self.record_failure(&e);
                Err(e)
            }
        }
    }

    fn record_failure(&self, e: &anyhow::Error) {
        *self
            .health
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
        let n = self
            .health
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n >= self.limits.quarantine_after
            && !self.health.quarantined.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                plugin = %self.info.name, version = %self.info.version, failures = n, error = format!("{e:#}"),
                "plugin quarantined after consecutive failures; its deliveries wait for a new version"
            );
        }
    }

    fn instantiate(&self) -> anyhow::Result<Warm> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(self.name_tag.clone(), &self.limits),
        );
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.explain(e, Instant::now()))
            .context("failed to instantiate plugin")?;
        Ok(Warm {
            store,
            bindings,
            calls: 0,
        })
    }

    fn explain(&self, e: wasmtime::Error, started: Instant) -> anyhow::Error {
        if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
            return anyhow::anyhow!(
                "call exceeded the deadline of {} ms (ran {} ms)",
                self.limits.call_timeout.as_millis(),
                started.elapsed().as_millis()
            );
        }
        let text = format!("{e:#}");
        if text.contains("growing memory") {
            return anyhow::anyhow!(
                "call exceeded the memory limit of {} MiB",
                self.limits.memory_bytes >> 20
            );
        }
        anyhow::anyhow!("trapped: {}", text.chars().take(2000).collect::<String>())
    }
}
