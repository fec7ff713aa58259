//! Forwards the component's WIT exports to a [`Plugin`] implementation and
//! converts between the generated WIT types and the SDK's plain types.

use std::marker::PhantomData;

use crate::{Config, Event, Plugin, PluginError, Response, Verdict};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/v0.1",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_hookline_plugin",
        default_bindings_module: "hookline_sdk::__private::bindings",
    });
}

use bindings::hookline::plugin::types as wit;

/// The type the export macro registers: `Adapter<YourPlugin>`.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn info() -> wit::PluginInfo {
        let info = P::info();
        wit::PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema.to_string(),
        }
    }

    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        let config = Config::parse(&config).map_err(to_wit_error)?;
        P::validate_config(&config).map_err(to_wit_error)
    }

    fn transform(event: wit::Event, config: String) -> Result<Vec<wit::Request>, wit::PluginError> {
        let config = Config::parse(&config).map_err(to_wit_error)?;
        let event = Event {
            subject: event.subject,
            app_id: event.app_id,
            extensions_json: event.extensions,
            ..Event::new(event.id, event.type_, event.source, event.time, event.data)
        };
        let requests = P::transform(&event, &config).map_err(to_wit_error)?;
        Ok(requests
            .into_iter()
            .map(|r| wit::Request {
                body: r.body,
                content_type: r.content_type,
                headers: r.headers,
                query: r.query,
            })
            .collect())
    }

    fn interpret_response(response: wit::Response, config: String) -> Option<wit::Verdict> {
        // A config the engine already validated cannot fail to parse; if it
        // somehow does, fall back to the engine's standard rules.
        let config = Config::parse(&config).ok()?;
        let response = Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        };
        P::interpret_response(&response, &config).map(|v| match v {
            Verdict::Success => wit::Verdict::Success,
            Verdict::RetryAfter(s) => wit::Verdict::RetryAfter(s),
            Verdict::Fail(m) => wit::Verdict::Fail(m),
            Verdict::DisableEndpoint(m) => wit::Verdict::DisableEndpoint(m),
        })
    }
}

fn to_wit_error(e: PluginError) -> wit::PluginError {
    match e {
        PluginError::BadConfig(m) => wit::PluginError::BadConfig(m),
        PluginError::BadEvent(m) => wit::PluginError::BadEvent(m),
        PluginError::Internal(m) => wit::PluginError::Internal(m),
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: crate::LogLevel, message: &str) {
    use crate::LogLevel;
    use bindings::hookline::plugin::host::{Level, log};
    let level = match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    };
    log(level, message);
}
