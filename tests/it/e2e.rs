//! End to end with real, published MCP peers: the official TypeScript SDK client
//! (`tests/e2e/client.mjs`) drives `behavry wrap` around `@modelcontextprotocol/server-filesystem`,
//! both installed from `tests/e2e/package-lock.json`.
//!
//! Needs Node.js and npm. The packages are installed with `npm ci` on first run; these tests fail
//! (never skip) when that is impossible, so a green run always means they ran.

use std::path::Path;

use crate::common::*;
use serde_json::{json, Value};

fn result_text(r: &Value) -> &str {
    r.pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Writes inside the project are fine; everything else follows the seed policy.
const PROJECT_WRITES: &str = r#"package behavry.authz
import rego.v1
allow if {
	input.action.type == "write"
	startswith(input.resource.path, concat("", [input.session.project_dir, "/"]))
}
"#;

#[test]
fn real_client_and_server_through_behavry() {
    let home = Home::with_policy("seed.rego", SEED);
    home.policy("project.rego", PROJECT_WRITES);
    let root_dir = tempfile::tempdir().expect("tempdir");
    // The server resolves its allowed directories through symlinks; so do we.
    let root = root_dir.path().canonicalize().expect("canonical root");
    std::fs::write(root.join("hello.txt"), "hello from disk\n").expect("write");

    let out = run_client(
        &home,
        &root,
        json!([
            {"name": "read_text_file", "arguments": {"path": root.join("hello.txt")}},
            {"name": "write_file", "arguments": {"path": "/prod/config.yaml", "content": "pwned"}},
            {"name": "write_file", "arguments": {"path": root.join("new.txt"), "content": "written"}},
            {"name": "move_file", "arguments": {"source": root.join("new.txt"), "destination": "/tmp/elsewhere.txt"}},
            {"name": "list_allowed_directories", "arguments": {}},
        ]),
    );
    assert_eq!(out["server"]["name"], "secure-filesystem-server", "{out}");
    assert!(out["tools"]
        .as_array()
        .is_some_and(|t| t.contains(&json!("write_file"))));
    let results = out["results"].as_array().expect("results");

    assert_eq!(results[0]["ok"], true, "{out}");
    assert_eq!(result_text(&results[0]), "hello from disk\n");
    assert_ne!(results[0]["result"]["isError"], true);

    assert_eq!(results[1]["result"]["isError"], true, "{out}");
    assert_eq!(
        result_text(&results[1]),
        "behavry denied fs/write_file: a deny rule matched"
    );
    assert!(!Path::new("/prod/config.yaml").exists());

    assert_ne!(results[2]["result"]["isError"], true, "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("new.txt")).expect("written"),
        "written"
    );

    // A move is a write, and its destination is outside the project: default deny.
    assert_eq!(results[3]["result"]["isError"], true, "{out}");
    assert!(root.join("new.txt").exists());

    assert_ne!(results[4]["result"]["isError"], true, "{out}");

    let rows = home.log(&[]);
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap_or(""),
                r["action_type"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("read_text_file", "read", "allow"),
            ("write_file", "write", "deny"),
            ("write_file", "write", "allow"),
            ("move_file", "write", "deny"),
            ("list_allowed_directories", "list", "allow"),
        ]
    );
    let read = &rows[0];
    assert_eq!(read["server"], "fs");
    assert_eq!(read["method"], "tools/call");
    assert_eq!(read["resource_path"], json!(root.join("hello.txt")));
    assert_eq!(read["outcome"], "ok");
    assert_eq!(read["channel"], "behavry-e2e");
    assert_eq!(read["agent"], "behavry-e2e");
    assert_eq!(read["reasons"], json!([]));
    assert!(read["duration_ms"].as_f64().is_some());
    let denied = &rows[1];
    assert_eq!(denied["resource_path"], "/prod/config.yaml");
    assert_eq!(denied["reasons"], json!(["a deny rule matched"]));
    assert_eq!(denied["outcome"], Value::Null);
    assert_eq!(rows[3]["resource_path"], json!(root.join("new.txt")));
    assert!(rows
        .iter()
        .all(|r| r["policy_hash"] == read["policy_hash"] && r["session_id"] == read["session_id"]));

    // The table form and the filters work on the same rows.
    assert_eq!(home.log(&["--decision", "deny"]).len(), 2);
    assert_eq!(home.log(&["--tool", "fs/write_file"]).len(), 2);
    assert_eq!(
        home.log(&["--since", "1h", "--limit", "1"])[0]["tool"],
        "list_allowed_directories"
    );
    let table = run(&mut home.command(&["log"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("fs/write_file") && table.contains("a deny rule matched"),
        "{table}"
    );
}

#[test]
fn server_errors_are_recorded_as_outcomes() {
    let home = Home::with_policy("seed.rego", SEED);
    let root_dir = tempfile::tempdir().expect("tempdir");
    let root = root_dir.path().canonicalize().expect("canonical root");
    // Allowed by policy, refused by the server (outside its allowed directory).
    let out = run_client(
        &home,
        &root,
        json!([{"name": "read_text_file", "arguments": {"path": "/etc/hostname-nope"}}]),
    );
    assert_eq!(out["results"][0]["result"]["isError"], true, "{out}");
    assert!(
        !result_text(&out["results"][0]).starts_with("behavry"),
        "the server answered: {out}"
    );
    let rows = home.log(&[]);
    assert_eq!(rows[0]["decision"], "allow");
    assert_eq!(rows[0]["outcome"], "is_error");
}
