//! The WIT worlds this engine loads, one module per version, and the
//! conversions into the host's own types. The rest of the engine sees only
//! the types in [`super`]; a new WIT version adds a module and a variant here.

pub mod v0_1;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreContextMut};

use super::sandbox::HostState;
use super::{PluginEvent, PluginInfo, PluginRequest, PluginResponse, Verdict};

/// A component linked and type-checked against one supported world version.
pub(super) enum Pre {
    V0_1(v0_1::PluginPre<HostState>),
}

/// A live instance of a component.
pub(super) enum Bindings {
    V0_1(v0_1::Plugin),
}

/// An error a plugin returned (as opposed to a trap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    BadConfig(String),
    BadEvent(String),
    Internal(String),
}

/// Fuel one `log` call costs the guest: host work is charged to its CPU
/// budget like its own instructions, so a guest that logs in a loop runs out
/// of fuel instead of burning CPU in the host until its deadline.
const LOG_FUEL: u64 = 1_000_000;

/// Builds the linker every plugin is instantiated with: all of WASI p2 with
/// an empty context (so guests that import it link, and reach nothing), plus
/// the `host` interface (logging).
pub(super) fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // `host` by hand rather than through the generated trait: `log` needs
    // the store, to charge the call to the guest's fuel.
    linker.instance(&format!("hookline:plugin/types@{}", v0_1::VERSION))?;
    linker
        .instance(&format!("hookline:plugin/host@{}", v0_1::VERSION))?
        .func_wrap(
            "log",
            |mut store: StoreContextMut<'_, HostState>,
             (level, message): (v0_1::hookline::plugin::host::Level, String)| {
                let fuel = store.get_fuel()?;
                store.set_fuel(fuel.saturating_sub(LOG_FUEL))?;
                if fuel < LOG_FUEL {
                    return Err(wasmtime::Trap::OutOfFuel.into());
                }
                use v0_1::hookline::plugin::host::Level;
                let level = match level {
                    Level::Trace => tracing::Level::TRACE,
                    Level::Debug => tracing::Level::DEBUG,
                    Level::Info => tracing::Level::INFO,
                    Level::Warn => tracing::Level::WARN,
                    Level::Error => tracing::Level::ERROR,
                };
                store.data_mut().log(level, &message);
                Ok(())
            },
        )?;
    Ok(linker)
}

/// Links and type-checks a component, newest supported world first.
pub(super) fn prepare(
    linker: &Linker<HostState>,
    component: &Component,
) -> anyhow::Result<(Pre, &'static str)> {
    let instance_pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow::anyhow!(
            "component does not link against hookline:plugin@{}: {e:#}",
            v0_1::VERSION
        )
    })?;
    let pre = v0_1::PluginPre::new(instance_pre).map_err(|e| {
        anyhow::anyhow!(
            "component does not export the hookline:plugin@{} world: {e:#}",
            v0_1::VERSION
        )
    })?;
    Ok((Pre::V0_1(pre), v0_1::VERSION))
}

impl Pre {
    pub(super) async fn instantiate_async(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Bindings> {
        match self {
            Pre::V0_1(pre) => Ok(Bindings::V0_1(pre.instantiate_async(&mut *store).await?)),
        }
    }
}

impl Bindings {
    pub(super) async fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo> {
        match self {
            Bindings::V0_1(b) => {
                let info = b.call_info(store).await?;
                Ok(PluginInfo {
                    name: info.name,
                    version: info.version,
                    description: info.description,
                    config_schema: serde_json::from_str(&info.config_schema)
                        .unwrap_or(serde_json::Value::Null),
                })
            }
        }
    }

    pub(super) async fn validate_config(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        match self {
            Bindings::V0_1(b) => Ok(b
                .call_validate_config(store, config)
                .await?
                .map_err(guest_error_v0_1)),
        }
    }

    pub(super) async fn transform(
        &self,
        store: &mut Store<HostState>,
        event: &PluginEvent<'_>,
        config: &str,
    ) -> wasmtime::Result<Result<Vec<PluginRequest>, GuestError>> {
        match self {
            Bindings::V0_1(b) => {
                let event = v0_1::types::Event {
                    id: event.id.to_string(),
                    type_: event.ty.to_string(),
                    source: event.source.to_string(),
                    subject: event.subject.map(str::to_string),
                    time: event.time.to_string(),
                    data: event.data.to_string(),
                    extensions: event.extensions.to_string(),
                    app_id: event.app_id.to_string(),
                };
                Ok(b.call_transform(store, &event, config)
                    .await?
                    .map(|requests| {
                        requests
                            .into_iter()
                            .map(|r| PluginRequest {
                                body: r.body,
                                content_type: r.content_type,
                                headers: r.headers,
                                query: r.query,
                            })
                            .collect()
                    })
                    .map_err(guest_error_v0_1))
            }
        }
    }

    pub(super) async fn interpret_response(
        &self,
        store: &mut Store<HostState>,
        response: &PluginResponse,
        config: &str,
    ) -> wasmtime::Result<Option<Verdict>> {
        match self {
            Bindings::V0_1(b) => {
                let response = v0_1::types::Response {
                    status: response.status,
                    headers: response.headers.clone(),
                    body: response.body.clone(),
                };
                use v0_1::types::Verdict as V;
                Ok(b.call_interpret_response(store, &response, config)
                    .await?
                    .map(|v| match v {
                        V::Success => Verdict::Success,
                        V::RetryAfter(s) => Verdict::RetryAfter(s),
                        V::Fail(m) => Verdict::Fail(m),
                        V::DisableEndpoint(m) => Verdict::DisableEndpoint(m),
                    }))
            }
        }
    }
}

fn guest_error_v0_1(e: v0_1::types::PluginError) -> GuestError {
    use v0_1::types::PluginError as E;
    match e {
        E::BadConfig(m) => GuestError::BadConfig(m),
        E::BadEvent(m) => GuestError::BadEvent(m),
        E::Internal(m) => GuestError::Internal(m),
    }
}
