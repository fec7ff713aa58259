//! The WebAssembly plugin host: loads integration plugins (components of the
//! `hookline:plugin` world), keeps the ones in service in a [`Registry`], and
//! runs their calls inside the sandbox's [`Limits`].
//!
//! Plugins get no files, network, environment or clock beyond WASI's empty
//! context; they may only log. Callers run calls on a blocking thread, never
//! on the async workers; [`sandbox`] bounds each one (deadline, fuel, memory,
//! what the host lifts) and keeps warm instances per app, and [`quarantine`]
//! holds a plugin version back from an app whose calls keep faulting. This
//! module renders nothing and decides nothing about delivery: it answers
//! "what does this plugin say".

pub mod builtin;
pub mod cache;
pub mod limits;
pub mod quarantine;
pub mod registry;
pub mod reload;
pub mod sandbox;
pub mod sdk_version;
pub mod wit;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

pub use limits::Limits;
pub use quarantine::Admission;
pub use registry::{Refusal, Registry};
pub use sandbox::{CallCost, Fault, Usage};
pub use wit::GuestError;

use sandbox::{HostState, Instances, Sandbox};

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
    Fault(Fault),
    /// The plugin's output broke a limit or a rule.
    #[error("plugin output refused: {0}")]
    Output(String),
    /// The plugin version is quarantined for this app: the call did not run.
    #[error("plugin quarantined for this app: {reason}")]
    Quarantined { until_ms: i64, reason: String },
}

/// `GuestError` with a message for logs and attempt records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestErrorDisplay(pub GuestError);

impl std::fmt::Display for GuestErrorDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            GuestError::BadConfig(m) => write!(f, "bad config: {}", limits::cut(m)),
            GuestError::BadEvent(m) => write!(f, "bad event: {}", limits::cut(m)),
            GuestError::Internal(m) => write!(f, "plugin error: {}", limits::cut(m)),
        }
    }
}

/// The wasmtime engine, linker and limits shared by every plugin.
pub struct PluginHost {
    sandbox: Arc<Sandbox>,
    linker: Linker<HostState>,
    cache: Option<cache::ArtifactCache>,
    /// Components compiled, and components loaded from the cache, so far.
    compiled: AtomicU32,
    from_cache: AtomicU32,
    /// Where quarantine changes go (the server resumes or postpones the
    /// deliveries that wait on them).
    changes: Mutex<Option<ChangeSink>>,
    pub registry: Registry,
}

/// Receives (plugin name, change) when a plugin's quarantine for an app
/// opens or closes.
pub type ChangeSink = Arc<dyn Fn(&str, quarantine::Change) + Send + Sync>;

impl PluginHost {
    /// Builds the engine (pooling allocator sized from the memory budget,
    /// fuel metering). With `cache_dir`, compiled artifacts are kept there
    /// (see [`cache`]).
    /// The cache's key is kept beside the directory, in `<dir>.key`.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Arc<PluginHost>> {
        let sandbox = Arc::new(Sandbox::new(limits)?);
        let linker = wit::linker(&sandbox.engine)?;
        let cache = match cache_dir {
            Some(dir) => Some(
                cache::ArtifactCache::new(dir, &dir.with_extension("key"), &sandbox.engine)
                    .with_context(|| format!("failed to create plugin cache {}", dir.display()))?,
            ),
            None => None,
        };
        Ok(Arc::new(PluginHost {
            sandbox,
            linker,
            cache,
            compiled: AtomicU32::new(0),
            from_cache: AtomicU32::new(0),
            changes: Mutex::new(None),
            registry: Registry::default(),
        }))
    }

    pub fn limits(&self) -> &Limits {
        &self.sandbox.limits
    }

    /// The sandbox's budget and its use now.
    pub fn usage(&self) -> Usage {
        self.sandbox.usage()
    }

    /// Drops every loaded version's warm instances that have been idle for
    /// a minute; the server calls it every few seconds.
    pub fn drop_idle(&self) {
        for (plugin, _) in self.registry.loaded() {
            plugin.instances.drop_idle();
        }
    }

    /// Sets where quarantine changes are reported.
    pub fn on_quarantine_change(&self, sink: ChangeSink) {
        *self.changes.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
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
        let engine = &self.sandbox.engine;
        let (component, how) = match &self.cache {
            Some(cache) => cache.load(engine, bytes, &hash),
            None => Component::new(engine, bytes)
                .map(|c| (c, cache::Loaded::Compiled))
                .map_err(anyhow::Error::from),
        }
        .context("not a valid WebAssembly component")?;
        match how {
            cache::Loaded::Compiled => self.compiled.fetch_add(1, Ordering::Relaxed),
            cache::Loaded::Cached => self.from_cache.fetch_add(1, Ordering::Relaxed),
        };
        let (pre, world) = wit::prepare(&self.linker, &component)?;
        let limits = &self.sandbox.limits;
        let mut plugin = LoadedPlugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                config_schema: serde_json::Value::Null,
            },
            hash,
            world,
            sdk_version: sdk_version::read(bytes),
            source,
            loaded_at_ms: crate::id::now_ms(),
            instances: Instances::new(self.sandbox.clone(), pre),
            quarantine: quarantine::Quarantine::new(
                limits.quarantine_after,
                limits.quarantine_cooldown,
                limits.call_timeout * 2,
            ),
            last_error: Mutex::new(None),
            changes: self
                .changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        let (info, _) = plugin.instances.call(
            LOAD_CHECK_APP,
            limits.call_timeout,
            false,
            async |store, b| b.info(store).await,
        );
        let info = info.map_err(|f| anyhow::anyhow!("plugin's info call failed: {f}"))?;
        check_name(&info.name)?;
        plugin.instances.set_name(&info.name);
        plugin.info = info;
        // A plugin that cannot turn a plain event into requests within the
        // limits would fail every delivery: refuse it now. Its own errors
        // (a config it needs, an event it does not take) are fine.
        match plugin.run_transform(&SAMPLE_EVENT, "{}", false, false).0 {
            Ok(_) | Err(CallError::Guest(_)) => {}
            Err(e) => anyhow::bail!("sample transform failed: {e}"),
        }
        // The checks' instances belong to no app.
        plugin.instances.drop_warm();
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

