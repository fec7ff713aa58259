//! Bindings of `hookline:plugin@0.1.0`, generated from `sdk/wit/v0.1`.

wasmtime::component::bindgen!({
    path: "../sdk/wit/v0.1",
    world: "plugin",
    // Guest calls are async so that their deadline also covers time the
    // guest spends waiting in WASI; see `sandbox`.
    exports: { default: async },
});

pub use self::hookline::plugin::types;

/// The first version of the world that these bindings load.
pub const VERSION: &str = "0.1.0";
