//! How one plugin call runs: in a store of its own app's instance, under a
//! wall-clock deadline that also covers host calls, a CPU budget in fuel, a
//! memory cap across all of the instance's memories, and a cap on what the
//! host will lift out of the guest.
//!
//! Calls are async inside wasmtime so that a guest waiting in WASI (`poll`
//! on a clock, `std::thread::sleep`) is a pending future that the deadline
//! can drop, and a guest that computes yields every [`YIELD_EVERY_FUEL`] so
//! the deadline is checked while it runs. The future is driven on the
//! caller's thread (a blocking-pool thread in the engine), never on the
//! async workers: a transform is pure CPU, and the workers serve HTTP.
//!
//! Instances live in the pooling allocator, sized from the memory budget:
//! calls in progress are bounded by a semaphore, warm instances by a count,
//! and the two together never exceed the pool, so an instantiation never
//! fails for want of a slot. Warm instances are kept per app and never
//! cross from one app to another (the WIT promises no state between calls;
//! this makes sure one tenant's data cannot leak into another's call).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{self, Limits, YIELD_EVERY_FUEL};
use super::wit;

/// Bytes one WASI random call may ask for.
const MAX_RANDOM_BYTES: u64 = 4096;
/// Log lines one plugin call may write.
const LOG_LINES_PER_CALL: u32 = 10;
/// Warm instances kept per app and plugin version.
const MAX_WARM_PER_APP: usize = 4;
/// Calls after which a warm instance is retired, bounding what it can accumulate.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;
/// A warm instance unused this long is dropped (checked periodically), so
/// idle apps give their slots back.
const WARM_IDLE: Duration = Duration::from_secs(60);

/// The state a plugin instance's store carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    plugin: Arc<str>,
    /// Log lines left in this call; plugin logging is rate-limited.
    log_budget: u32,
}

impl HostState {
    fn new(plugin: Arc<str>, limits: &Limits) -> HostState {
        HostState {
            // No preopens, no environment, no inherited stdio, no network.
            // Random bytes come in small pieces: the host makes them, so a
            // guest asking for megabytes in a loop would spend host CPU that
            // its fuel does not see.
            wasi: WasiCtx::builder()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .max_random_size(MAX_RANDOM_BYTES)
                .build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                max: limits.memory_bytes,
                total: 0,
            },
            plugin,
            log_budget: LOG_LINES_PER_CALL,
        }
    }

    pub(super) fn log(&mut self, level: tracing::Level, message: &str) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let message = limits::cut(message);
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

/// Caps the linear memory of an instance, all of its memories together, and
/// remembers how much it holds.
pub(super) struct MemoryCap {
    max: usize,
    total: usize,
}

/// The error a growth past the cap traps with.
#[derive(Debug)]
struct OverMemoryCap;

impl std::fmt::Display for OverMemoryCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory cap reached")
    }
}

impl std::error::Error for OverMemoryCap {}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current.min(self.total) + desired;
        if total > self.max {
            // Trap rather than let `memory.grow` answer -1: the guest's
            // allocator would abort anyway, and this names the cause.
            return Err(OverMemoryCap.into());
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// What one call cost, for `hookline plugin test` and the benches.
#[derive(Debug, Clone, Default)]
pub struct CallCost {
    pub wall: Duration,
    /// CPU time of the call's thread.
    pub cpu: Duration,
    /// Fuel the guest used (about one unit per Wasm instruction).
    pub fuel: u64,
    /// Linear memory the instance held at the end of the call.
    pub memory_bytes: usize,
    /// Whether the call needed a new instance.
    pub fresh: bool,
}

impl CallCost {
    /// The fuel the call used and the memory its instance holds now.
    fn record(&mut self, store: &Store<HostState>, limits: &Limits) {
        self.fuel = limits.fuel - store.get_fuel().unwrap_or(0);
        self.memory_bytes = store.data().memory.total;
    }
}

/// Why a call ended without the guest's answer: each is the guest's fault
/// and counts towards its quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Deadline { limit_ms: u128 },
    Cpu { fuel: u64 },
    CpuTime { limit_ms: u128 },
    Memory { limit_mib: usize },
    Lift { limit_bytes: usize },
    Exit(i32),
    Trap(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Deadline { limit_ms } => {
                write!(f, "call exceeded the deadline of {limit_ms} ms")
            }
            Fault::Cpu { fuel } => write!(f, "call exceeded the CPU budget of {fuel} fuel"),
            Fault::CpuTime { limit_ms } => {
                write!(
                    f,
                    "call exceeded the CPU budget of {limit_ms} ms of CPU time"
                )
            }
            Fault::Memory { limit_mib } => {
                write!(f, "call exceeded the memory limit of {limit_mib} MiB")
            }
            Fault::Lift { limit_bytes } => write!(
                f,
                "plugin tried to hand the host more than {limit_bytes} bytes at once"
            ),
            Fault::Exit(code) => write!(f, "plugin called exit({code})"),
            Fault::Trap(text) => write!(f, "trapped: {text}"),
        }
    }
}

