//! Paths a call names under any key: the shipped base policy sees them, and the audit log keeps
//! every one (`behavry log`: all in `--json`, the first and a count in the table).

use std::path::Path;

use crate::common::*;
use serde_json::json;

/// A home whose policy directory holds the shipped base policy (its tests left out).
fn base_home() -> Home {
    let home = Home::new();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/base");
    for name in ["base.rego", "lib.rego"] {
        let text = std::fs::read_to_string(base.join(name)).expect("policies/base");
        home.policy(name, &text);
    }
    home
}

#[test]
fn the_base_policy_guards_ssh_keys_named_under_file_path() {
    let home = base_home();
    let user_home = tempfile::tempdir().expect("tempdir");
    let user_home = std::fs::canonicalize(user_home.path()).expect("canonical home");
    let key = user_home.join(".ssh/id_rsa").display().to_string();
    let mut w = home.wrap(
        &[
            "--name",
            "fs",
            "--approval-timeout",
            "1",
            "--",
            BIN,
            "mock-server",
        ],
        &[("HOME", user_home.to_str().expect("utf-8"))],
    );
    w.initialize();

    // Changing a key is denied outright.
    let write = w.call(
        1,
        "write_file",
        json!({"filePath": "~/.ssh/id_rsa", "content": "x"}),
    );
    assert!(is_error(&write), "{write}");
    assert!(text(&write).contains("holds credentials"), "{write}");

    // Reading one needs a person: it is held, and nobody approves it here.
    let read = w.call(2, "read_file", json!({"filePath": "~/.ssh/id_rsa"}));
    assert!(is_error(&read), "{read}");
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));

    assert_eq!(home.mock_received().matches("tools/call").count(), 0);
    let rows = home.log(&[]);
    assert_eq!(rows[0]["decision"], "deny");
    assert_eq!(rows[0]["resource_path"], json!(key));
    assert_eq!(rows[1]["decision"], "escalate");
    assert_eq!(rows[1]["resolution"], "timeout");
    assert!(
        rows[1]["reasons"][0]
            .as_str()
            .unwrap_or("")
            .contains("reading it needs approval"),
        "{}",
        rows[1]
    );
}

#[test]
fn the_log_keeps_every_path_of_a_call() {
    let home = Home::with_policy(
        "allow.rego",
        "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n",
    );
    let root = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(root.path()).expect("canonical root");
    let r = |p: &str| root.join(p).display().to_string();
    let mut w = home.wrap_mock();
    w.initialize();
    let reply = w.call(
        1,
        "echo",
        json!({"text": "hi", "repo_path": r("repo"), "files": ["a.txt"], "edits": [{"path": r("b.txt")}]}),
    );
    assert_eq!(text(&reply), "hi");
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));

    let rows = home.log(&[]);
    let cwd = std::env::current_dir().expect("cwd");
    let cwd = std::fs::canonicalize(cwd).expect("canonical cwd");
    // `path` keys first, then `files`, then the rest. The relative `a.txt` is read against the
    // working directory and every absolute path of the call (a file among them too: behavry
    // cannot know which one the server means).
    let want = json!([
        r("b.txt"),
        cwd.join("a.txt").display().to_string(),
        r("b.txt/a.txt"),
        r("repo/a.txt"),
        r("repo")
    ]);
    assert_eq!(rows[0]["paths"], want, "{}", rows[0]);
    assert_eq!(rows[0]["resource_path"], json!(r("b.txt")));

    let table = run(&mut home.command(&["log"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("+4 more"), "{table}");

    // The paths are part of the hash-chained record.
    let verify = run(&mut home.command(&["log", "--verify"]));
    assert_eq!(verify.status.code(), Some(0));
}
