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
        .args(["serve", "--max-attempts", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-attempts"));
}
