//! The plugins in service, by name. A plugin file in the plugins directory
//! takes precedence over a built-in of the same name; removing the file
//! brings the built-in back. Lookups hand out an `Arc`, so a delivery keeps
//! the version it started with while a new one is swapped in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::LoadedPlugin;

/// A plugin file that was refused, kept for `GET /v1/plugins`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub name: String,
    pub path: String,
    pub error: String,
    pub at_ms: i64,
}

#[derive(Default)]
struct Inner {
    builtins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Loaded plugin files by path.
    files: BTreeMap<PathBuf, Arc<LoadedPlugin>>,
    /// Refused plugin files by path (a path may have a loaded older version too).
    refused: BTreeMap<PathBuf, Refusal>,
    /// What serves each name: the newest file of that name, else the built-in.
    active: BTreeMap<String, Arc<LoadedPlugin>>,
}

impl Inner {
    fn resolve(&mut self) {
        let mut active = self.builtins.clone();
        let mut files: Vec<&Arc<LoadedPlugin>> = self.files.values().collect();
        // Several files may claim one name: the most recently loaded wins.
        files.sort_by_key(|p| p.loaded_at_ms);
        for plugin in files {
            active.insert(plugin.info.name.clone(), plugin.clone());
        }
        self.active = active;
    }
}

#[derive(Default)]
pub struct Registry {
    inner: RwLock<Inner>,
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The plugin serving `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.read().active.get(name).cloned()
    }

    pub fn insert_builtin(&self, plugin: Arc<LoadedPlugin>) {
        let mut inner = self.write();
        inner.builtins.insert(plugin.info.name.clone(), plugin);
        inner.resolve();
    }

    /// Puts a plugin file in service (replacing what that path held); returns
    /// the plugin it replaced as the server of that name, if any.
    pub fn insert_file(&self, path: &Path, plugin: Arc<LoadedPlugin>) -> Option<Arc<LoadedPlugin>> {
        let mut inner = self.write();
        let previous = inner.active.get(&plugin.info.name).cloned();
        inner.refused.remove(path);
        inner.files.insert(path.to_path_buf(), plugin);
        inner.resolve();
        previous
    }

    /// Takes a removed file out of service; a built-in of its name serves again.
    pub fn remove_file(&self, path: &Path) -> Option<Arc<LoadedPlugin>> {
        let mut inner = self.write();
        inner.refused.remove(path);
        let removed = inner.files.remove(path);
        inner.resolve();
        removed
    }

    /// Records a refused file; what served before keeps serving.
    pub fn refuse(&self, path: &Path, refusal: Refusal) {
        self.write().refused.insert(path.to_path_buf(), refusal);
    }

    /// The plugin loaded from `path`, if any.
    pub fn file(&self, path: &Path) -> Option<Arc<LoadedPlugin>> {
        self.read().files.get(path).cloned()
    }

    /// Every loaded plugin (active or shadowed), built-ins first.
    pub fn loaded(&self) -> Vec<(Arc<LoadedPlugin>, bool)> {
        let inner = self.read();
        inner
            .builtins
            .values()
            .chain(inner.files.values())
            .map(|p| {
                let active = inner
                    .active
                    .get(&p.info.name)
                    .is_some_and(|a| Arc::ptr_eq(a, p));
                (p.clone(), active)
            })
            .collect()
    }

    pub fn refused(&self) -> Vec<Refusal> {
        self.read().refused.values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.read().active.keys().cloned().collect()
    }
}
