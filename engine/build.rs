//! Builds every plugin crate under `plugins/` for `wasm32-wasip2` and embeds
//! the components in the engine, so a bare `hookline serve` has all built-in
//! integrations (see `hookline-build`, `engine/build-support/`, for how
//! they are built).

use hookline_build::components;

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("engine/ lives in the workspace root");
    let names = components::crate_dirs(&root.join("plugins"));
    let components = components::build(root, "wasm-plugins", "hookline-plugin-", &names);

    let mut out =
        String::from("/// The built-in plugins: (crate directory name, component bytes).\n");
    out.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for (name, file) in &components {
        writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            file.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("builtin_plugins.rs"), out).unwrap();
}
