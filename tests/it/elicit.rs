//! Approvals inside the client: a held call is put to the person as an MCP elicitation form, which
//! the real TypeScript SDK client answers, racing `behavry approve` (the shared store).

use std::path::{Path, PathBuf};

use crate::common::*;
use behavry::audit::store::Resolution;
use serde_json::{json, Value};

/// Reads are allowed; writes need a person.
const WRITES_NEED_A_PERSON: &str = r#"package behavry.authz
import rego.v1
allow if input.action.type in {"read", "list"}
escalate if input.action.type == "write"
reasons contains "writes need a person" if input.action.type == "write"
"#;

struct Desk {
    home: Home,
    _root_dir: tempfile::TempDir,
    root: PathBuf,
}

fn desk() -> Desk {
    let home = Home::with_policy("p.rego", WRITES_NEED_A_PERSON);
    let root_dir = tempfile::tempdir().expect("tempdir");
    let root = root_dir.path().canonicalize().expect("canonical root");
    Desk {
        home,
        _root_dir: root_dir,
        root,
    }
}

fn write(root: &Path, name: &str) -> Value {
    json!({"name": "write_file", "arguments": {"path": root.join(name), "content": "written"}})
}

fn accept(decision: &str) -> Value {
    json!({"action": "accept", "content": {"decision": decision}})
}

fn result_text(r: &Value) -> &str {
    r.pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Runs the client in the background while `meanwhile` acts on the store; returns its output.
fn with_client(d: &Desk, calls: Value, answers: Value, meanwhile: impl FnOnce(&Home)) -> Value {
    std::thread::scope(|s| {
        let client =
            s.spawn(|| run_client_with(&d.home, &d.root, calls, json!({"elicitation": answers})));
        meanwhile(&d.home);
        client.join().expect("client thread")
    })
}

/// Approves the one pending call through the store, as `behavry approve` does.
fn approve_in_the_tui(home: &Home) {
    let call = wait_pending(home, 1).remove(0);
    assert!(store(home)
        .resolve(
            call.id,
            Some(&call.request_hash),
            Resolution::Approved,
            None,
            "tester via behavry approve"
        )
        .expect("resolve"));
}

#[test]
fn approved_in_the_form() {
    let d = desk();
    let out = run_client_with(
        &d.home,
        &d.root,
        json!([write(&d.root, "a.txt")]),
        json!({"elicitation": [accept("approve")]}),
    );
    let results = out["results"].as_array().expect("results");
    assert_ne!(results[0]["result"]["isError"], true, "{out}");
    assert_eq!(
        std::fs::read_to_string(d.root.join("a.txt"))
            .ok()
            .as_deref(),
        Some("written")
    );
    let forms = out["elicitations"].as_array().expect("elicitations");
    assert_eq!(forms.len(), 1, "{out}");
    let message = forms[0]["params"]["message"].as_str().unwrap_or("");
    for shown in [
        "Tool: fs/write_file",
        &format!("Path: {}", d.root.join("a.txt").display()),
        "Why: writes need a person",
        "\"content\":\"written\"",
    ] {
        assert!(message.contains(shown), "{shown:?} in {message}");
    }
    let row = &d.home.log(&["--tool", "write_file"])[0];
    assert_eq!(row["resolution"], "approved", "{row}");
    assert!(
        row["resolved_by"]
            .as_str()
            .is_some_and(|by| by.contains("behavry-e2e") && by.contains("elicitation")),
        "the journal says which channel resolved it: {row}"
    );
    assert_eq!(row["outcome"], "ok");
}

#[test]
fn declined_in_the_form() {
    let d = desk();
    let out = run_client_with(
        &d.home,
        &d.root,
        json!([write(&d.root, "a.txt"), write(&d.root, "b.txt")]),
        json!({"elicitation": [{"action": "decline"}, accept("deny")]}),
    );
    let results = out["results"].as_array().expect("results");
    for r in results {
        assert_eq!(r["result"]["isError"], true, "{out}");
        assert_eq!(
            result_text(r),
            "behavry denied fs/write_file: a person denied this call in behavry-e2e"
        );
    }
    assert!(!d.root.join("a.txt").exists() && !d.root.join("b.txt").exists());
    let rows = d.home.log(&["--tool", "write_file"]);
    assert!(
        rows.iter().all(|r| r["resolution"] == "denied"),
        "{rows:#?}"
    );
}

#[test]
fn a_cancelled_form_leaves_the_call_to_behavry_approve() {
    let d = desk();
    // `claude -p` cancels every form at once; Esc does the same. That is no decision.
    let out = with_client(
        &d,
        json!([write(&d.root, "a.txt")]),
        json!([{"action": "cancel"}]),
        approve_in_the_tui,
    );
    assert_ne!(out["results"][0]["result"]["isError"], true, "{out}");
    assert!(d.root.join("a.txt").exists());
    assert_eq!(out["elicitations"][0]["answer"]["action"], "cancel");
    let row = &d.home.log(&["--tool", "write_file"])[0];
    assert_eq!(row["resolved_by"], "tester via behavry approve");
}

#[test]
fn behavry_approve_wins_and_the_form_is_withdrawn() {
    let d = desk();
    let out = with_client(
        &d,
        json!([write(&d.root, "a.txt")]),
        json!(["hang"]),
        approve_in_the_tui,
    );
    assert_ne!(out["results"][0]["result"]["isError"], true, "{out}");
    assert!(d.root.join("a.txt").exists());
    assert_eq!(
        out["elicitations"][0]["answer"], "withdrawn",
        "the open form was cancelled: {out}"
    );
}

#[test]
fn approved_for_the_session_asks_once() {
    let d = desk();
    let out = run_client_with(
        &d.home,
        &d.root,
        json!([write(&d.root, "a.txt"), write(&d.root, "b.txt")]),
        json!({"elicitation": [accept("approve_for_session")]}),
    );
    assert!(
        d.root.join("a.txt").exists() && d.root.join("b.txt").exists(),
        "{out}"
    );
    assert_eq!(
        out["elicitations"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    let rows = d.home.log(&["--tool", "write_file"]);
    assert!(
        rows.iter().all(|r| r["resolution"] == "approved_session"),
        "{rows:#?}"
    );
}

#[test]
fn approval_tui_never_sends_a_form() {
    let d = desk();
    d.home.config("[wrap]\napproval = \"tui\"\n");
    let out = with_client(
        &d,
        json!([write(&d.root, "a.txt")]),
        json!([accept("approve")]),
        approve_in_the_tui,
    );
    assert_ne!(out["results"][0]["result"]["isError"], true, "{out}");
    assert_eq!(out["elicitations"], json!([]), "{out}");
}
