//! Builds the test guests under `tests/guests/` for wasm32-wasip2 (the same
//! way `engine/build.rs` builds the built-in plugins) and writes their paths
//! to `guests.rs`: `pub const MISCHIEF: &str = "/…/hookline_guest_mischief.wasm";`
//! and so on.

use hookline_build::components;

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let names = components::crate_dirs(&manifest_dir.join("guests"));
    let components = components::build(root, "wasm-guests", "hookline-guest-", &names);

    let mut out = String::new();
    for (name, file) in &components {
        let constant = name.replace('-', "_").to_uppercase();
        writeln!(
            out,
            "pub const {constant}: &str = {:?};",
            file.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs"),
        out,
    )
    .unwrap();
}
