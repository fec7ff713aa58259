//! Builds every plugin crate under `plugins/` for `wasm32-wasip2` and embeds
//! the components in the engine, so a bare `hookline serve` has all built-in
//! integrations. The guests are built by a nested cargo in a target directory
//! of their own (`target/wasm-plugins`), so it never waits on the outer
//! build's lock and is shared by debug and release builds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .expect("engine/ lives in the workspace root")
        .to_path_buf();
    let plugins_dir = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let mut names: Vec<String> = std::fs::read_dir(&plugins_dir)
        .expect("failed to read plugins/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // The outer build's flags are for the host, not for the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_PROFILE_RELEASE_LTO")
        // clippy wraps rustc for workspace crates; the guests need plain rustc.
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for name in &names {
        cmd.args(["-p", &format!("hookline-plugin-{name}")]);
    }
    let status = cmd.status().expect("failed to run cargo for the plugins");
    if !status.success() {
        // If you are reading this: the guest build failed. Check that the
        // target is installed (`rustup target add wasm32-wasip2`) and that
        // `cargo build -p hookline-plugin-<name> --target wasm32-wasip2` works.
        panic!("building the built-in plugins for wasm32-wasip2 failed ({status})");
    }

    let mut out =
        String::from("/// The built-in plugins: (crate directory name, component bytes).\n");
    out.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for name in &names {
        let file = component_path(&target_dir, name);
        assert!(
            file.is_file(),
            "plugin component {} was not built",
            file.display()
        );
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

fn component_path(target_dir: &Path, name: &str) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join("plugin")
        .join(format!("hookline_plugin_{}.wasm", name.replace('-', "_")))
}
