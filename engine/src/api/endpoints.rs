//! `/v1/apps/{app_id}/endpoints`: where an app's events go.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, AppState, Page, page, parse_json};
use crate::delivery::signing::SigningKey;
use crate::filter::TypeFilter;
use crate::id::{new_id, now_ms, rfc3339};
use crate::plugins::{CallError, GuestError};
use crate::store::apps;
use crate::store::endpoints::{self, Endpoint, EndpointChanges};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{app_id}/endpoints", get(list).post(create))
        .route(
            "/{app_id}/endpoints/{endpoint_id}",
            get(fetch).patch(update).delete(remove),
        )
        .route("/{app_id}/endpoints/{endpoint_id}/secret", get(secret))
}

const DEFAULT_PLUGIN: &str = "webhook";
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 1024;
const MAX_CONFIG_BYTES: usize = 64 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    #[serde(default)]
    description: String,
    plugin: Option<String>,
    plugin_config: Option<Value>,
    #[serde(default)]
    filter_types: Vec<String>,
    secret: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateEndpoint {
    url: Option<String>,
    description: Option<String>,
    plugin: Option<String>,
    plugin_config: Option<Value>,
    filter_types: Option<Vec<String>>,
    secret: Option<String>,
    enabled: Option<bool>,
}

/// An endpoint as the API shows it; the secret only on creation and from `/secret`.
#[derive(Serialize)]
struct EndpointOut {
    id: String,
    app_id: String,
    url: String,
    description: String,
    plugin: String,
    plugin_config: Value,
    filter_types: Vec<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> EndpointOut {
        EndpointOut {
            id: e.id,
            app_id: e.app_id,
            url: e.url,
            description: e.description,
            plugin: e.plugin,
            plugin_config: serde_json::from_str(&e.plugin_config).unwrap_or(Value::Null),
            filter_types: serde_json::from_str(&e.filter_types).unwrap_or_default(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            secret: None,
        }
    }
}

fn check_url(url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::invalid(
            "url",
            format!("{} bytes, the limit is {MAX_URL}", url.len()),
        ));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| ApiError::invalid("url", format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "url",
            format!("scheme must be http or https, got {}", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "must have a host"));
    }
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid(
            "url",
            "must not contain a fragment or credentials",
        ));
    }
    Ok(())
}

fn check_filters(filters: &[String]) -> Result<String, ApiError> {
    TypeFilter::parse(filters).map_err(|m| {
        // The parser's message starts with "[i] …"; attach it to the field.
        match m.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
            Some((i, rest)) => ApiError::invalid(format!("filter_types[{i}]"), rest.trim_start()),
            None => ApiError::invalid("filter_types", m),
        }
    })?;
    Ok(serde_json::to_string(filters).unwrap_or_else(|_| "[]".into()))
}

fn check_secret(secret: &str) -> Result<(), ApiError> {
    SigningKey::parse(secret)
        .map(|_| ())
        .map_err(|m| ApiError::invalid("secret", m))
}

/// Checks the plugin exists and accepts the config; returns the config as JSON text.
async fn check_plugin(
    state: &AppState,
    plugin: &str,
    config: Option<Value>,
) -> Result<String, ApiError> {
    let config = config.unwrap_or_else(|| Value::Object(Default::default()));
    if !config.is_object() {
        return Err(ApiError::invalid("plugin_config", "must be a JSON object"));
    }
    let text = config.to_string();
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ApiError::invalid(
            "plugin_config",
            format!("{} bytes, the limit is {MAX_CONFIG_BYTES}", text.len()),
        ));
    }
    let Some(loaded) = state.host.registry.get(plugin) else {
        return Err(ApiError::invalid(
            "plugin",
            format!(
                "no plugin named {plugin:?} is loaded (loaded: {})",
                state.host.registry.names().join(", ")
            ),
        ));
    };
    let config_text = text.clone();
    let verdict = tokio::task::spawn_blocking(move || loaded.validate_config(&config_text))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match verdict {
        Ok(()) => Ok(text),
        Err(CallError::Guest(g)) => {
            let message = match g.0 {
                GuestError::BadConfig(m) | GuestError::BadEvent(m) | GuestError::Internal(m) => m,
            };
            Err(ApiError::invalid("plugin_config", message))
        }
        Err(e) => Err(ApiError::invalid(
            "plugin",
            format!("plugin {plugin:?} failed to check the config: {e}"),
        )),
    }
}

