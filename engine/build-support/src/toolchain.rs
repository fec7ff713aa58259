//! Making sure the `wasm32-wasip2` standard library is there.
//!
//! `rust-toolchain.toml` lists the target, but rustup only installs listed
//! targets when it installs the toolchain itself: a toolchain that was already
//! on the machine keeps whatever targets it had. So the build checks the
//! active toolchain's sysroot and, when the target is missing, runs
//! `rustup target add wasm32-wasip2` for that toolchain (the one rustup chose
//! for this build, `RUSTUP_TOOLCHAIN`) and says so in a `cargo:warning`.
//! Without rustup, or when rustup cannot install it (no network), the build
//! stops at once with the exact command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the plugins are compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// Installs the `wasm32-wasip2` standard library for the toolchain of this
/// build when it is missing; exits the build script with a clear message when
/// that is impossible.
pub fn ensure_wasm_target() {
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = match sysroot(&rustc) {
        Ok(sysroot) => sysroot,
        Err(e) => fail(&format!("could not ask {rustc} for its sysroot: {e}")),
    };
    if target_installed(&sysroot) {
        return;
    }

    let toolchain = toolchain_name(&sysroot);
    let mut add = vec!["target".to_owned(), "add".to_owned(), TARGET.to_owned()];
    if let Some(toolchain) = &toolchain {
        add.extend(["--toolchain".to_owned(), toolchain.clone()]);
    }
    let command = format!("rustup {}", add.join(" "));

    // `--toolchain` names the toolchain this build runs on, so rustup cannot
    // pick another one from the working directory or its defaults.
    let outcome = Command::new("rustup").args(&add).status();
    match outcome {
        Ok(status) if status.success() && target_installed(&sysroot) => {
            println!(
                "cargo:warning=the {TARGET} target was missing from toolchain {}; installed it with `{command}`",
                toolchain.as_deref().unwrap_or("(active)")
            );
        }
        Ok(status) => fail(&format!(
            "the {TARGET} standard library is not installed in {} and `{command}` failed ({status}).\n\
             Run it yourself once the network is reachable:\n\n    {command}\n",
            sysroot.display()
        )),
        Err(e) => fail(&format!(
            "the {TARGET} standard library is not installed in {} and rustup could not be run ({e}).\n\
             Install the target for this toolchain; with rustup that is:\n\n    {command}\n",
            sysroot.display()
        )),
    }
}

/// The sysroot of `rustc`.
fn sysroot(rustc: &str) -> Result<PathBuf, String> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// Whether the sysroot holds the target's `std`.
pub fn target_installed(sysroot: &Path) -> bool {
    let lib = sysroot.join("lib/rustlib").join(TARGET).join("lib");
    std::fs::read_dir(lib).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

/// The rustup toolchain this build runs on: `RUSTUP_TOOLCHAIN` when rustup
/// set it, else the toolchain directory the sysroot lives in.
fn toolchain_name(sysroot: &Path) -> Option<String> {
    if let Ok(name) = std::env::var("RUSTUP_TOOLCHAIN")
        && !name.is_empty()
    {
        return Some(name);
    }
    let parent = sysroot.parent()?;
    (parent.file_name()? == "toolchains")
        .then(|| {
            sysroot
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .flatten()
}

/// Stops the build script with `message`, before anything heavy is compiled.
fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}");
    println!(
        "cargo:warning={}",
        message.lines().next().unwrap_or(message)
    );
    std::process::exit(1);
}