/// The app the load-time checks run as.
const LOAD_CHECK_APP: &str = "app_check";

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One loaded version of a plugin.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    /// The WIT world version it was built against.
    pub world: &'static str,
    /// The `hookline-sdk` version it was built with, when it says.
    pub sdk_version: Option<String>,
    pub source: PluginSource,
    pub loaded_at_ms: i64,
    instances: Instances,
    quarantine: quarantine::Quarantine,
    last_error: Mutex<Option<String>>,
    changes: Option<ChangeSink>,
}

impl LoadedPlugin {
    /// Whether `app` may call this version now (see [`quarantine`]). The
    /// calls below check it themselves; this lets a caller wait without
    /// trying.
    pub fn admission(&self, app: &str) -> Admission {
        self.quarantine.peek(app)
    }

    /// Apps for which this version is quarantined (open or probing).
    pub fn quarantined_apps(&self) -> Vec<String> {
        self.quarantine.open_apps()
    }

    /// Each app's breaker with a fault on record.
    pub fn quarantine_view(&self) -> Vec<quarantine::AppView> {
        self.quarantine.view()
    }

    /// Lifts the quarantine for `app`, or for every app; returns the apps it
    /// was lifted for.
    pub fn lift_quarantine(&self, app: Option<&str>) -> Vec<String> {
        let lifted = self.quarantine.lift(app);
        for app in &lifted {
            self.report(quarantine::Change::Closed { app: app.clone() });
        }
        lifted
    }

    /// The last guest fault, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Warm instances this version keeps now.
    pub fn warm_instances(&self) -> usize {
        self.instances.warm_count()
    }

    /// Turns an event into requests, and checks them against the output
    /// limits; the call counts for the event's app.
    pub fn transform(
        &self,
        event: &PluginEvent<'_>,
        config: &str,
    ) -> Result<Vec<PluginRequest>, CallError> {
        self.run_transform(event, config, true, false).0
    }

    /// [`Self::transform`] with what the call cost.
    pub fn transform_measured(
        &self,
        event: &PluginEvent<'_>,
        config: &str,
    ) -> (Result<Vec<PluginRequest>, CallError>, CallCost) {
        self.run_transform(event, config, true, true)
    }

    fn run_transform(
        &self,
        event: &PluginEvent<'_>,
        config: &str,
        guarded: bool,
        measure: bool,
    ) -> (Result<Vec<PluginRequest>, CallError>, CallCost) {
        let app = event.app_id;
        let ticket = if guarded {
            match self.admit(app) {
                Ok(t) => t,
                Err(e) => return (Err(e), CallCost::default()),
            }
        } else {
            quarantine::Ticket::default()
        };
        let timeout = self.instances.sandbox().limits.call_timeout;
        let (result, cost) = self
            .instances
            .call(app, timeout, measure, async |store, b| {
                b.transform(store, event, config).await
            });
        let result = match result {
            Err(fault) => Err(CallError::Fault(fault)),
            Ok(Err(e)) => Err(CallError::Guest(GuestErrorDisplay(e))),
            Ok(Ok(requests)) => {
                match limits::check_output(&requests, &self.instances.sandbox().limits) {
                    Ok(()) => Ok(requests),
                    Err(e) => Err(CallError::Output(e)),
                }
            }
        };
        if guarded {
            crate::metrics::global().plugin_call(&self.info.name, cost.wall);
            self.record(app, ticket, &result);
        }
        (result, cost)
    }

