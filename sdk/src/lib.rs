//! # Hookline plugin SDK
//!
//! A Hookline plugin is a WebAssembly component that turns a generic
//! CloudEvent into the request a platform expects (a Slack message, a Discord
//! embed, plain JSON…) and reads the platform's answer. This crate is all a
//! plugin author needs:
//!
//! - [`Plugin`]: the trait a plugin implements. Only [`Plugin::info`] and
//!   [`Plugin::transform`] are required; the rest have sensible defaults.
//! - [`export_plugin!`]: registers the implementation as the component's exports.
//! - [`Event`], [`Config`], [`Request`], [`Response`], [`Verdict`],
//!   [`PluginError`]: the values that cross the boundary, as plain Rust types.
//! - [`text`]: helpers for chat plugins: cutting text to a limit with `…`,
//!   escaping per markup dialect, readable titles, title templates, reading
//!   fields and links from `data`, and [`text::Summary`], which gathers them.
//! - [`testing`]: sample events and a log recorder, so a plugin's unit tests
//!   call `transform` natively, without WebAssembly.
//!
//! The contract itself is the WIT world in `wit/v0.1/plugin.wit`
//! (`hookline:plugin@0.1.0`); authors in other languages build against it.
//!
//! # Example
//!
//! ```
//! use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("shout", env!("CARGO_PKG_VERSION"), "Sends the event type in capitals")
//!     }
//!
//!     fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
//!         let body = hookline_sdk::serde_json::json!({ "text": event.ty.to_uppercase() });
//!         Ok(vec![Request::json(&body)])
//!     }
//! }
//!
//! hookline_sdk::export_plugin!(Shout);
//!
//! let event = hookline_sdk::testing::event("order.created", r#"{"id": 7}"#);
//! let requests = Shout::transform(&event, &Config::default()).unwrap();
//! assert_eq!(requests[0].body_str(), r#"{"text":"ORDER.CREATED"}"#);
//! ```

mod adapter;
mod types;

pub mod testing;
pub mod text;

pub use serde_json;
pub use types::{Config, Event, LogLevel, PluginError, PluginInfo, Request, Response, Verdict};

/// The version of the WIT world this SDK builds against.
pub const WIT_VERSION: &str = "0.1.0";

/// An integration plugin.
///
/// Methods are associated functions, not methods on `self`: a plugin keeps no
/// state between calls (the engine may run every call on a fresh instance).
pub trait Plugin {
    /// Name, version, description and config schema.
    fn info() -> PluginInfo;

    /// Turns an event into the request(s) to send. An empty vector means
    /// "nothing to send for this event".
    fn transform(event: &Event, config: &Config) -> Result<Vec<Request>, PluginError>;

    /// Checks an endpoint's config when the endpoint is created or changed.
    /// Return [`PluginError::BadConfig`] naming the option. Accepts anything by default.
    fn validate_config(_config: &Config) -> Result<(), PluginError> {
        Ok(())
    }

    /// Reads the endpoint's answer. `None`, the default, applies the engine's
    /// standard rules: 2xx success; 408, 425, 429 and 5xx retried honouring
    /// `Retry-After`; other 4xx fail; 410 disables the endpoint.
    fn interpret_response(_response: &Response, _config: &Config) -> Option<Verdict> {
        None
    }
}

/// Writes a line to the engine's log, tagged with the plugin's name.
///
/// Natively (in unit tests) the line goes to [`testing::logged`].
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    adapter::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    testing::record_log(level, message);
}

/// Registers a [`Plugin`] implementation as the component's exports:
/// `hookline_sdk::export_plugin!(MyPlugin);` once per plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        type __HooklinePluginExport = $crate::__private::Adapter<$plugin>;
        // The SDK version, in a custom section the engine reads and shows
        // in `GET /v1/plugins` (as Zed's extension API records its own).
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "hookline:sdk-version")]
        #[used]
        #[doc(hidden)]
        static __HOOKLINE_SDK_VERSION: [u8; $crate::__private::SDK_VERSION.len()] =
            $crate::__private::sdk_version_bytes();
        $crate::__private::bindings::__export_hookline_plugin!(__HooklinePluginExport with_types_in $crate::__private::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::{Adapter, bindings};

    /// This crate's version, as `export_plugin!` records it.
    pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

    /// [`SDK_VERSION`] as an array, for a `static` in a custom section.
    pub const fn sdk_version_bytes() -> [u8; SDK_VERSION.len()] {
        let mut out = [0u8; SDK_VERSION.len()];
        let bytes = SDK_VERSION.as_bytes();
        let mut i = 0;
        while i < out.len() {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }
}
