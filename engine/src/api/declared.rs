//! Apps and endpoints declared in the config file (`[[apps]]`), applied at
//! start-up, for configuration kept under version control.
//!
//! Applying is idempotent: a declared app or endpoint that is missing is
//! created with the declared id; one that exists gets only the declared
//! fields that differ from what is stored, through the same checks as the
//! API's create and update (URL and SSRF guard, the plugin's config check,
//! filters, policy). Nothing is removed: an endpoint dropped from the file
//! stays until it is removed through the API, so a file edited by mistake
//! cannot delete an endpoint and its queue. Operational events are routed
//! by declaring endpoints of the system app, `app_system`.

use serde_json::{Map, Value};

use super::endpoints::{self, CreateEndpoint, EndpointOut, UpdateEndpoint};
use super::{ApiError, AppState};
use crate::config::{DeclaredApp, DeclaredEndpoint};
use crate::store::{StoreError, apps};

/// Checks the fields of a declared endpoint as the API's create would take
/// them (names and shapes, the URL's form); an error names the field.
pub fn check_fields(fields: &Map<String, Value>) -> Result<(), String> {
    let input: CreateEndpoint = from_fields(fields.clone()).map_err(|e| e.to_string())?;
    url::Url::parse(&input.url).map_err(|e| format!("url: not a valid URL: {e}"))?;
    Ok(())
}

/// What applying the file did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Fields of the create body that an update cannot compare or change.
const CREATE_ONLY: [&str; 2] = ["signature", "handshake"];

/// Applies the declared apps and endpoints; an error names the app, the
/// endpoint and the field that was refused.
pub async fn apply(state: &AppState, declared: &[DeclaredApp]) -> anyhow::Result<Applied> {
    let mut applied = Applied::default();
    for app in declared {
        apply_app(state, app, &mut applied).await?;
        for endpoint in &app.endpoints {
            apply_endpoint(state, &app.id, endpoint, &mut applied)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "config file: app {} endpoint {}: {}",
                        app.id,
                        endpoint.id,
                        refusal(e)
                    )
                })?;
        }
    }
    Ok(applied)
}

fn refusal(e: ApiError) -> String {
    match e {
        ApiError::Invalid(field) => format!("{}: {}", field.field, field.message),
        other => other.to_string(),
    }
}

async fn apply_app(
    state: &AppState,
    app: &DeclaredApp,
    applied: &mut Applied,
) -> anyhow::Result<()> {
    let (id, name) = (app.id.clone(), app.name.clone());
    let outcome = state
        .store
        .write(move |c| match apps::get(c, &id) {
            Ok(found) if found.name == name => Ok(0),
            Ok(_) => apps::rename(c, &id, &name).map(|_| 1),
            Err(StoreError::NotFound { .. }) => apps::insert(
                c,
                &apps::App {
                    id,
                    name,
                    created_at: crate::id::now_ms(),
                },
            )
            .map(|_| 2),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| anyhow::anyhow!("config file: app {}: {e}", app.id))?;
    match outcome {
        0 => applied.unchanged += 1,
        1 => applied.updated += 1,
        _ => applied.created += 1,
    }
    Ok(())
}

async fn apply_endpoint(
    state: &AppState,
    app_id: &str,
    declared: &DeclaredEndpoint,
    applied: &mut Applied,
) -> Result<(), ApiError> {
    let sealer = state.store.sealer();
    let (app, id) = (app_id.to_string(), declared.id.clone());
    let current = state
        .store
        .read(
            move |c| match crate::store::endpoints::get(c, &sealer, &app, &id) {
                Ok(e) => Ok(Some(e)),
                Err(StoreError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        )
        .await?;
    let Some(current) = current else {
        let input: CreateEndpoint = from_fields(declared.fields.clone())?;
        endpoints::create_endpoint(state, app_id.to_string(), declared.id.clone(), input).await?;
        tracing::info!(app = app_id, endpoint = %declared.id, "declared endpoint created");
        applied.created += 1;
        return Ok(());
    };
    let secret = current.secret.clone();
    let stored = serde_json::to_value(EndpointOut::from(current)).unwrap_or_default();
    let changes = differing(&declared.fields, &stored, &secret);
    if changes.is_empty() {
        applied.unchanged += 1;
        return Ok(());
    }
    let names: Vec<String> = changes.keys().cloned().collect();
    let input: UpdateEndpoint = from_fields(changes)?;
    endpoints::update_endpoint(state, app_id.to_string(), declared.id.clone(), input).await?;
    tracing::info!(app = app_id, endpoint = %declared.id, fields = ?names, "declared endpoint updated");
    applied.updated += 1;
    Ok(())
}

/// The declared fields whose values differ from the stored endpoint's.
fn differing(declared: &Map<String, Value>, stored: &Value, secret: &str) -> Map<String, Value> {
    declared
        .iter()
        .filter(|(key, _)| !CREATE_ONLY.contains(&key.as_str()))
        .filter(|(key, value)| match key.as_str() {
            "secret" => value.as_str() != Some(secret),
            // Stored in milliseconds; declared as durations ("5m") or ms.
            "retry_schedule" => !same_schedule(value, &stored[key.as_str()]),
            _ => !stored
                .get(key.as_str())
                .is_some_and(|s| same_value(value, s)),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Equal as JSON, numbers compared by value (`5` in TOML is `5.0` stored).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

fn same_schedule(declared: &Value, stored: &Value) -> bool {
    let ms = |v: &Value| -> Option<u64> {
        match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => humantime::parse_duration(s)
                .ok()
                .map(|d| d.as_millis() as u64),
            _ => None,
        }
    };
    match (declared, stored) {
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| ms(x).is_some() && ms(x) == ms(y))
        }
        (a, b) => a == b,
    }
}

/// A create or update body from the declared fields; an unknown or
/// malformed field is refused by name.
fn from_fields<T: serde::de::DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(fields)).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_fields_that_differ_are_changed() {
        let stored = json!({
            "url": "http://a/hook",
            "filter_types": ["order.*"],
            "retry_schedule": [5000, 60000],
            "enabled": true,
        });
        let declared = json!({
            "url": "http://a/hook",
            "filter_types": ["order.*", "invoice.*"],
            "retry_schedule": ["5s", "1m"],
            "secret": "whsec_same",
            "handshake": true,
        });
        let changes = differing(declared.as_object().unwrap(), &stored, "whsec_same");
        assert_eq!(
            Value::Object(changes),
            json!({ "filter_types": ["order.*", "invoice.*"] })
        );
        // A rate limit declared with whole numbers is stored with floats.
        let stored = json!({ "rate_limit": { "per_second": 5.0, "burst": 10 } });
        let declared = json!({ "rate_limit": { "per_second": 5, "burst": 10 } });
        assert!(differing(declared.as_object().unwrap(), &stored, "s").is_empty());
        let stored = json!({ "retry_schedule": [5000, 60000] });
        let declared = json!({ "retry_schedule": ["5s"], "secret": "whsec_new" });
        let changes = differing(declared.as_object().unwrap(), &stored, "whsec_same");
        assert_eq!(changes.len(), 2);
    }
}
