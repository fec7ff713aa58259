//! Test fixture: behaves like a plain plugin, except for events whose type
//! asks for trouble: `mischief.loop` (never returns), `mischief.hog`
//! (allocates without bound), `mischief.panic`, `mischief.huge` (a 100 MB body),
//! `mischief.exit` (asks WASI to end the process).

use hookline_sdk::{Config, Event, Plugin, PluginError, PluginInfo, Request};

struct Mischief;

impl Plugin for Mischief {
    fn info() -> PluginInfo {
        PluginInfo::new("mischief", "1.0.0", "misbehaves on demand")
    }

    fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        match event.ty.as_str() {
            "mischief.loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "mischief.hog" => {
                // Reserve without touching: memory grows at once, so the
                // memory cap, not the deadline, is what stops it.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(8 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            "mischief.panic" => panic!("mischief asked to panic"),
            "mischief.exit" => std::process::exit(3),
            "mischief.huge" => Ok(vec![Request::bytes(vec![b'x'; 100 << 20], "text/plain")]),
            _ => Ok(vec![Request::bytes(
                format!("ok {}", event.id).into_bytes(),
                "text/plain",
            )]),
        }
    }
}

hookline_sdk::export_plugin!(Mischief);
