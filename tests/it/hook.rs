//! `behavry hook` run as Claude Code runs it: one event on stdin, JSON (or nothing) on stdout,
//! exit 0 whatever happens; decisions and outcomes in the same log as MCP calls; the approver
//! refusing a terminal an agent drives.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;
use behavry::audit::store::Resolution;
use serde_json::{json, Value};

/// A home with the shipped base policies (what install.sh seeds).
fn shipped() -> Home {
    let home = Home::new();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/base");
    for entry in std::fs::read_dir(base).expect("policies/base") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            home.policy(name, &std::fs::read_to_string(&path).expect("read policy"));
        }
    }
    home
}

fn event(name: &str, tool: &str, input: Value, id: &str) -> Value {
    json!({
        "session_id": "sess-1",
        "transcript_path": "/nonexistent/transcript.jsonl",
        "cwd": "/home/dev/code",
        "permission_mode": "default",
        "hook_event_name": name,
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": id,
    })
}

fn hook_command(home: &Home) -> Command {
    let mut cmd = home.command(&["hook"]);
    cmd.env("CLAUDE_PROJECT_DIR", "/home/dev/code")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `behavry hook` with `stdin`; checks it exits 0, as every answer must.
fn hook_raw(home: &Home, stdin: &[u8]) -> Output {
    let mut child = hook_command(home).spawn().expect("spawn behavry hook");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write event");
    drop(input);
    let out = child.wait_with_output().expect("behavry hook");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The decision and reason answered to an event; `None` when the hook printed nothing.
fn hook(home: &Home, event: &Value) -> Option<(String, String)> {
    let out = hook_raw(home, event.to_string().as_bytes());
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    if stdout.is_empty() {
        return None;
    }
    assert_eq!(stdout.lines().count(), 1, "one answer: {stdout}");
    let answer: Value = serde_json::from_str(&stdout).expect("the answer is JSON");
    let specific = &answer["hookSpecificOutput"];
    assert_eq!(specific["hookEventName"], "PreToolUse");
    Some((
        specific["permissionDecision"]
            .as_str()
            .expect("decision")
            .to_owned(),
        specific["permissionDecisionReason"]
            .as_str()
            .expect("reason")
            .to_owned(),
    ))
}

fn pre(tool: &str, input: Value, id: &str) -> Value {
    event("PreToolUse", tool, input, id)
}

#[test]
fn claude_codes_tools_are_decided_by_the_shipped_policies() {
    let home = shipped();
    let (decision, reason) = hook(
        &home,
        &pre(
            "Bash",
            json!({"command": "rm -rf /prod/x", "description": "clean"}),
            "toolu_rm",
        ),
    )
    .expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("rm -r outside the project"), "{reason}");

    let write = pre(
        "Write",
        json!({"file_path": "notes.md", "content": "hi"}),
        "toolu_write",
    );
    assert_eq!(hook(&home, &write).expect("an answer").0, "allow");

    let (decision, reason) = hook(
        &home,
        &pre("Read", json!({"file_path": "/etc/hosts"}), "toolu_read"),
    )
    .expect("an answer");
    assert_eq!(decision, "ask");
    assert!(reason.contains("outside the project"), "{reason}");

    let (decision, reason) = hook(
        &home,
        &pre(
            "Bash",
            json!({"command": "script -qfec 'behavry approve' /dev/null"}),
            "toolu_approve",
        ),
    )
    .expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("behavry's approver"), "{reason}");

    // One log: the rows name the server `claude-code`, with resolved paths.
    let rows = home.log(&["--server", "claude-code"]);
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap_or_default(),
                r["decision"].as_str().unwrap_or_default(),
                r["request_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Bash", "deny", "toolu_rm"),
            ("Write", "allow", "toolu_write"),
            ("Read", "escalate", "toolu_read"),
            ("Bash", "deny", "toolu_approve"),
        ]
    );
    assert_eq!(rows[1]["paths"], json!(["/home/dev/code/notes.md"]));
    assert_eq!(rows[0]["paths"], json!(["/prod/x"]));
    assert_eq!(rows[0]["agent"], "claude-code");
}

