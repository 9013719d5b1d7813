//! Policies end to end: hot reload in a running `behavry wrap` (valid, invalid, fixed, refused),
//! data documents, and the `behavry policy` commands' output and exit codes.

use std::path::Path;

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n";
const DENY_ECHO: &str = "package behavry.authz\nimport rego.v1\ndeny if input.action.name == \"echo\"\nreasons contains \"echo is switched off\" if input.action.name == \"echo\"\n";
const SYNTAX_ERROR: &str = "package behavry.authz\nimport rego.v1\nallow if {\n";
const UNSAFE_VAR: &str = "package behavry.authz\nimport rego.v1\nallow if x == 1\n";
const UNKNOWN_BUILTIN: &str =
    "package behavry.authz\nimport rego.v1\nallow if nosuch.fn(input.x)\n";
const CONFLICT: &str = "package behavry.authz\nimport rego.v1\nallow := true\nallow := false\n";

/// Calls `echo` and says what happened: `Some(true)` forwarded, `Some(false)` denied by behavry.
/// Anything else (an error reply, a lost call) fails the test: reloads must never break calls.
fn echo(w: &mut Wrapper, id: i64) -> (bool, String) {
    let reply = w.call(id, "echo", json!({"text": "hi"}));
    let text = text(&reply).to_owned();
    if !is_error(&reply) && text == "hi" {
        (true, text)
    } else if is_error(&reply) && text.starts_with("behavry denied mock/echo") {
        (false, text)
    } else {
        panic!("a call during reloads was neither forwarded nor denied: {reply}");
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The kinds of the policy events (the session record each wrapper writes is left out).
fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
        .filter(|k| k != "session")
        .collect()
}

/// The policy events (the session record each wrapper writes is left out).
fn policy_events(home: &Home) -> Vec<Value> {
    home.events()
        .into_iter()
        .filter(|e| e["kind"] != "session")
        .collect()
}

#[test]
fn reload_under_traffic_applies_valid_sets_and_keeps_the_last_good_one() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap_mock();
    w.initialize();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    assert!(echo(&mut w, next()).0);

    // Valid → the new behaviour, with calls flowing all along.
    home.save_policy("p.rego", DENY_ECHO);
    assert!(
        eventually(|| !echo(&mut w, next()).0),
        "the deny policy was never enforced"
    );
    let (_, text) = echo(&mut w, next());
    assert_eq!(text, "behavry denied mock/echo: echo is switched off");

    // Invalid → the old behaviour stays, the error is reported with its place.
    home.save_policy("p.rego", SYNTAX_ERROR);
    assert!(
        eventually(|| kinds(&home.events()).contains(&"policy_reload_failed".to_owned())),
        "no policy_reload_failed event"
    );
    let (forwarded, text) = echo(&mut w, next());
    assert!(!forwarded);
    assert_eq!(
        text, "behavry denied mock/echo: echo is switched off",
        "the last good set decides, not the broken one"
    );
    let file = home.policy_dir().join("p.rego");
    let at = format!("{}:4:1", file.display());
    let mut stderr_seen = w.stderr_until(&[&at, "stay in force"]);
    assert!(
        stderr_seen.contains(&at) && stderr_seen.contains("stay in force"),
        "{stderr_seen}"
    );

    // Fixed → the new behaviour.
    home.save_policy("p.rego", ALLOW_ECHO);
    assert!(
        eventually(|| echo(&mut w, next()).0),
        "the fixed policy was never enforced"
    );
    for _ in 0..20 {
        assert!(echo(&mut w, next()).0, "calls keep flowing after reloads");
    }
    let (code, rest) = w.finish();
    assert_eq!(code, Some(0));
    stderr_seen.push_str(&rest);
    assert!(stderr_seen.contains("policies reloaded"), "{stderr_seen}");

    // The audit trail: which set was in force when, and every decision names the set that made it.
    let events = policy_events(&home);
    assert_eq!(
        kinds(&events),
        ["policy_reload", "policy_reload_failed", "policy_reload"]
    );
    let deny_hash = events[0]["policy_hash"].as_str().expect("hash").to_owned();
    assert_eq!(
        events[1]["policy_hash"], deny_hash,
        "the failed reload kept the deny set"
    );
    assert!(
        events[1]["detail"]["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("p.rego:4:1")),
        "{}",
        events[1]
    );
    assert_ne!(events[1]["detail"]["rejected_hash"], deny_hash);
    let allow_hash = events[2]["policy_hash"].as_str().expect("hash").to_owned();
    assert!(events
        .iter()
        .all(|e| e["session_id"] == events[0]["session_id"] && e["server"] == "mock"));

    let rows = home.log(&[]);
    let first_hash = rows[0]["policy_hash"].as_str().expect("hash").to_owned();
    assert_eq!(first_hash, allow_hash, "the same files hash the same");
    for row in &rows {
        let hash = row["policy_hash"].as_str().unwrap_or("");
        let want = if hash == deny_hash { "deny" } else { "allow" };
        assert!(hash == deny_hash || hash == allow_hash, "{row}");
        assert_eq!(row["decision"], want, "{row}");
    }
    assert!(rows.iter().any(|r| r["policy_hash"] == deny_hash));
    assert_eq!(rows.last().expect("rows")["policy_hash"], allow_hash);
    // Reload records are part of the hash chain, and it still verifies.
    let out = run(&mut home.command(&["log", "--verify"]));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_set_that_fails_at_start_denies_until_it_is_fixed() {
    let home = Home::with_policy("p.rego", UNSAFE_VAR);
    let mut w = home.wrap_mock();
    w.initialize();
    let (forwarded, text) = echo(&mut w, 1);
    assert!(!forwarded);
    assert!(
        text.contains("policies failed to compile") && text.contains("p.rego:3:10"),
        "{text}"
    );
    home.save_policy("p.rego", ALLOW_ECHO);
    let mut id = 1;
    assert!(eventually(|| {
        id += 1;
        echo(&mut w, id).0
    }));
    w.finish();
    assert_eq!(kinds(&home.events()), ["policy_reload"]);
}

#[test]
fn new_and_deleted_files_and_subdirectories_are_picked_up() {
    let home = Home::new();
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(!echo(&mut w, 1).0, "no policies: default deny");
    let sub = home.policy_dir().join("team");
    std::fs::create_dir(&sub).expect("mkdir");
    chmod(&sub, 0o755);
    std::fs::write(sub.join("echo.rego"), ALLOW_ECHO).expect("write");
    chmod(&sub.join("echo.rego"), 0o644);
    let mut id = 1;
    assert!(eventually(|| {
        id += 1;
        echo(&mut w, id).0
    }));
    std::fs::remove_file(sub.join("echo.rego")).expect("rm");
    assert!(eventually(|| {
        id += 1;
        !echo(&mut w, id).0
    }));
}

#[test]
fn files_others_can_write_are_refused_at_start_and_on_reload() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let file = home.policy_dir().join("p.rego");
    chmod(&file, 0o666);
    let mut w = home.wrap_mock();
    w.initialize();
    let (forwarded, text) = echo(&mut w, 1);
    assert!(!forwarded, "a refused set is like a compile error: deny");
    let fix = format!("chmod go-w {}", file.display());
    assert!(text.contains(&fix), "{text}");
    let refusal = format!("{}: file is writable by group and others", file.display());
    let stderr_seen = w.stderr_until(&[&refusal, &fix]);
    assert!(
        stderr_seen.contains(&refusal) && stderr_seen.contains(&fix),
        "{stderr_seen}"
    );

    // The fix is a chmod: no contents change, and it is still picked up.
    chmod(&file, 0o644);
    let mut id = 1;
    assert!(eventually(|| {
        id += 1;
        echo(&mut w, id).0
    }));

    // A good set in force, then the directory becomes group-writable: refused, the good set stays.
    chmod(&home.policy_dir(), 0o775);
    assert!(eventually(|| kinds(&home.events())
        .last()
        .map(String::as_str)
        == Some("policy_reload_failed")));
    assert!(echo(&mut w, 100).0, "the last good set stays in force");
    let events = home.events();
    let errors = events.last().expect("event")["detail"]["errors"].to_string();
    assert!(
        errors.contains(&format!("chmod go-w {}", home.policy_dir().display())),
        "{errors}"
    );
    chmod(&home.policy_dir(), 0o755);

    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    chmod(&file, 0o620);
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "{}: file is writable by its group (mode 0620)",
            file.display()
        )) && stderr(&out).contains(&fix),
        "{}",
        stderr(&out)
    );
}