async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let input: CreateEndpoint = parse_json(body)?;
    let lookup = app_id.clone();
    state.store.read(move |c| apps::get(c, &lookup)).await?;
    check_url(&input.url)?;
    if input.description.len() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(
            "description",
            format!("the limit is {MAX_DESCRIPTION} bytes"),
        ));
    }
    let filter_types = check_filters(&input.filter_types)?;
    let secret = match input.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => SigningKey::generate(),
    };
    let plugin = input.plugin.unwrap_or_else(|| DEFAULT_PLUGIN.into());
    let plugin_config = check_plugin(&state, &plugin, input.plugin_config).await?;
    let now = now_ms();
    let enabled = input.enabled.unwrap_or(true);
    let endpoint = Endpoint {
        id: new_id("ep"),
        app_id,
        url: input.url,
        description: input.description,
        plugin,
        plugin_config,
        filter_types,
        secret: secret.clone(),
        enabled,
        disabled_reason: (!enabled).then(|| "disabled by operator".to_string()),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    let row = endpoint.clone();
    state
        .store
        .write(move |c| endpoints::insert(c, &row))
        .await?;
    let mut out = EndpointOut::from(endpoint);
    out.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit()?;
    let rows = state
        .store
        .read(move |c| {
            apps::get(c, &app_id)?;
            endpoints::list(c, &app_id, p.cursor.as_deref(), limit)
        })
        .await?;
    let out: Vec<EndpointOut> = rows.into_iter().map(Into::into).collect();
    Ok(Json(page(out, limit, |e| e.id.clone())))
}

async fn fetch(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<EndpointOut>, ApiError> {
    let endpoint = state
        .store
        .read(move |c| endpoints::get(c, &app_id, &endpoint_id))
        .await?;
    Ok(Json(endpoint.into()))
}

async fn secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let endpoint = state
        .store
        .read(move |c| endpoints::get(c, &app_id, &endpoint_id))
        .await?;
    Ok(Json(serde_json::json!({ "secret": endpoint.secret })))
}

async fn update(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointOut>, ApiError> {
    let input: UpdateEndpoint = parse_json(body)?;
    let (a, e) = (app_id.clone(), endpoint_id.clone());
    let current = state.store.read(move |c| endpoints::get(c, &a, &e)).await?;
    let mut changes = EndpointChanges {
        updated_at: Some(now_ms()),
        ..Default::default()
    };
    if let Some(url) = input.url {
        check_url(&url)?;
        changes.url = Some(url);
    }
    if let Some(d) = input.description {
        if d.len() > MAX_DESCRIPTION {
            return Err(ApiError::invalid(
                "description",
                format!("the limit is {MAX_DESCRIPTION} bytes"),
            ));
        }
        changes.description = Some(d);
    }
    if let Some(f) = input.filter_types {
        changes.filter_types = Some(check_filters(&f)?);
    }
    if let Some(s) = input.secret {
        check_secret(&s)?;
        changes.secret = Some(s);
    }
    // A new plugin or config is checked by the plugin that will use it.
    if input.plugin.is_some() || input.plugin_config.is_some() {
        let plugin = input.plugin.unwrap_or(current.plugin);
        let config = match input.plugin_config {
            Some(c) => Some(c),
            None => serde_json::from_str(&current.plugin_config).ok(),
        };
        changes.plugin_config = Some(check_plugin(&state, &plugin, config).await?);
        changes.plugin = Some(plugin);
    }
    if let Some(enabled) = input.enabled {
        changes.enabled = Some(enabled);
        changes.disabled_reason = Some((!enabled).then(|| "disabled by operator".to_string()));
    }
    let updated = state
        .store
        .write(move |c| endpoints::update(c, &app_id, &endpoint_id, &changes))
        .await?;
    Ok(Json(updated.into()))
}

async fn remove(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .write(move |c| endpoints::soft_delete(c, &app_id, &endpoint_id, now_ms()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
