//! Test fixture: behaves like a plain plugin, except for events whose type
//! asks for trouble:
//!
//! - `mischief.loop`: computes forever (the CPU budget stops it);
//! - `mischief.sleep`: sleeps through WASI for an hour (the deadline stops it);
//! - `mischief.spin-clock`: waits an hour by reading the WASI clock in a loop
//!   (host calls, little fuel: the CPU-time budget stops it);
//! - `mischief.hog`: allocates without bound (the memory cap);
//! - `mischief.huge`: returns a 100 MiB body (more than its memory holds);
//! - `mischief.big`: returns a 40 MiB body (in its memory, past what the
//!   host lifts);
//! - `mischief.error`: returns an error whose message is 100 MiB;
//! - `mischief.big-error`: returns an error whose message is 40 MiB;
//! - `mischief.log`: logs in a loop;
//! - `mischief.panic`: traps;
//! - `mischief.exit`: asks WASI to end the process;
//! - `mischief.remember`: answers with the app of the previous call this
//!   instance served (state kept between calls, which must never cross apps).
//!
//! `validate-config` misbehaves on `{"mode": "sleep" | "loop" | "panic"}`.

use std::sync::Mutex;

use hookline_sdk::{Config, Event, LogLevel, Plugin, PluginError, PluginInfo, Request};

struct Mischief;

/// What `mischief.remember` left behind in this instance.
static LAST_APP: Mutex<Option<String>> = Mutex::new(None);

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Plugin for Mischief {
    fn info() -> PluginInfo {
        PluginInfo::new("mischief", "1.0.0", "misbehaves on demand")
    }

    fn validate_config(config: &Config) -> Result<(), PluginError> {
        match config.str("mode")? {
            Some("sleep") => std::thread::sleep(std::time::Duration::from_secs(3600)),
            Some("loop") => spin(),
            Some("panic") => panic!("mischief asked to panic in validate-config"),
            _ => {}
        }
        Ok(())
    }

    fn transform(event: &Event, _config: &Config) -> Result<Vec<Request>, PluginError> {
        match event.ty.as_str() {
            "mischief.loop" => spin(),
            "mischief.sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Vec::new())
            }
            "mischief.spin-clock" => {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(3600) {}
                Ok(Vec::new())
            }
            "mischief.hog" => {
                // Reserve without touching: memory grows at once, so the
                // memory cap, not the CPU budget, is what stops it.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(8 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            "mischief.panic" => panic!("mischief asked to panic"),
            "mischief.exit" => std::process::exit(3),
            "mischief.huge" => Ok(vec![Request::bytes(vec![b'x'; 100 << 20], "text/plain")]),
            "mischief.big" => Ok(vec![Request::bytes(vec![b'x'; 40 << 20], "text/plain")]),
            "mischief.error" => Err(PluginError::Internal("e".repeat(100 << 20))),
            "mischief.big-error" => Err(PluginError::Internal("e".repeat(40 << 20))),
            "mischief.log" => loop {
                hookline_sdk::log(LogLevel::Warn, "mischief logs in a loop");
            },
            "mischief.remember" => {
                let mut last = LAST_APP.lock().unwrap_or_else(|e| e.into_inner());
                let previous = last.replace(event.app_id.clone());
                Ok(vec![Request::bytes(
                    format!(
                        "app {} after {}",
                        event.app_id,
                        previous.as_deref().unwrap_or("nothing")
                    )
                    .into_bytes(),
                    "text/plain",
                )])
            }
            _ => Ok(vec![Request::bytes(
                format!("ok {}", event.id).into_bytes(),
                "text/plain",
            )]),
        }
    }
}

hookline_sdk::export_plugin!(Mischief);
