//! The `hookline` command line, run as a process. (Having an integration test
//! here also makes `cargo test` build the binary the `tests/` crate runs.)

use std::process::Command;

fn hookline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookline"))
}

#[test]
fn version_and_help() {
    let out = hookline().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hookline 0.1.0"));
    let out = hookline().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--listen") && help.contains("--data-dir"),
        "{help}"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let out = hookline()
        .args(["serve", "--retry-schedule", "5m,1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retry-schedule"));
}

/// A built-in plugin's component, as `build.rs` built it.
fn builtin_component(name: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join(format!(
        "wasm-plugins/wasm32-wasip2/plugin/hookline_plugin_{name}.wasm"
    ))
}

#[test]
fn plugin_check_shows_info_and_the_request() {
    let out = hookline()
        .args(["plugin", "check"])
        .arg(builtin_component("slack"))
        .args(["--config", r#"{"title": "New order {subject}"}"#])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plugin:      slack"), "{stdout}");
    assert!(
        stdout.contains("world:       hookline:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("\"blocks\""), "{stdout}");
    assert!(
        stdout.contains("New order ord_8812"),
        "the sample event went through the config: {stdout}"
    );
}

#[test]
fn plugin_check_reports_a_refused_config_and_a_bad_file() {
    let out = hookline()
        .args(["plugin", "check"])
        .arg(builtin_component("discord"))
        .args(["--config", r#"{"username": "Clyde"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config refused") && stderr.contains("username"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = hookline()
        .args(["plugin", "check"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.wasm"));
}

#[test]
fn bench_runs_to_completion_with_several_filtered_endpoints() {
    // A small run: every delivery of every endpoint must arrive once.
    let out = hookline()
        .args([
            "bench",
            "--events",
            "200",
            "--endpoints",
            "3",
            "--filter",
            r#"data.bench_seq >= 0 && event.type.startsWith("bench.")"#,
            "--durability",
            "normal",
            "--timeout",
            "60s",
        ])
        .env("HOOKLINE_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("received 600 of 600, duplicates 0"), "{text}");
}

#[test]
fn migrate_applies_once_and_serve_no_migrate_refuses_a_store_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    // A store that does not exist yet: `serve --no-migrate` refuses to
    // start and says what to run.
    let out = hookline()
        .args([
            "serve",
            "--no-migrate",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pending migrations") && err.contains("hookline migrate"),
        "{err}"
    );

    let out = hookline()
        .args(["migrate", "--data-dir", data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = String::from_utf8_lossy(&out.stdout);
    let migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite"))
            .unwrap()
            .count();
    assert_eq!(
        applied.matches(": applied ").count(),
        migrations,
        "{applied}"
    );

    let out = hookline()
        .args(["migrate", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
}