#[test]
fn outcomes_are_recorded_against_their_decision() {
    let home = shipped();
    let input = json!({"file_path": "/home/dev/code/a.txt", "content": "x"});
    assert_eq!(
        hook(&home, &pre("Write", input.clone(), "toolu_a"))
            .expect("an answer")
            .0,
        "allow"
    );
    let mut post = event("PostToolUse", "Write", input, "toolu_a");
    post["tool_response"] = json!({"type": "create", "filePath": "/home/dev/code/a.txt"});
    post["duration_ms"] = json!(42);
    assert_eq!(hook(&home, &post), None, "PostToolUse gets no answer");

    let bash = json!({"command": "ls /nonexistent"});
    hook(&home, &pre("Bash", bash.clone(), "toolu_b"));
    let mut failed = event("PostToolUseFailure", "Bash", bash, "toolu_b");
    failed["error"] = json!("Exit code 2");
    failed["duration_ms"] = json!(7);
    assert_eq!(hook(&home, &failed), None);

    let rows = home.log(&["--server", "claude-code"]);
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["duration_ms"], 42.0);
    assert_eq!(rows[1]["outcome"], "is_error");
    assert_eq!(rows[1]["duration_ms"], 7.0);
}

#[test]
fn every_failure_is_a_deny_and_exit_0() {
    // Garbage, an empty stdin, an event without what a decision needs.
    for stdin in [
        &b"not json"[..],
        b"",
        br#"{"hook_event_name":"PreToolUse"}"#,
    ] {
        let out = hook_raw(&Home::new(), stdin);
        let answer: Value = serde_json::from_slice(&out.stdout).expect("a JSON answer");
        assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "deny");
    }

    // Policies that do not compile.
    let home = Home::with_policy("broken.rego", "package behavry.authz\nallow if {");
    let (decision, reason) =
        hook(&home, &pre("Read", json!({"file_path": "/a"}), "t1")).expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("failed to compile"), "{reason}");

    // A config that cannot be read.
    let home = shipped();
    home.config("[hook]\nescalate = \"sometimes\"\n");
    let (decision, reason) =
        hook(&home, &pre("Read", json!({"file_path": "/a"}), "t2")).expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("config.toml"), "{reason}");

    // A database that cannot be written.
    let home = shipped();
    std::fs::create_dir(home.path().join("behavry.db")).expect("a directory in its place");
    let (decision, reason) = hook(
        &home,
        &pre("Read", json!({"file_path": "/home/dev/code/a"}), "t3"),
    )
    .expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("behavry.db"), "{reason}");

    // A policy still running at the deadline.
    let home = Home::with_policy(
        "slow.rego",
        "package behavry.authz\nimport rego.v1\nallow if {\n some i in numbers.range(1, 100000)\n some j in numbers.range(1, 100000)\n i * j < 0\n}\n",
    );
    home.config("[wrap]\neval_timeout_ms = 600000\n[hook]\ndeadline_ms = 300\n");
    let (decision, reason) =
        hook(&home, &pre("Read", json!({"file_path": "/a"}), "t4")).expect("an answer");
    assert_eq!(decision, "deny");
    assert!(reason.contains("no decision within 300 ms"), "{reason}");
}

#[test]
fn no_rule_either_way_leaves_the_call_to_claude_code() {
    let home = Home::with_policy(
        "reads.rego",
        "package behavry.authz\nimport rego.v1\nallow if input.action.type == \"read\"\n",
    );
    assert_eq!(
        hook(&home, &pre("Bash", json!({"command": "make"}), "t1")),
        None
    );
    assert_eq!(
        hook(&home, &pre("Read", json!({"file_path": "/x"}), "t2")).map(|a| a.0),
        Some("allow".into())
    );
    let rows = home.log(&[]);
    assert_eq!(rows[0]["decision"], "escalate");
    assert!(rows[0]["reasons"][0]
        .as_str()
        .unwrap_or_default()
        .contains("Claude Code's own permissions"));
}

#[test]
fn mcp_tools_are_left_to_the_wrapper_unless_configured() {
    let home = Home::with_policy(
        "deny.rego",
        "package behavry.authz\nimport rego.v1\ndeny if true\n",
    );
    let call = pre("mcp__fs__write_file", json!({"path": "/prod/x"}), "t1");
    assert_eq!(hook(&home, &call), None);
    // Claude Code's own bookkeeping tools are never decided.
    assert_eq!(
        hook(&home, &pre("TodoWrite", json!({"todos": []}), "t2")),
        None
    );
    assert!(
        !home.path().join("behavry.db").exists(),
        "nothing decided, nothing recorded"
    );

    home.config("[hook]\nmcp_tools = \"decide\"\n");
    assert_eq!(hook(&home, &call).map(|a| a.0), Some("deny".into()));
    assert_eq!(home.log(&[])[0]["tool"], "mcp__fs__write_file");
}

