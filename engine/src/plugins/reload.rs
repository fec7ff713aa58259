//! The plugins directory: every `*.wasm` in it is loaded at start-up and
//! watched afterwards (`notify`), so operators add, upgrade and remove
//! integrations while the engine runs.
//!
//! - Partial writes: a file is loaded only after a quiet period with no
//!   events for it in which its size and modification time did not change.
//!   A `cp` that is still writing keeps producing events, so it is waited
//!   for. Writing elsewhere and renaming into place is atomic and always safe.
//!   A file that is still caught half-written fails the checks and is
//!   refused, and the previous version keeps serving until the complete file
//!   lands (its last write triggers another load).
//! - Loading (compiling, checking) runs on the watcher's own thread, never on
//!   the async runtime. A loaded file is swapped in atomically. A refused file
//!   is logged, listed by `GET /v1/plugins`, and changes nothing else.
//! - A removed file is taken out of service; a built-in of the same name
//!   serves again. With no built-in behind it, deliveries that need the
//!   plugin wait and resume when it returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};

use super::{PluginHost, Refusal};

/// How long a file must stay unchanged, with no events, before it is loaded.
pub const QUIET: Duration = Duration::from_millis(150);

/// Called with a plugin's name whenever a version of it is put in service.
pub type OnLoaded = Arc<dyn Fn(&str) + Send + Sync>;

/// Keeps the directory watched; dropping it stops the watcher thread.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
}

fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "wasm")
}

/// Loads every `.wasm` file in `dir` (at start-up).
pub fn load_dir(host: &Arc<PluginHost>, dir: &Path, on_loaded: &OnLoaded) -> anyhow::Result<usize> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files
        .iter()
        .filter(|p| load_file(host, p, on_loaded))
        .count())
}

/// Loads (or reloads) one file into the registry; false when it was refused.
pub fn load_file(host: &Arc<PluginHost>, path: &Path, on_loaded: &OnLoaded) -> bool {
    let started = Instant::now();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            refuse(
                host,
                path,
                anyhow::Error::from(e).context("failed to read the file"),
            );
            return false;
        }
    };
    if let Some(current) = host.registry.file(path)
        && current.hash == super::hex(&sha2::Sha256::digest(&bytes))
    {
        // Unchanged (an editor touched it, a duplicate event, or an operator
        // copied the same file again): that lifts its quarantine.
        let lifted = current.lift_quarantine(None);
        if !lifted.is_empty() {
            tracing::info!(plugin = %current.info.name, apps = ?lifted, path = %path.display(), "plugin file written again; quarantine lifted");
        }
        return true;
    }
    let source = super::PluginSource::File(path.display().to_string());
    match host
        .load(&bytes, source)
        .with_context(|| format!("plugin file {} refused", path.display()))
    {
        Ok(plugin) => {
            let plugin = Arc::new(plugin);
            let previous = host.registry.insert_file(path, plugin.clone());
            tracing::info!(
                plugin = %plugin.info.name,
                version = %plugin.info.version,
                hash = %&plugin.hash[..12],
                replaced = previous.map(|p| format!("{} {}", p.info.version, &p.hash[..12])).unwrap_or_default(),
                path = %path.display(),
                load_ms = started.elapsed().as_millis() as u64,
                "plugin loaded"
            );
            crate::metrics::global().plugin_load(true);
            on_loaded(&plugin.info.name);
            true
        }
        Err(e) => {
            refuse(host, path, e);
            false
        }
    }
}

fn refuse(host: &Arc<PluginHost>, path: &Path, e: anyhow::Error) {
    crate::metrics::global().plugin_load(false);
    tracing::error!(path = %path.display(), error = format!("{e:#}"), "plugin file refused; the previous version keeps serving");
    host.registry.refuse(
        path,
        Refusal {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.display().to_string(),
            error: format!("{e:#}"),
            at_ms: crate::id::now_ms(),
        },
    );
}

fn remove_file(host: &Arc<PluginHost>, path: &Path, on_loaded: &OnLoaded) {
    if let Some(removed) = host.registry.remove_file(path) {
        let fallback = host.registry.get(&removed.info.name);
        tracing::info!(
            plugin = %removed.info.name,
            path = %path.display(),
            now_serving = fallback.as_ref().map(|p| format!("{} {}", p.info.version, &p.hash[..12])).unwrap_or_else(|| "nothing".into()),
            "plugin file removed"
        );
        if fallback.is_some() {
            on_loaded(&removed.info.name);
        }
    }
}

/// Watches `dir` and keeps the registry in step with it.
pub fn watch(
    host: Arc<PluginHost>,
    dir: PathBuf,
    on_loaded: OnLoaded,
) -> anyhow::Result<WatchHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("failed to start the plugins directory watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("failed to watch {}", dir.display()))?;
    std::thread::Builder::new()
        .name("hookline-plugins".into())
        .spawn(move || {
            // Per path: when it last changed, and what it looked like then.
            let mut pending: HashMap<PathBuf, (Instant, Option<(u64, SystemTime)>)> =
                HashMap::new();
            loop {
                let wait = if pending.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    QUIET / 3
                };
                match rx.recv_timeout(wait) {
                    // Reading a file (ours included, when loading it) is no
                    // change: without this every load would trigger the next.
                    Ok(Ok(event)) if event.kind.is_access() => {}
                    Ok(Ok(event)) => {
                        for path in event.paths.into_iter().filter(|p| is_plugin_file(p)) {
                            let look = stat(&path);
                            pending.insert(path, (Instant::now(), look));
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "plugins directory watcher error"),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                let settled: Vec<PathBuf> = pending
                    .iter_mut()
                    .filter_map(|(path, (since, look))| {
                        if since.elapsed() < QUIET {
                            return None;
                        }
                        let now = stat(path);
                        if now != *look {
                            // Still being written: wait another quiet period.
                            *since = Instant::now();
                            *look = now;
                            return None;
                        }
                        Some(path.clone())
                    })
                    .collect();
                for path in settled {
                    let (_, look) = pending.remove(&path).unwrap_or((Instant::now(), None));
                    match look {
                        Some(_) => {
                            load_file(&host, &path, &on_loaded);
                        }
                        None => remove_file(&host, &path, &on_loaded),
                    }
                }
            }
        })?;
    Ok(WatchHandle { _watcher: watcher })
}

fn stat(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some((
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    ))
}

use sha2::Digest as _;
