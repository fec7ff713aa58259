//! Test fixture: a plugin whose `info` traps.

use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

struct InfoTrap;

impl Plugin for InfoTrap {
    fn info() -> PluginInfo {
        panic!("info is broken")
    }

    fn transform(_event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        Ok(Vec::new())
    }
}

hookline_sdk::export_plugin!(InfoTrap);
