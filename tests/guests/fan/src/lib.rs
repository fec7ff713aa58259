//! Test fixture: the `fan` plugin sends three requests per event, so tests
//! can check that a retry resends only the requests not yet accepted.

use hookline_sdk::serde_json::json;
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

struct Fan;

impl Plugin for Fan {
    fn info() -> PluginInfo {
        PluginInfo::new("fan", "1.0.0", "three requests per event")
    }

    fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        Ok((0..3)
            .map(|part| Request::json(&json!({ "part": part, "id": event.id })))
            .collect())
    }
}

hookline_sdk::export_plugin!(Fan);
