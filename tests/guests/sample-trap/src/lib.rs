//! Test fixture: a plugin that answers `info` but traps on the event the
//! engine transforms when it loads a plugin, so it must be refused.

use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

struct SampleTrap;

impl Plugin for SampleTrap {
    fn info() -> PluginInfo {
        PluginInfo::new("mischief", "9.0.0", "traps on the load check")
    }

    fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        if event.ty == "hookline.plugin.check" {
            panic!("the load check is not welcome here");
        }
        Ok(Vec::new())
    }
}

hookline_sdk::export_plugin!(SampleTrap);
