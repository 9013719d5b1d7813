//! Managed deployment: the system config an administrator installs, and
//! `behavry claude managed`, which writes Claude Code's managed files.

use serde_json::json;

use crate::common::*;

const ALLOW_ALL: &str = "package behavry.authz\nallow := true\n";

/// A system config in a root-owned directory of its own (tests run as root, as CI does).
fn system_config(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);
    let file = dir.path().join("config.toml");
    std::fs::write(&file, text).expect("write system config");
    chmod(&file, mode);
    (dir, file)
}

#[test]
fn a_system_config_others_can_write_denies_every_call_saying_why() {
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let (_dir, file) = system_config("local = \"off\"\n", 0o666);
    let file = file.to_str().expect("utf-8 path");
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_SYSTEM_CONFIG", file)],
    );
    w.initialize();
    let warning = w.recv();
    assert_eq!(warning["method"], "notifications/message", "{warning}");
    let reply = w.call(2, "echo", json!({"text": "hi"}));
    assert!(is_error(&reply), "{reply}");
    assert!(
        text(&reply).contains("is refused") && text(&reply).contains("chmod go-w"),
        "{reply}"
    );
    let (_, stderr) = w.finish();
    assert!(
        stderr.contains("every governed call will be denied"),
        "{stderr}"
    );
    assert_eq!(home.log(&[])[0]["decision"], "deny");

    // Fixed, the same policies allow the call.
    chmod(std::path::Path::new(file), 0o644);
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_SYSTEM_CONFIG", file)],
    );
    w.initialize();
    let reply = w.call(2, "echo", json!({"text": "hi"}));
    assert!(!is_error(&reply), "{reply}");
}

#[test]
fn paths_shows_the_system_config() {
    let home = Home::new();
    let (_dir, file) = system_config("", 0o644);
    let out = run(home.command(&["paths"]).env("BEHAVRY_SYSTEM_CONFIG", &file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("system:   {} (in force)", file.display())),
        "{stdout}"
    );
}
