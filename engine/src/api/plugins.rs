//! `/v1/plugins`: which plugins serve, where they came from, and which files
//! were refused and why.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::id::rfc3339;
use crate::plugins::PluginSource;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(list))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    let mut out: Vec<Value> = state
        .host
        .registry
        .loaded()
        .iter()
        .map(|(p, active)| {
            let (source, path) = match &p.source {
                PluginSource::Builtin => ("builtin", None),
                PluginSource::File(path) => ("file", Some(path.clone())),
            };
            // A built-in replaced by a file of the same name is "shadowed".
            let plugin_state = match (p.is_quarantined(), active) {
                (true, _) => "quarantined",
                (false, true) => "active",
                (false, false) => "shadowed",
            };
            json!({
                "name": p.info.name,
                "version": p.info.version,
                "description": p.info.description,
                "hash": p.hash,
                "world": format!("hookline:plugin@{}", p.world),
                "source": source,
                "path": path,
                "state": plugin_state,
                "last_error": p.last_error(),
                "loaded_at": rfc3339(p.loaded_at_ms),
                "config_schema": p.info.config_schema,
            })
        })
        .collect();
    for r in state.host.registry.refused() {
        out.push(json!({
            "name": r.name,
            "source": "file",
            "path": r.path,
            "state": "refused",
            "last_error": r.error,
            "loaded_at": rfc3339(r.at_ms),
        }));
    }
    Json(json!({ "data": out }))
}