/// The engine-wide part of the sandbox: the wasmtime engine and the slots
/// every plugin's instances share.
pub(super) struct Sandbox {
    pub engine: Engine,
    pub limits: Limits,
    calls: tokio::sync::Semaphore,
    /// Each app's share of the call slots, so that one tenant's slow or
    /// hostile calls cannot take every slot.
    app_calls: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    warm: AtomicUsize,
    in_flight: AtomicUsize,
}

/// The sandbox's use of its budget right now, for `GET /v1/plugins`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub memory_budget_bytes: usize,
    pub instance_memory_bytes: usize,
    pub instance_slots: usize,
    pub warm_slots: usize,
    pub call_slots: usize,
    pub app_call_slots: usize,
    pub warm_instances: usize,
    pub calls_in_progress: usize,
    pub call_timeout_ms: u128,
    pub cpu_time_ms: u128,
    pub validate_timeout_ms: u128,
    pub fuel_per_call: u64,
}

impl Sandbox {
    pub fn new(limits: Limits) -> anyhow::Result<Sandbox> {
        let slots = limits.instance_slots() as u32;
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.max_memory_size(limits.memory_bytes)
            .total_component_instances(slots)
            // Rust components have one memory and a few small modules;
            // componentize-py's have more modules. Room for both.
            .total_memories(slots * 2)
            .total_tables(slots * 8)
            .total_core_instances(slots * 32)
            // A fiber stack per call in progress (calls are async inside
            // wasmtime), and one per warm store: a store keeps its last
            // stack for its next call.
            .total_stacks(slots)
            // Per component, so that one plugin made of very many modules,
            // memories or tables is refused when it loads instead of
            // exhausting what every other plugin's instances need.
            .max_core_instances_per_component(32)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            // Keeping a little memory resident between instances makes a
            // fresh instance cheap and lets the pool scale across threads.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(2 << 20)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = wasmtime::Config::new();
        config
            .consume_fuel(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .map_err(|e| e.context("failed to create the wasmtime engine"))?;
        Ok(Sandbox {
            engine,
            calls: tokio::sync::Semaphore::new(limits.call_slots()),
            app_calls: Mutex::new(HashMap::new()),
            warm: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            limits,
        })
    }

    /// Calls one app may have in progress at once: a quarter of the slots.
    pub fn app_call_slots(&self) -> usize {
        (self.limits.call_slots() / 4).max(2)
    }

    fn app_semaphore(&self, app: &str) -> Arc<tokio::sync::Semaphore> {
        let mut apps = self.app_calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = apps.get(app) {
            return s.clone();
        }
        // Forget apps with nothing in progress before adding one, so the
        // map stays as small as the set of busy apps.
        let per_app = self.app_call_slots();
        // (Kept too: one a caller holds but has not acquired yet.)
        apps.retain(|_, s| s.available_permits() < per_app || Arc::strong_count(s) > 1);
        let s = Arc::new(tokio::sync::Semaphore::new(per_app));
        apps.insert(app.to_string(), s.clone());
        s
    }

    pub fn usage(&self) -> Usage {
        let l = &self.limits;
        Usage {
            memory_budget_bytes: l.instance_slots() * l.memory_bytes,
            instance_memory_bytes: l.memory_bytes,
            instance_slots: l.instance_slots(),
            warm_slots: l.warm_slots(),
            call_slots: l.call_slots(),
            app_call_slots: self.app_call_slots(),
            warm_instances: self.warm.load(Ordering::Relaxed),
            calls_in_progress: self.in_flight.load(Ordering::Relaxed),
            call_timeout_ms: l.call_timeout.as_millis(),
            cpu_time_ms: l.cpu_time.as_millis(),
            validate_timeout_ms: l.validate_timeout.as_millis(),
            fuel_per_call: l.fuel,
        }
    }
}

struct Warm {
    store: Store<HostState>,
    bindings: wit::Bindings,
    calls: u32,
    idle_since: Instant,
}

/// One plugin version's instances: warm ones per app, and how to make more.
pub(super) struct Instances {
    sandbox: Arc<Sandbox>,
    pre: wit::Pre,
    name_tag: Mutex<Arc<str>>,
    warm: Mutex<HashMap<String, Vec<Warm>>>,
}

impl Instances {
    pub fn new(sandbox: Arc<Sandbox>, pre: wit::Pre) -> Instances {
        Instances {
            sandbox,
            pre,
            name_tag: Mutex::new(Arc::from("(loading)")),
            warm: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_name(&self, name: &str) {
        *self.name_tag.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(name);
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    fn lock_warm(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Warm>>> {
        self.warm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every warm instance, so the next calls start fresh ones.
    pub fn drop_warm(&self) {
        let dropped: usize = self.lock_warm().drain().map(|(_, v)| v.len()).sum();
        self.sandbox.warm.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Drops warm instances unused for a minute, so idle apps and versions
    /// no longer called give their slots back. The engine runs it
    /// periodically (`PluginHost::drop_idle`), not on the call path.
    pub fn drop_idle(&self) {
        let mut idle = 0;
        self.lock_warm().retain(|_, list| {
            let before = list.len();
            list.retain(|w| w.idle_since.elapsed() < WARM_IDLE);
            idle += before - list.len();
            !list.is_empty()
        });
        self.sandbox.warm.fetch_sub(idle, Ordering::Relaxed);
    }

    /// Warm instances kept now, per app.
    pub fn warm_count(&self) -> usize {
        self.lock_warm().values().map(Vec::len).sum()
    }

    fn take_warm(&self, app: &str) -> Option<Warm> {
        let mut warm = self.lock_warm();
        let w = warm.get_mut(app)?.pop()?;
        self.sandbox.warm.fetch_sub(1, Ordering::Relaxed);
        Some(w)
    }

    fn put_warm(&self, app: &str, mut w: Warm) {
        if w.calls >= MAX_CALLS_PER_INSTANCE {
            return;
        }
        w.idle_since = Instant::now();
        let mut warm = self.lock_warm();
        let list = warm.entry(app.to_string()).or_default();
        if list.len() >= MAX_WARM_PER_APP {
            return;
        }
        // Reserve a warm slot atomically: versions put back concurrently,
        // each under its own lock, and together must stay within the pool.
        let warm_slots = self.sandbox.limits.warm_slots();
        if self
            .sandbox
            .warm
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < warm_slots).then_some(n + 1)
            })
            .is_ok()
        {
            list.push(w);
        }
    }

    async fn instantiate(&self) -> wasmtime::Result<Warm> {
        let tag = self
            .name_tag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut store = Store::new(
            &self.sandbox.engine,
            HostState::new(tag, &self.sandbox.limits),
        );
        store.limiter(|state| &mut state.memory);
        // Instantiation runs the guest's start code: it is metered too.
        store.set_fuel(self.sandbox.limits.fuel)?;
        store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL))?;
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Warm {
            store,
            bindings,
            calls: 0,
            idle_since: Instant::now(),
        })
    }

