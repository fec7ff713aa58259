//! Builds the test guests under `tests/guests/` for wasm32-wasip2 (a nested
//! cargo with a target directory of its own, as `engine/build.rs` does for the
//! built-in plugins) and writes their paths to `guests.rs`:
//! `pub const MISCHIEF: &str = "/…/hookline_guest_mischief.wasm";` and so on.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let guests_dir = manifest_dir.join("guests");
    println!("cargo:rerun-if-changed={}", guests_dir.display());
    println!("cargo:rerun-if-changed={}", root.join("sdk").display());

    let mut names: Vec<String> = std::fs::read_dir(&guests_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
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
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for name in &names {
        cmd.args(["-p", &format!("hookline-guest-{name}")]);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the test guests");
    assert!(
        status.success(),
        "building the test guests for wasm32-wasip2 failed ({status})"
    );

    let mut out = String::new();
    for name in &names {
        let file = target_dir
            .join("wasm32-wasip2/plugin")
            .join(format!("hookline_guest_{}.wasm", name.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        writeln!(
            out,
            "pub const {}: &str = {:?};",
            name.replace('-', "_").to_uppercase(),
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
