//! Test fixture: version 1 of the `swap` plugin, for hot-reload tests.

use hookline_sdk::serde_json::json;
use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

struct Swap;

impl Plugin for Swap {
    fn info() -> PluginInfo {
        PluginInfo::new("swap", "1.0.0", "says which version rendered the event")
    }

    fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        Ok(vec![Request::json(
            &json!({ "version": 1, "id": event.id }),
        )])
    }
}

hookline_sdk::export_plugin!(Swap);
