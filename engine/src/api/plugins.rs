//! `/v1/plugins`: which plugins serve, where they came from, which files were
//! refused and why, each version's quarantine per app, and the sandbox's
//! memory budget. `POST /v1/plugins/{name}/lift` lifts a quarantine.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorBody;
use super::{ApiError, AppState, parse_json};
use crate::auth::Caller;
use crate::id::rfc3339;
use crate::plugins::PluginSource;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(lift))
}

/// The file name of a plugin file: where the plugins directory is on the
/// server is not the client's business.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Plugins in service with their quarantines, refused files, the sandbox's budget.
#[utoipa::path(get, path = "", tag = "plugins",
    responses((status = 200, description = "`{data: [Plugin], sandbox}`"), (status = "4XX", body = ErrorBody)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    // An app key sees the plugins and its own app's quarantine; other apps,
    // faults and refused files are the operator's.
    let admin = caller.scope().is_none();
    let mut out: Vec<Value> = state
        .host
        .registry
        .loaded()
        .iter()
        .map(|(p, active)| {
            let (source, file) = match &p.source {
                PluginSource::Builtin => ("builtin", None),
                PluginSource::File(path) => ("file", Some(file_name(path))),
            };
            // A built-in replaced by a file of the same name is "shadowed".
            let plugin_state = if *active { "active" } else { "shadowed" };
            let quarantine: Vec<Value> = p
                .quarantine_view()
                .into_iter()
                .filter(|a| caller.check_app(&a.app_id).is_ok())
                .map(|a| {
                    json!({
                        "app_id": a.app_id,
                        "state": a.state,
                        "consecutive_faults": a.consecutive_faults,
                        "faults": a.faults,
                        "opened": a.opened,
                        "reason": a.reason,
                        "probe_at": a.probe_at_ms.map(rfc3339),
                    })
                })
                .collect();
            json!({
                "name": p.info.name,
                "version": p.info.version,
                "description": p.info.description,
                "hash": p.hash,
                "world": format!("hookline:plugin@{}", p.world),
                "sdk_version": p.sdk_version,
                "source": source,
                "file": file,
                "state": plugin_state,
                "quarantined_for": p.quarantined_apps().into_iter().filter(|a| caller.check_app(a).is_ok()).collect::<Vec<_>>(),
                "quarantine": quarantine,
                "last_error": if admin { p.last_error() } else { None },
                "warm_instances": p.warm_instances(),
                "loaded_at": rfc3339(p.loaded_at_ms),
                "config_schema": p.info.config_schema,
            })
        })
        .collect();
    for r in state.host.registry.refused().into_iter().filter(|_| admin) {
        out.push(json!({
            "name": r.name,
            "source": "file",
            "file": file_name(&r.path),
            "state": "refused",
            "last_error": r.error,
            "loaded_at": rfc3339(r.at_ms),
        }));
    }
    let sandbox = if admin {
        json!(state.host.usage())
    } else {
        Value::Null
    };
    Json(json!({ "data": out, "sandbox": sandbox }))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LiftInput {
    /// Lift for this app only; every app when absent.
    app_id: Option<String>,
}

/// Lifts the quarantine of the plugin serving `name`; its waiting
/// deliveries go now.
/// Lift a plugin's quarantine for one app (`{app_id}`) or every app.
#[utoipa::path(post, path = "/{name}/lift", tag = "plugins", params(("name" = String, Path)),
    request_body(content = Object, description = "`{app_id?}`"),
    responses((status = 200, description = "`{name, version, lifted_for}`"), (status = "4XX", body = ErrorBody)))]
async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    // An empty body lifts for every app.
    let input: LiftInput = match &body {
        Ok(b) if b.is_empty() => LiftInput::default(),
        _ => parse_json(body)?,
    };
    let plugin = state
        .host
        .registry
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no plugin named {name:?} is loaded")))?;
    // An app key lifts its own app's quarantine only.
    let app = caller.app_or_own(input.app_id)?;
    let lifted = plugin.lift_quarantine(app.as_deref());
    tracing::info!(plugin = %name, apps = ?lifted, "quarantine lifted by an operator");
    Ok(Json(json!({
        "name": plugin.info.name,
        "version": plugin.info.version,
        "lifted_for": lifted,
    })))
}