#[test]
fn escalations_can_wait_for_behavry_approve() {
    let home = Home::with_policy(
        "ask.rego",
        "package behavry.authz\nimport rego.v1\nescalate if true\nreasons contains \"a person decides\" if true\n",
    );
    home.config("[hook]\nescalate = \"approve\"\napproval_timeout_secs = 60\n");
    for (resolution, want) in [
        (Resolution::Approved, "allow"),
        (Resolution::Denied, "deny"),
        (Resolution::ApprovedSession, "allow"),
    ] {
        let mut child = hook_command(&home).spawn().expect("spawn");
        let body = pre("Bash", json!({"command": "make deploy"}), "toolu_held");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(body.to_string().as_bytes()).expect("write");
        drop(stdin);
        let pending = wait_pending(&home, 1);
        assert_eq!(pending[0].server, "claude-code");
        assert_eq!(pending[0].tool, "Bash");
        assert!(store(&home)
            .resolve(pending[0].id, None, resolution, Some("not now"), "tester")
            .expect("resolve"));
        let out = child.wait_with_output().expect("hook");
        assert_eq!(out.status.code(), Some(0));
        let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], want);
        if want == "deny" {
            let reason = answer["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap_or_default();
            assert!(reason.contains("not now"), "{reason}");
        }
    }
    // Approved for the session: the next Bash call of this session is not held.
    let next = pre("Bash", json!({"command": "make test"}), "toolu_next");
    let (decision, reason) = hook(&home, &next).expect("an answer");
    assert_eq!(decision, "allow");
    assert!(reason.contains("approved for this session"), "{reason}");
    let rows = home.log(&[]);
    assert_eq!(
        rows.last().expect("a row")["resolution"],
        "approved_session"
    );
}

#[test]
fn install_and_uninstall_edit_only_behavrys_entries() {
    let home = Home::new();
    let fake_home = tempfile::tempdir().expect("tempdir");
    let settings = fake_home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().expect("dir")).expect("mkdir");
    let theirs = json!({"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "x"}]}]}});
    std::fs::write(&settings, theirs.to_string()).expect("write");
    let run_with = |args: &[&str]| {
        let out = run(home
            .command(args)
            .env("HOME", fake_home.path())
            .current_dir(fake_home.path()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run_with(&["claude", "hook", "install"]);
    let installed: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).expect("read")).expect("JSON");
    let command = installed["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
        .as_str()
        .expect("command");
    assert!(command.ends_with("behavry hook"), "{command}");
    assert!(command.starts_with("BEHAVRY_HOME="), "{command}");
    assert_eq!(installed["hooks"]["Stop"], theirs["hooks"]["Stop"]);
    let status = run_with(&["claude", "status"]);
    assert!(status.contains("behavry hooks: PreToolUse"), "{status}");
    run_with(&["claude", "hook", "uninstall"]);
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings).expect("read")).expect("JSON");
    assert_eq!(after, theirs);
}

/// Runs `behavry approve` under a pseudo-terminal made by `script`, from a shell, the way an
/// agent with a Bash tool would; returns what the terminal showed.
fn approve_under_script(home: &Home, prelude: &str, env: &[(&str, &str)]) -> String {
    let script = format!("{prelude} script -qfec '{BIN} approve' /dev/null < /dev/null");
    let mut cmd = home.program("sh", &["-c", &script]);
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let status = wait_timeout(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_approver_refuses_a_terminal_an_agent_drives() {
    let home = shipped();
    // The hook runs under `sh -c` from the agent (here, this test) and records it.
    let event = pre("Read", json!({"file_path": "/home/dev/code/a"}), "t1").to_string();
    let prelude = format!(
        "printf '%s' '{}' | CLAUDE_PROJECT_DIR=/home/dev/code {BIN} hook >/dev/null;",
        event.replace('\'', "")
    );
    let shown = approve_under_script(&home, &prelude, &[]);
    assert!(shown.contains("will not run here"), "{shown}");
    assert!(shown.contains("an agent behavry governs"), "{shown}");

    // Claude Code's Bash tool marks its shells; no hook needed to recognise them.
    let fresh = shipped();
    let shown = approve_under_script(&fresh, "", &[("CLAUDECODE", "1")]);
    assert!(shown.contains("will not run here"), "{shown}");
    assert!(shown.contains("CLAUDECODE=1"), "{shown}");
}