    /// Runs `f` on an instance of `app`'s under every limit, with `timeout`
    /// as the wall-clock deadline (instantiation included). Blocks the
    /// calling thread: call it from a blocking-pool thread or a plain thread.
    /// With `measure`, the cost includes the call's CPU time (two more
    /// system calls).
    pub fn call<R>(
        &self,
        app: &str,
        timeout: Duration,
        measure: bool,
        f: impl AsyncFnOnce(&mut Store<HostState>, &wit::Bindings) -> wasmtime::Result<R>,
    ) -> (Result<R, Fault>, CallCost) {
        block_on(self.call_async(app, timeout, measure, f))
    }

    async fn call_async<R>(
        &self,
        app: &str,
        timeout: Duration,
        measure: bool,
        f: impl AsyncFnOnce(&mut Store<HostState>, &wit::Bindings) -> wasmtime::Result<R>,
    ) -> (Result<R, Fault>, CallCost) {
        let limits = &self.sandbox.limits;
        // Waiting for a slot is not the guest's time: it does not count
        // against its deadline. Slots come back within a deadline each.
        let app_slots = self.sandbox.app_semaphore(app);
        let _app_permit = app_slots
            .acquire()
            .await
            .expect("call semaphores are never closed");
        let _permit = self
            .sandbox
            .calls
            .acquire()
            .await
            .expect("call semaphores are never closed");
        self.sandbox.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.sandbox.in_flight);
        let started = Instant::now();
        let mut cost = CallCost::default();
        let warm = self.take_warm(app);
        cost.fresh = warm.is_none();
        let run = async {
            let mut instance = match warm {
                Some(w) => w,
                None => self.instantiate().await?,
            };
            let store = &mut instance.store;
            store.set_fuel(limits.fuel)?;
            store.set_hostcall_fuel(limits::lift_budget(limits));
            store.data_mut().log_budget = LOG_LINES_PER_CALL;
            let result = f(store, &instance.bindings).await;
            Ok::<_, wasmtime::Error>((result, instance))
        };
        // The CPU-time backstop, checked whenever the call yields (every
        // YIELD_EVERY_FUEL of guest work) or wakes. The future is polled on
        // this thread only, so the thread's CPU clock is the call's. Most
        // calls never yield: unless asked to measure, the clock is first read
        // at the first yield, which leaves out at most one interval of fuel
        // (an undercount, so load can never trip it) and costs a call that
        // does not yield nothing.
        let mut cpu_started = measure.then(thread_cpu_time);
        let mut run = std::pin::pin!(run);
        let guarded = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending => {
                let now = thread_cpu_time();
                let since = *cpu_started.get_or_insert(now);
                if now.saturating_sub(since) > limits.cpu_time {
                    std::task::Poll::Ready(None)
                } else {
                    std::task::Poll::Pending
                }
            }
        });
        let outcome = tokio::time::timeout(timeout, guarded).await;
        cost.wall = started.elapsed();
        if measure {
            cost.cpu = thread_cpu_time().saturating_sub(cpu_started.unwrap_or_default());
        }
        let fault = match outcome {
            Err(_elapsed) => Fault::Deadline {
                limit_ms: timeout.as_millis(),
            },
            Ok(None) => Fault::CpuTime {
                limit_ms: limits.cpu_time.as_millis(),
            },
            Ok(Some(Ok((Ok(r), mut instance)))) => {
                cost.record(&instance.store, limits);
                instance.calls += 1;
                self.put_warm(app, instance);
                return (Ok(r), cost);
            }
            // The instance is dropped: after a trap its state is not to be trusted.
            Ok(Some(Ok((Err(e), instance)))) => {
                cost.record(&instance.store, limits);
                classify(e, limits)
            }
            Ok(Some(Err(e))) => classify(e, limits),
        };
        (Err(fault), cost)
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.drop_warm();
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn classify(e: wasmtime::Error, limits: &Limits) -> Fault {
    if let Some(wasmtime::Trap::OutOfFuel) = e.downcast_ref::<wasmtime::Trap>() {
        return Fault::Cpu { fuel: limits.fuel };
    }
    if e.downcast_ref::<OverMemoryCap>().is_some() {
        return Fault::Memory {
            limit_mib: limits.memory_bytes >> 20,
        };
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Fault::Exit(exit.0);
    }
    let text = format!("{e:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return Fault::Lift {
            limit_bytes: limits::lift_budget(limits),
        };
    }
    // A guest whose allocator fails (rather than growing past the cap)
    // aborts; say so plainly.
    if text.contains("growing memory") || text.contains("memory allocation of") {
        return Fault::Memory {
            limit_mib: limits.memory_bytes >> 20,
        };
    }
    // The trap itself, not wasmtime's backtrace of guest frames.
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap
            .to_string()
            .trim_start_matches("wasm trap: ")
            .to_string(),
        None => e.root_cause().to_string(),
    };
    Fault::Trap(limits::cut(what.lines().next().unwrap_or("")))
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

thread_local! {
    /// A runtime for threads outside the engine's (the plugin watcher, the
    /// CLI): plugin calls need its timer for their deadline.
    static LOCAL: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
}

/// Drives `f` to completion on this thread: on the engine's runtime when
/// called from one of its blocking threads, else on a runtime of this
/// thread's own.
fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f),
        Err(_) => LOCAL.with(|rt| {
            rt.get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("failed to build a runtime for plugin calls")
            })
            .block_on(f)
        }),
    }
}