    /// Checks an endpoint's config for `app`, within `timeout` (the API's
    /// shorter deadline) or the call deadline.
    pub fn validate_config(
        &self,
        app: &str,
        config: &str,
        timeout: Option<Duration>,
    ) -> Result<(), CallError> {
        let ticket = self.admit(app)?;
        let timeout = timeout.unwrap_or(self.instances.sandbox().limits.call_timeout);
        let (result, _) = self.instances.call(app, timeout, false, async |store, b| {
            b.validate_config(store, config).await
        });
        let result = match result {
            Err(fault) => Err(CallError::Fault(fault)),
            Ok(r) => r.map_err(|e| CallError::Guest(GuestErrorDisplay(e))),
        };
        self.record(app, ticket, &result);
        result
    }

    /// The plugin's reading of an answer; `None` for the standard rules.
    pub fn interpret_response(
        &self,
        app: &str,
        response: &PluginResponse,
        config: &str,
    ) -> Result<Option<Verdict>, CallError> {
        self.run_interpret(app, response, config, false).0
    }

    /// [`Self::interpret_response`] with what the call cost.
    pub fn interpret_response_measured(
        &self,
        app: &str,
        response: &PluginResponse,
        config: &str,
    ) -> (Result<Option<Verdict>, CallError>, CallCost) {
        self.run_interpret(app, response, config, true)
    }

    fn run_interpret(
        &self,
        app: &str,
        response: &PluginResponse,
        config: &str,
        measure: bool,
    ) -> (Result<Option<Verdict>, CallError>, CallCost) {
        let ticket = match self.admit(app) {
            Ok(t) => t,
            Err(e) => return (Err(e), CallCost::default()),
        };
        let timeout = self.instances.sandbox().limits.call_timeout;
        let (result, cost) = self
            .instances
            .call(app, timeout, measure, async |store, b| {
                b.interpret_response(store, response, config).await
            });
        let result = result.map(|v| v.map(cut_verdict)).map_err(CallError::Fault);
        self.record(app, ticket, &result);
        (result, cost)
    }

    /// Drops the warm instances, so the next calls start fresh ones.
    pub fn drop_warm(&self) {
        self.instances.drop_warm();
    }

    fn admit(&self, app: &str) -> Result<quarantine::Ticket, CallError> {
        match self.quarantine.admit(app) {
            (Admission::Call | Admission::Probe, ticket) => Ok(ticket),
            (Admission::Wait { until_ms, reason }, _) => {
                Err(CallError::Quarantined { until_ms, reason })
            }
        }
    }

    /// Counts a call's outcome towards `app`'s breaker.
    fn record<T>(&self, app: &str, ticket: quarantine::Ticket, result: &Result<T, CallError>) {
        let change = match result {
            Err(e @ (CallError::Fault(_) | CallError::Output(_))) => {
                let text = limits::cut(&e.to_string());
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
                let change = self.quarantine.fault(app, &text, ticket);
                crate::metrics::global().plugin_fault(&self.info.name, change.is_some());
                if change.is_some() {
                    tracing::error!(
                        plugin = %self.info.name, version = %self.info.version, app, error = %text,
                        "plugin quarantined for this app after repeated faults; its deliveries wait for a probe"
                    );
                }
                change
            }
            Err(CallError::Quarantined { .. }) => None,
            // The guest answered, even if with an error of its own.
            Ok(_) | Err(CallError::Guest(_)) => self.quarantine.success(app, ticket),
        };
        if let Some(change) = change {
            self.report(change);
        }
    }

    fn report(&self, change: quarantine::Change) {
        if let Some(sink) = &self.changes {
            sink(&self.info.name, change);
        }
    }
}

/// A verdict's message as the host keeps it.
fn cut_verdict(v: Verdict) -> Verdict {
    match v {
        Verdict::Fail(m) => Verdict::Fail(limits::cut(&m)),
        Verdict::DisableEndpoint(m) => Verdict::DisableEndpoint(limits::cut(&m)),
        other => other,
    }
}
