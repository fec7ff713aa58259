//! Building workspace crates as `wasm32-wasip2` components from a build
//! script: `engine/build.rs` builds the built-in plugins, `tests/build.rs`
//! the test guests.
//!
//! The components are built by a nested cargo with a target directory of
//! their own under `target/`, so it never waits on the outer build's lock and
//! is shared by debug and release builds. They use the workspace's `plugin`
//! profile (opt-level 3, LTO, stripped).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate directories directly under `dir` (those with a `Cargo.toml`),
/// sorted; cargo is told to rerun when anything below `dir` changes.
pub fn crate_dirs(dir: &Path) -> Vec<String> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Builds the packages `{package_prefix}{name}` into `target/{target_subdir}`
/// and returns each name with the path of its component.
pub fn build(
    root: &Path,
    target_subdir: &str,
    package_prefix: &str,
    names: &[String],
) -> Vec<(String, PathBuf)> {
    // This crate's own build script checked the target at the start of the
    // build; check again, cheaply, in case it was removed since.
    crate::toolchain::ensure_wasm_target();
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(target_subdir);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // The outer build's flags and target are for the host, not for the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        // clippy wraps rustc for workspace crates; the guests need plain rustc.
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for name in names {
        cmd.args(["-p", &format!("{package_prefix}{name}")]);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the wasm32-wasip2 components");
    // The target was checked by `toolchain::ensure_wasm_target`; if this
    // fails, the guest crates themselves do not build: cargo printed why.
    assert!(
        status.success(),
        "building {package_prefix}* for wasm32-wasip2 failed ({status})"
    );

    names
        .iter()
        .map(|name| {
            let file = target_dir.join("wasm32-wasip2/plugin").join(format!(
                "{}{}.wasm",
                package_prefix.replace('-', "_"),
                name.replace('-', "_")
            ));
            assert!(file.is_file(), "component {} was not built", file.display());
            (name.clone(), file)
        })
        .collect()
}
