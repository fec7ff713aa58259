//! The plugins currently serving, by name. Lookups hand out an `Arc`, so a
//! delivery keeps the version it started with while a new one is swapped in.

use std::collections::BTreeMap;
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
pub struct Registry {
    active: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
    refused: RwLock<Vec<Refusal>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Puts a plugin in service, replacing any of the same name.
    pub fn insert(&self, plugin: Arc<LoadedPlugin>) {
        let name = plugin.info.name.clone();
        self.refused
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.name != name);
        self.active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, plugin);
    }

    pub fn refuse(&self, refusal: Refusal) {
        let mut refused = self.refused.write().unwrap_or_else(|e| e.into_inner());
        refused.retain(|r| r.path != refusal.path);
        refused.push(refusal);
    }

    pub fn active(&self) -> Vec<Arc<LoadedPlugin>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn refused(&self) -> Vec<Refusal> {
        self.refused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}
