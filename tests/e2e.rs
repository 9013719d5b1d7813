//! End to end with real, published MCP peers: the official TypeScript SDK client
//! (`tests/e2e/client.mjs`) drives `behavry wrap` around `@modelcontextprotocol/server-filesystem`,
//! both installed from `tests/e2e/package-lock.json`.
//!
//! Needs Node.js and npm. The packages are installed with `npm ci` on first run; these tests fail
//! (never skip) when that is impossible, so a green run always means they ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::{json, Value};

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Installs the pinned packages once per test run.
fn node_modules() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = e2e_dir();
        let modules = dir.join("node_modules");
        if !modules
            .join("@modelcontextprotocol/server-filesystem/package.json")
            .exists()
        {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .unwrap_or_else(|e| {
                    panic!("the end-to-end tests need npm (Node.js >= 20) on PATH: {e}")
                });
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
        modules
    })
}

/// Runs the SDK client against `behavry wrap -- node server-filesystem <root>`.
fn run_client(home: &Home, root: &Path, calls: Value) -> Value {
    let server = node_modules().join("@modelcontextprotocol/server-filesystem/dist/index.js");
    let spec = json!({
        "command": BIN,
        "args": ["wrap", "--name", "fs", "--", "node", server, root],
        "env": {
            "BEHAVRY_HOME": home.path(),
            "USER": "tester",
            "CLAUDE_PROJECT_DIR": root,
        },
        "calls": calls,
    });
    let spec_file = home.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write spec");
    let out = Command::new("node")
        .arg(e2e_dir().join("client.mjs"))
        .arg(&spec_file)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client output {stdout:?}: {e}\n{stderr}"))
}

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
