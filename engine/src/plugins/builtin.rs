//! The plugins compiled into the engine by `build.rs` from `plugins/*`.

use std::sync::Arc;

use anyhow::Context as _;

use super::{PluginHost, PluginSource};

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Compiles every built-in plugin (in parallel; compiling is the slow part of
/// start-up) and puts it in service. A built-in that fails to load is a bug
/// in this build, so it stops start-up.
pub fn load_all(host: &Arc<PluginHost>) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = BUILTIN
            .iter()
            .map(|(dir, bytes)| {
                scope.spawn(move || {
                    host.load(bytes, PluginSource::Builtin)
                        .with_context(|| format!("built-in plugin {dir} failed to load"))
                })
            })
            .collect();
        for handle in handles {
            let plugin = handle
                .join()
                .map_err(|_| anyhow::anyhow!("plugin loading panicked"))??;
            host.registry.insert_builtin(Arc::new(plugin));
        }
        Ok(())
    })
}