#[test]
fn data_documents_are_merged_into_data_and_reloaded() {
    let home = Home::with_policy(
        "p.rego",
        "package behavry.authz\nimport rego.v1\nallow if input.action.name in data.tools.allowed\n",
    );
    home.policy("tools.json", r#"{"tools": {"allowed": ["echo"]}}"#);
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(echo(&mut w, 1).0);
    home.save_policy("tools.json", r#"{"tools": {"allowed": ["read_file"]}}"#);
    let mut id = 1;
    assert!(eventually(|| {
        id += 1;
        !echo(&mut w, id).0
    }));
    // A broken data document is a failed reload like any other.
    home.save_policy("tools.json", r#"{"tools": "#);
    assert!(eventually(|| kinds(&home.events())
        .last()
        .map(String::as_str)
        == Some("policy_reload_failed")));
    let events = home.events();
    let errors = events.last().expect("event")["detail"]["errors"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        errors.starts_with(&format!(
            "{}:1:",
            home.policy_dir().join("tools.json").display()
        )) && errors.contains("not valid JSON"),
        "{errors}"
    );
}

#[test]
fn log_events_table_and_decision_json_are_separate() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap_mock();
    w.initialize();
    echo(&mut w, 1);
    home.save_policy("p.rego", DENY_ECHO);
    assert!(eventually(|| !policy_events(&home).is_empty()));
    drop(w);
    let table = stdout(&run(&mut home.command(&["log", "--events"])));
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    assert!(
        table.contains("policy_reload") && table.contains("1 file"),
        "{table}"
    );
    // The decision log's JSON is unchanged: no event rows, no new fields.
    let rows = home.log(&[]);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get("kind").is_none());
    let out = run(&mut home.command(&["log", "--events", "--decision", "deny"]));
    assert_eq!(out.status.code(), Some(2), "--events filters events only");
}

// ---- behavry policy check ----

#[test]
fn check_lists_files_packages_and_rules() {
    let home = Home::with_policy("seed.rego", SEED);
    home.policy(
        "lib.rego",
        "package behavry.lib\nimport rego.v1\nprod(p) if startswith(p, \"/prod/\")\nlimit := 3\n",
    );
    home.policy("data.json", r#"{"teams": {}}"#);
    home.policy("seed_test.rego", "package x\nthis is not rego\n");
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = home.policy_dir();
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with(&dir.join("lib.rego").display().to_string()));
    assert!(
        lines[0].ends_with("data.behavry.lib    prod(), limit"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("data.behavry.authz  allow, deny, escalate"),
        "{text}"
    );
    assert!(lines[2].starts_with(&dir.join("data.json").display().to_string()));
    assert!(lines[2].ends_with("(data)              teams"), "{text}");
    assert!(
        lines[3].starts_with("ok: 2 files, 2 packages, 5 rules, 1 data document; policy hash "),
        "{text}"
    );
    assert_eq!(stderr(&out), "", "test files are not checked");
}

fn check_fails_with(policy: &str, location: &str, message: &str) {
    let home = Home::with_policy("good.rego", ALLOW_ECHO);
    home.policy("bad.rego", policy);
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    let want = format!(
        "{}:{location}: {message}",
        home.policy_dir().join("bad.rego").display()
    );
    assert!(err.starts_with(&want), "want {want:?}, got:\n{err}");
    assert!(
        err.trim_end().ends_with(
            "1 error; `behavry wrap` would deny every governed call until they are fixed"
        ),
        "{err}"
    );
}

#[test]
fn check_reports_a_syntax_error_with_its_place() {
    check_fails_with(SYNTAX_ERROR, "4:1", "expecting expression");
}

#[test]
fn check_reports_an_unsafe_variable() {
    check_fails_with(
        UNSAFE_VAR,
        "3:10",
        "use of undefined variable `x` is unsafe",
    );
}

#[test]
fn check_reports_an_unknown_builtin() {
    check_fails_with(UNKNOWN_BUILTIN, "3:19", "could not find function nosuch.fn");
}

#[test]
fn check_reports_conflicting_rules() {
    check_fails_with(CONFLICT, "4:1", "rule conflicts with rule at ");
}

#[test]
fn check_reports_every_broken_file_and_rules_the_decision_never_reaches() {
    let home = Home::with_policy("a.rego", SYNTAX_ERROR);
    home.policy(
        "b.rego",
        "package behavry.authz\nimport rego.v1\nallow if {\n  input.x ==\n}\n",
    );
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("a.rego:4:1") && err.contains("b.rego:5:1") && err.contains("2 errors"),
        "{err}"
    );

    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    home.policy(
        "helpers.rego",
        "package behavry.helpers\nimport rego.v1\nslow if nosuch.fn(1)\n",
    );
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("helpers.rego:3:18: could not find function nosuch.fn")
            && stderr(&out).contains("calls whose evaluation reaches these rules would be denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_takes_directories_and_refuses_missing_ones() {
    let home = Home::new();
    let out = run(&mut home.command(&["policy", "check"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("no policy files"), "{}", stderr(&out));

    let out = run(&mut home.command(&["policy", "check", "/definitely/not/here"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/definitely/not/here does not exist"));

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/base");
    let out = run(&mut home.command(&["policy", "check", repo.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("data.behavry.authz"));
}

// ---- behavry policy eval ----

fn seed_input(ty: &str, path: &str) -> String {
    json!({
        "agent": {"id": "agent-uuid", "name": "my-agent", "role": "developer", "risk_tier": "low"},
        "action": {"type": ty, "tool": "filesystem/write_file"},
        "resource": {"path": path, "server": "filesystem"},
        "session": {"id": "session-uuid", "duration_seconds": 120},
        "requester": {"id": "user@company.com", "channel": "claude-code"}
    })
    .to_string()
}

#[test]
fn eval_prints_the_decision_and_the_rules_that_held() {
    let home = Home::with_policy("seed.rego", SEED);
    home.policy("why.rego", "package behavry.authz\nimport rego.v1\nreasons contains \"production is read-only\" if startswith(input.resource.path, \"/prod/\")\n");
    let input = home.path().join("input.json");
    std::fs::write(&input, seed_input("write", "/prod/config.yaml")).expect("write");
    let input = input.to_str().expect("utf-8");

    let out = run(&mut home.command(&["policy", "eval", "--input", input, "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"decision\":\"deny\",\"allow\":false,\"deny\":true,\"escalate\":false,\"reasons\":[\"production is read-only\"]}\n"
    );

    let out = run(&mut home.command(&["policy", "eval", "--input", input]));
    assert_eq!(
        stdout(&out),
        "decision: deny\n  allow:    false\n  deny:     true\n  escalate: false\nreasons:\n  - production is read-only\n"
    );

    std::fs::write(
        home.path().join("input.json"),
        seed_input("delete", "/tmp/x"),
    )
    .expect("write");
    let out = run(&mut home.command(&["policy", "eval", "--input", input, "--json"]));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v,
        json!({"decision": "escalate", "allow": false, "deny": false, "escalate": true, "reasons": []})
    );
}

#[test]
fn eval_reads_policies_from_the_given_dirs_and_stdin() {
    let home = Home::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples");
    let mut cmd = home.command(&[
        "policy",
        "eval",
        "--input",
        "-",
        "--policies",
        repo.to_str().expect("utf-8"),
        "--json",
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(seed_input("read", "/home/x").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        v["decision"], "allow",
        "the seed policy allows developer reads"
    );
}

#[test]
fn eval_builds_the_input_from_an_mcp_request() {
    let home = Home::with_policy("seed.rego", SEED);
    let call = home.path().join("call.json");
    std::fs::write(
        &call,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/prod/../prod/app.yaml","content":"x"}}}"#,
    )
    .expect("write");
    let call = call.to_str().expect("utf-8");
    let out = run(home
        .command(&["policy", "eval", "--mcp", call, "--server", "fs"])
        .env("CLAUDE_PROJECT_DIR", "/work/project"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (input, decision) = text
        .strip_prefix("input:\n")
        .and_then(|t| t.split_once("\n\n"))
        .expect("input, then decision");
    let input: Value = serde_json::from_str(input).expect("input is JSON");
    assert_eq!(input["action"]["tool"], "fs/write_file");
    assert_eq!(input["action"]["type"], "write");
    assert_eq!(input["resource"]["path"], "/prod/app.yaml");
    assert_eq!(input["session"]["project_dir"], "/work/project");
    assert_eq!(input["requester"]["id"], "tester");
    assert_eq!(
        input["behavry"]["policy_dirs"],
        json!([home.policy_dir().display().to_string()])
    );
    assert!(decision.starts_with("decision: deny\n"), "{decision}");

    let out = run(&mut home.command(&[
        "policy",
        "eval",
        "--mcp",
        call,
        "--server",
        "fs",
        "--print-input",
    ]));
    let printed: Value = serde_json::from_str(&stdout(&out)).expect("only the input");
    assert_eq!(printed["resource"]["server"], "fs");

    let out = run(&mut home.command(&["policy", "eval", "--mcp", call]));
    assert_eq!(out.status.code(), Some(2), "--mcp needs --server");
}

#[test]
fn eval_fails_clearly_on_bad_input_and_broken_policies() {
    let home = Home::with_policy("seed.rego", SEED);
    let input = home.path().join("input.json");
    std::fs::write(&input, "{\"agent\": ").expect("write");
    let out =
        run(&mut home.command(&["policy", "eval", "--input", input.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{}:1:", input.display()))
            && stderr(&out).contains("not valid JSON"),
        "{}",
        stderr(&out)
    );

    let list = home.path().join("list.json");
    std::fs::write(&list, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("write");
    let out = run(&mut home.command(&[
        "policy",
        "eval",
        "--mcp",
        list.to_str().expect("utf-8"),
        "--server",
        "fs",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a governed request"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&input, seed_input("read", "/x")).expect("write");
    home.policy("broken.rego", CONFLICT);
    let out = run(&mut home.command(&[
        "policy",
        "eval",
        "--input",
        input.to_str().expect("utf-8"),
        "--json",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("broken.rego:4:1: rule conflicts"),
        "{}",
        stderr(&out)
    );
}

// ---- behavry policy test ----

const TESTS: &str = r#"package behavry.authz_test
import rego.v1

test_echo_allowed if data.behavry.decision.decision == "allow" with input as {"action": {"name": "echo"}}
test_others_denied if data.behavry.decision.decision == "deny" with input as {"action": {"name": "rm"}}
"#;

#[test]
fn test_runs_every_test_rule_and_reports_failures() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    home.policy("p_test.rego", TESTS);
    let out = run(&mut home.command(&["policy", "test"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "2 passed, 0 failed\n");

    let out = run(&mut home.command(&["policy", "test", "-v"]));
    assert!(stdout(&out).contains("PASS "), "{}", stdout(&out));

    home.policy(
        "more_test.rego",
        "package more_test\nimport rego.v1\ntest_wrong if data.behavry.decision.decision == \"deny\" with input as {\"action\": {\"name\": \"echo\"}}\ntest_boom if nosuch.fn(1)\n",
    );
    let out = run(&mut home.command(&["policy", "test"]));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let file = home.policy_dir().join("more_test.rego");
    assert!(
        text.contains(&format!(
            "FAIL {}:3: data.more_test.test_wrong (undefined)",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "FAIL {}:4: data.more_test.test_boom (error)",
            file.display()
        )) && text.contains("could not find function nosuch.fn"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("2 passed, 2 failed"));
}

#[test]
fn test_refuses_to_run_when_something_does_not_compile() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    home.policy("p_test.rego", "package t\nimport rego.v1\ntest_x if {\n");
    let out = run(&mut home.command(&["policy", "test"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("p_test.rego:4:1") && stderr(&out).contains("no test was run"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_policies_pass_their_tests() {
    let home = Home::new();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let out = run(&mut home.command(&["policy", "test", policies.to_str().expect("utf-8")]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let last = text.lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{text}");
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 20, "{text}");
}

#[test]
fn the_seed_policy_is_shipped_verbatim() {
    let seed = "package behavry.authz\n\nimport future.keywords.if\n\n# Allow all actions for the developer role\nallow if {\ninput.agent.role == \"developer\"\ninput.action.type in {\"read\", \"list\"}\n}\n\n# Deny write actions to production paths\ndeny if {\ninput.action.type == \"write\"\nstartswith(input.resource.path, \"/prod/\")\n}\n\n# Escalate file deletions\nescalate if {\ninput.action.type == \"delete\"\n}\n";
    assert_eq!(SEED, seed);
}

// ---- behavry policy add / list ----

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn add_installs_a_valid_file_atomically() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::with_policy("seed.rego", SEED);
    let file = home.path().join("my-first-policy.rego");
    std::fs::write(&file, DENY_ECHO).expect("write");
    chmod(&file, 0o600);
    let out = run(&mut home.command(&["policy", "add", file.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dest = home.policy_dir().join("my-first-policy.rego");
    assert!(
        stdout(&out).starts_with(&format!("installed {} (sha256 ", dest.display())),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&dest).expect("installed"),
        DENY_ECHO
    );
    let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(
        listing(&home.policy_dir()),
        ["my-first-policy.rego", "seed.rego"]
    );

    // --name, and replacing a file of that name.
    let out = run(&mut home.command(&[
        "policy",
        "add",
        file.to_str().expect("utf-8"),
        "--name",
        "seed",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("replaced "), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(home.policy_dir().join("seed.rego")).expect("read"),
        DENY_ECHO
    );

    let out = run(&mut home.command(&["policy", "list"]));
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let sha = |t: &str| {
        use std::fmt::Write;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes());
        digest.iter().take(6).fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    assert!(
        text.starts_with(&format!("{}\n", home.policy_dir().display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {:<20}  {:<13}  SHA-256\n", "FILE", "PACKAGE")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  my-first-policy.rego  behavry.authz  {}\n",
            sha(DENY_ECHO)
        )),
        "{text}"
    );
    let check = stdout(&run(&mut home.command(&["policy", "check"])));
    let hash = check.rsplit(' ').next().unwrap_or("").trim();
    assert!(
        text.ends_with(&format!("  policy hash {hash}\n")),
        "{text}\n{check}"
    );
}

#[test]
fn add_installs_nothing_when_the_set_would_not_compile() {
    let home = Home::with_policy("seed.rego", SEED);
    let before = listing(&home.policy_dir());
    for (name, text, want) in [
        (
            "syntax.rego",
            SYNTAX_ERROR,
            "syntax.rego:4:1: expecting expression",
        ),
        (
            "unsafe.rego",
            UNSAFE_VAR,
            "unsafe.rego:3:10: use of undefined variable `x` is unsafe",
        ),
        (
            "builtin.rego",
            UNKNOWN_BUILTIN,
            "builtin.rego:3:19: could not find function nosuch.fn",
        ),
        // Fine alone, but conflicts with the installed seed policy's `deny`.
        (
            "conflict.rego",
            "package behavry.authz\nimport rego.v1\ndeny := false\n",
            "rule conflicts",
        ),
        (
            "data.json",
            "[1, 2]",
            "a data document must be a JSON object",
        ),
    ] {
        let file = home.path().join(name);
        std::fs::write(&file, text).expect("write");
        let out = run(&mut home.command(&["policy", "add", file.to_str().expect("utf-8")]));
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains("not installed") && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(
            listing(&home.policy_dir()),
            before,
            "{name} left something behind"
        );
    }

    let out = run(&mut home.command(&["policy", "add", "/definitely/not/here.rego"]));
    assert_eq!(out.status.code(), Some(1));
    let notes = home.path().join("notes.txt");
    std::fs::write(&notes, "x").expect("write");
    let out = run(&mut home.command(&["policy", "add", notes.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only .rego policies and .json data documents"));
    let good = home.path().join("good.rego");
    std::fs::write(&good, ALLOW_ECHO).expect("write");
    let out = run(&mut home.command(&[
        "policy",
        "add",
        good.to_str().expect("utf-8"),
        "--name",
        "../escape",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(listing(&home.policy_dir()), before);
    assert!(!home.path().join("escape.rego").exists());

    chmod(&home.policy_dir(), 0o777);
    let out = run(&mut home.command(&["policy", "add", good.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Fix: chmod go-w {}", home.policy_dir().display())),
        "{}",
        stderr(&out)
    );
    chmod(&home.policy_dir(), 0o755);
    assert_eq!(listing(&home.policy_dir()), before);
}

#[test]
fn add_creates_the_policy_dir_and_a_running_wrapper_picks_the_file_up() {
    let home = Home::new();
    std::fs::remove_dir(home.policy_dir()).expect("rmdir");
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(!echo(&mut w, 1).0);
    let file = home.path().join("echo.rego");
    std::fs::write(&file, ALLOW_ECHO).expect("write");
    let out = run(&mut home.command(&["policy", "add", file.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut id = 1;
    assert!(eventually(|| {
        id += 1;
        echo(&mut w, id).0
    }));
}

#[test]
fn eval_mcp_reports_calls_refused_before_policy() {
    let home = Home::with_policy("seed.rego", SEED);
    let call = home.path().join("call.json");
    let target = home.policy_dir().join("seed.rego");
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "write_file", "arguments": {"path": target, "content": "allow := true"}}});
    std::fs::write(&call, request.to_string()).expect("write");
    let out = run(&mut home.command(&[
        "policy",
        "eval",
        "--mcp",
        call.to_str().expect("utf-8"),
        "--server",
        "fs",
    ]));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("before evaluating any policy"),
        "{}",
        stderr(&out)
    );
}

// ---- behavry policy bench ----

#[test]
fn bench_prints_the_decision_and_the_figures() {
    let home = Home::with_policy("seed.rego", SEED);
    let input = home.path().join("input.json");
    std::fs::write(&input, seed_input("write", "/prod/config.yaml")).expect("write");
    let input = input.to_str().expect("utf-8");

    let out = run(&mut home.command(&["policy", "bench", "--input", input, "-n", "50"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "decision: deny");
    let figures: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(figures[..2], ["50", "evaluations:"], "{text}");
    for (label, at) in [("p50", 2), ("p99", 5), ("mean", 8), ("max", 11)] {
        assert_eq!(figures[at], label, "{text}");
        let us: f64 = figures[at + 1].parse().expect("a number of µs");
        assert!(us > 0.0, "{text}");
        assert_eq!(figures[at + 2], "µs", "{text}");
    }

    // The same ways of giving an input as `eval`, and a count of at least one.
    let out = run(&mut home.command(&["policy", "bench", "-n", "0", "--input", input]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&mut home.command(&["policy", "bench"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn bench_refuses_policies_that_do_not_compile() {
    let home = Home::with_policy("bad.rego", "package behavry.authz\nallow if {\n");
    let input = home.path().join("input.json");
    std::fs::write(&input, seed_input("read", "/tmp/x")).expect("write");
    let out =
        run(&mut home.command(&["policy", "bench", "--input", input.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.rego:"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn add_warns_about_a_shared_package_and_replace_installs_instead() {
    let home = Home::new();
    let out = run(&mut home.command(&["init"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seed = home.path().join("seed.rego");
    std::fs::write(&seed, SEED).expect("write");
    let seed = seed.to_str().expect("utf-8");
    // A write outside any project: the seed policy alone denies it by default, base escalates it.
    let input = home.path().join("input.json");
    std::fs::write(&input, seed_input("write", "/tmp/x")).expect("write");
    let decision = || {
        let out = run(&mut home.command(&[
            "policy",
            "eval",
            "--input",
            input.to_str().expect("utf-8"),
            "--json",
        ]));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).expect("json");
        v["decision"].as_str().unwrap_or("").to_owned()
    };

    // Added next to base: both are in force, and the warning says how to replace instead.
    let out = run(&mut home.command(&["policy", "add", seed]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("declares `package behavry.authz`, as base.rego already does")
            && err.contains(&format!("behavry policy add {seed} --replace base.rego")),
        "{err}"
    );
    assert_eq!(
        listing(&home.policy_dir()),
        ["base.rego", "base_test.rego", "lib.rego", "seed.rego"]
    );
    assert_eq!(decision(), "escalate");

    // A --replace that is not an installed file changes nothing.
    for bad in ["nope.rego", "../config.toml", "/etc/passwd"] {
        let out = run(&mut home.command(&["policy", "add", seed, "--replace", bad]));
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
        assert!(home.policy_dir().join("base.rego").exists());
    }

    // --replace: the new file is written, then base.rego removed, and no warning is left to give.
    std::fs::remove_file(home.policy_dir().join("seed.rego")).expect("rm");
    let out = run(&mut home.command(&["policy", "add", seed, "--replace", "base.rego"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let dir = home.policy_dir();
    assert!(
        stdout(&out).starts_with(&format!(
            "installed {}/seed.rego (sha256 1ff42789b4fb)\nremoved {}/base.rego (replaced by seed.rego)\n",
            dir.display(),
            dir.display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(listing(&dir), ["base_test.rego", "lib.rego", "seed.rego"]);
    assert_eq!(decision(), "deny");
}
