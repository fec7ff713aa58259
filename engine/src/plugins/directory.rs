//! Plugin files in the plugins directory: every `*.wasm` is loaded at
//! start-up; a file may replace a built-in of the same name. A file that
//! fails the checks is refused (logged, shown by `GET /v1/plugins`) and
//! whatever served that name before keeps serving.

use std::path::Path;
use std::sync::Arc;

use super::{PluginHost, Refusal};

/// Loads every `.wasm` file in `dir`; returns how many were put in service.
pub fn load_all(host: &Arc<PluginHost>, dir: &Path) -> anyhow::Result<usize> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    let mut loaded = 0;
    for path in files {
        match host.load_file(&path) {
            Ok(plugin) => {
                tracing::info!(plugin = %plugin.info.name, version = %plugin.info.version, path = %path.display(), "plugin file loaded");
                host.registry.insert(Arc::new(plugin));
                loaded += 1;
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = format!("{e:#}"), "plugin file refused");
                host.registry.refuse(Refusal {
                    name: path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: path.display().to_string(),
                    error: format!("{e:#}"),
                    at_ms: crate::id::now_ms(),
                });
            }
        }
    }
    Ok(loaded)
}
