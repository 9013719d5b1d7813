//! `behavry wrap` end to end with the bundled mock MCP server: relaying, decisions, the audit
//! rows they leave, bad input, and the server's lifecycle.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name in {\"echo\", \"slow\"}\n";

#[test]
fn seed_policy_allows_reads_denies_prod_writes_and_escalates_deletes() {
    let home = Home::with_policy("seed.rego", SEED);
    let mut w = home.wrap(
        &[
            "--name",
            "mock",
            "--approval-timeout",
            "1",
            "--",
            BIN,
            "mock-server",
        ],
        &[],
    );
    w.initialize();

    let read = w.call(1, "read_file", json!({"path": "/etc/hosts"}));
    assert_eq!(text(&read), "contents of /etc/hosts");
    assert!(!is_error(&read));

    let write = w.call(
        2,
        "write_file",
        json!({"path": "/prod/config.yaml", "content": "x", "password": "hunter2"}),
    );
    assert!(is_error(&write), "{write}");
    assert_eq!(
        text(&write),
        "behavry denied mock/write_file: a deny rule matched"
    );

    let delete = w.call(3, "delete_file", json!({"path": "/tmp/x"}));
    assert!(is_error(&delete));
    assert!(
        text(&delete).contains("needs a person's approval"),
        "{delete}"
    );

    let other = w.call(4, "write_file", json!({"path": "/home/x"}));
    assert!(
        text(&other).ends_with("no policy rule allows this call (default deny)"),
        "{other}"
    );

    let (code, _) = w.finish();
    assert_eq!(code, Some(0));

    // Only the allowed call reached the server.
    let received = home.mock_received();
    assert!(received.contains("/etc/hosts"));
    assert!(!received.contains("/prod/config.yaml"));
    assert!(!received.contains("delete_file"));

    let rows = home.log(&[]);
    assert_eq!(rows.len(), 4);
    let r = &rows[0];
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["server"], "mock");
    assert_eq!(r["tool"], "read_file");
    assert_eq!(r["method"], "tools/call");
    assert_eq!(r["action_type"], "read");
    assert_eq!(r["resource_path"], "/etc/hosts");
    assert_eq!(r["outcome"], "ok");
    assert!(r["duration_ms"].as_f64().is_some());
    assert_eq!(r["resolution"], Value::Null);
    assert_eq!(r["agent"], "claude-code");
    assert_eq!(r["requester"], "tester");
    assert_eq!(r["channel"], "claude-code");
    assert_eq!(r["policy_hash"].as_str().map(str::len), Some(64));
    assert!(r["ts"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    assert_eq!(rows[1]["decision"], "deny");
    assert_eq!(rows[1]["reasons"], json!(["a deny rule matched"]));
    assert_eq!(rows[1]["arguments"]["password"], "[redacted]");
    assert_eq!(rows[1]["outcome"], Value::Null);
    assert_eq!(rows[2]["decision"], "escalate");
    assert_eq!(rows[2]["resolution"], "timeout");
    assert_eq!(rows[2]["action_type"], "delete");
    assert!(rows
        .iter()
        .all(|r| r["session_id"] == rows[0]["session_id"]));
}

#[test]
fn policy_sees_the_documented_input() {
    let policy = r#"package behavry.authz
import rego.v1
deny if input.action.name == "echo"
reasons contains sprintf("agent=%s/%s/%s/%s", [input.agent.id, input.agent.name, input.agent.role, input.agent.risk_tier]) if input.action.name == "echo"
reasons contains sprintf("action=%s %s %s", [input.action.type, input.action.tool, input.action.arguments.text]) if input.action.name == "echo"
reasons contains sprintf("resource=%s %s", [input.resource.server, input.resource.path]) if input.action.name == "echo"
reasons contains sprintf("requester=%s %s", [input.requester.id, input.requester.channel]) if input.action.name == "echo"
reasons contains sprintf("session=%d", [count(input.session.id)]) if input.action.name == "echo"
reasons contains sprintf("project=%s", [input.session.project_dir]) if input.action.name == "echo"
"#;
    let home = Home::with_policy("p.rego", policy);
    home.config("[agent]\nrole = \"reviewer\"\nrisk_tier = \"high\"\nid = \"agent-7\"\n[requester]\nid = \"me@example.com\"\n");
    let mut w = home.wrap(
        &["--name", "fs", "--", BIN, "mock-server"],
        &[("CLAUDE_PROJECT_DIR", "/work/project")],
    );
    w.initialize();
    let reply = w.call(1, "echo", json!({"text": "hi", "path": "~/notes/../a.txt"}));
    let home_dir = std::env::var("HOME").unwrap_or_default();
    let want = format!(
        "behavry denied fs/echo: action=unknown fs/echo hi; agent=agent-7/claude-code/reviewer/high; \
         project=/work/project; requester=me@example.com claude-code; resource=fs {home_dir}/a.txt; session=36"
    );
    assert_eq!(text(&reply), want);
}

/// Allows reads, searches and the mock's `retool`; everything else is denied by default.
const READ_AND_SEARCH: &str = r#"package behavry.authz
import future.keywords.if
import future.keywords.in
allow if input.action.type in {"read", "search"}
allow if input.action.name == "retool"
"#;

#[test]
fn annotations_come_from_the_server_whatever_the_client_lists() {
    let home = Home::with_policy("p.rego", READ_AND_SEARCH);
    // Pages of two tools: behavry reads every page of the server's list itself.
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_MOCK_TOOLS_PAGE", "2")],
    );
    w.initialize();
    // The client never lists tools. `peek` says nothing by its name but is read-only by its
    // annotations; `query` reads like a search but the server marks it destructive.
    let peek = w.call(1, "peek", json!({}));
    assert_eq!(text(&peek), "peeked", "{peek}");
    let query = w.call(2, "query", json!({}));
    assert!(
        is_error(&query),
        "a destructive tool is not a search: {query}"
    );
    // The server changes its tools: behavry reads them again.
    w.send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "retool"}}),
    );
    let changed = w.recv();
    assert_eq!(
        changed["method"], "notifications/tools/list_changed",
        "relayed: {changed}"
    );
    assert_eq!(text(&w.recv_id(&json!(3))), "retooled");
    let mut queried = w.call(4, "query", json!({}));
    for id in 5..50 {
        if !is_error(&queried) {
            break;
        }
        // The new list may still be on its way when the call is decided.
        std::thread::sleep(Duration::from_millis(50));
        queried = w.call(id, "query", json!({}));
    }
    assert_eq!(text(&queried), "queried", "{queried}");
    // The client's own listing is answered by the server, exactly once, and behavry's are not
    // relayed at all.
    w.send(json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}));
    let listed = w.recv();
    assert_eq!(listed["id"], "list", "{listed}");
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(2));
    w.send(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}));
    assert_eq!(w.recv()["id"], "p", "nothing else came in between");
    drop(w);
    assert_eq!(home.log(&["--tool", "peek"])[0]["action_type"], "read");
    let queries = home.log(&["--tool", "query"]);
    // Oldest first: denied as a write, then allowed as a search once the server changed it.
    assert_eq!(queries[0]["action_type"], "write", "{queries:#?}");
    let last = queries.last().expect("query rows");
    assert_eq!(last["action_type"], "search", "after retool: {queries:#?}");
    assert!(
        home.mock_received().contains(r#""cursor":"2""#),
        "every page was read"
    );
}

#[test]
fn a_call_before_any_listing_waits_for_the_list() {
    let home = Home::with_policy("p.rego", READ_AND_SEARCH);
    let mut w = home.wrap_mock();
    // No initialize at all (as with protocol versions that probe `server/discover` instead): the
    // first tool call starts the listing and is decided with it.
    let query = w.call(1, "query", json!({}));
    assert!(is_error(&query), "{query}");
    drop(w);
    assert_eq!(home.log(&["--tool", "query"])[0]["action_type"], "write");
}

#[test]
fn other_methods_pass_through_untouched() {
    let home = Home::with_policy("seed.rego", SEED);
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 5, "method": "server/discover", "params": {}}));
    let reply = w.recv_id(&json!(5));
    assert_eq!(
        reply["error"]["code"], -32601,
        "the server answered, not behavry: {reply}"
    );
    w.send(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}));
    assert_eq!(w.recv_id(&json!("p"))["result"], json!({}));
    drop(w);
    assert!(home.mock_received().contains("server/discover"));
    assert!(
        home.log(&[]).is_empty(),
        "non-governed traffic is not a decision"
    );
}

#[test]
fn governed_resources_and_prompts_get_json_rpc_errors() {
    let home = Home::with_policy(
        "p.rego",
        "package behavry.authz\nimport rego.v1\nallow if input.action.type == \"read\"\n",
    );
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///etc/hosts"}}));
    let allowed = w.recv_id(&json!(1));
    assert_eq!(allowed["result"]["contents"][0]["text"], "resource");
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": {"name": "summarise", "arguments": {}}}));
    let denied = w.recv_id(&json!(2));
    assert_eq!(denied["error"]["code"], -32001);
    assert!(denied["error"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("behavry denied mock/summarise"));
    drop(w);
    let rows = home.log(&[]);
    assert_eq!(rows[0]["resource_path"], "/etc/hosts");
    assert_eq!(rows[0]["tool"], "resources/read");
    assert_eq!(rows[1]["method"], "prompts/get");
    assert_eq!(rows[1]["action_type"], "prompt");
}

#[test]
fn bad_client_input_gets_an_error_and_the_connection_keeps_working() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    home.config("[wrap]\nmax_frame_bytes = 4096\n");
    let mut w = home.wrap_mock();
    w.initialize();

    w.send_raw(b"this is not json\n");
    let e = w.recv();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );

    w.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":9}\n");
    let e = w.recv();
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (json!(9), json!(-32600))
    );

    w.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"tools/call\"}\n");
    assert_eq!(w.recv()["error"]["code"], -32600);

    let mut long = b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"".to_vec();
    long.extend(std::iter::repeat_n(b'a', 10_000));
    long.extend_from_slice(b"\"}}}\n");
    w.send_raw(&long);
    let e = w.recv();
    assert_eq!(e["error"]["code"], -32600);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("4096"),
        "{e}"
    );

    // Malformed governed params are denied, never forwarded.
    w.send(json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "echo", "arguments": "x"}}));
    let denied = w.recv_id(&json!(11));
    assert!(text(&denied).contains("malformed request"), "{denied}");

    // CRLF framing is accepted; replies end in a bare LF.
    w.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"crlf\"}}}\r\n");
    let line = w.recv_line();
    assert!(!line.ends_with('\r'), "{line:?}");
    assert_eq!(text(&serde_json::from_str(&line).expect("json")), "crlf");
    drop(w);
    assert!(
        !home.mock_received().contains("aaaa"),
        "the overlong line never reached the server"
    );
}

#[test]
fn non_json_server_output_is_dropped_and_reported() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_MOCK_NOISE", "1")],
    );
    let init = w.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "behavry-mock");
    assert_eq!(text(&w.call(1, "echo", json!({"text": "x"}))), "x");
    let (code, stderr) = w.finish();
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("not JSON") && stderr.contains("mock server starting"),
        "{stderr}"
    );
    assert!(
        stderr.contains("JSON that is not JSON-RPC") && stderr.contains("structured log line"),
        "{stderr}"
    );
}

#[test]
fn a_slow_call_does_not_hold_up_other_traffic() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 2000}}}));
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    w.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "fast"}}}));
    let order: Vec<Value> = (0..3).map(|_| w.recv()["id"].clone()).collect();
    assert_eq!(
        order.last(),
        Some(&json!(1)),
        "the slow call answers last: {order:?}"
    );
}

#[test]
fn batches_with_governed_calls_are_decided_element_by_element() {
    let home = Home::with_policy("seed.rego", SEED);
    let mut w = home.wrap_mock();
    // Only protocol 2025-03-26 has batches.
    w.initialize_with("2025-03-26");
    w.send(json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/a"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "write_file", "arguments": {"path": "/prod/a"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    ]));
    let mut replies: Vec<Value> = (0..3).map(|_| w.recv()).collect();
    replies.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(text(&replies[0]), "contents of /a");
    assert!(is_error(&replies[1]));
    assert_eq!(replies[2]["result"], json!({}));
    drop(w);
    assert!(!home.mock_received().contains("/prod/a"));
}

#[test]
fn broken_policies_deny_governed_calls_but_relay_the_rest() {
    let home = Home::with_policy("broken.rego", "package behavry.authz\nallow if {\n");
    let mut w = home.wrap_mock();
    w.initialize();
    // The client hears it too, right after its session is up (not only on stderr).
    let warning = w.recv();
    assert_eq!(warning["method"], "notifications/message", "{warning}");
    assert_eq!(warning["params"]["level"], "warning");
    let data = warning["params"]["data"].as_str().unwrap_or("");
    assert!(
        data.contains("every tool call will be denied") && data.contains("broken.rego"),
        "{data}"
    );
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(w.recv_id(&json!(1))["result"], json!({}));
    let reply = w.call(2, "read_file", json!({"path": "/a"}));
    assert!(is_error(&reply));
    assert!(
        text(&reply).contains("policies failed to compile") && text(&reply).contains("broken.rego"),
        "{reply}"
    );
    let (_, stderr) = w.finish();
    assert!(stderr.contains("policies failed to compile"), "{stderr}");
    assert_eq!(home.log(&[])[0]["decision"], "deny");
}

#[test]
fn an_unwritable_audit_store_denies_governed_calls() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    // A directory where the database file should be: SQLite cannot open it.
    std::fs::create_dir_all(home.path().join("behavry.db")).expect("mkdir");
    let mut w = home.wrap_mock();
    w.initialize();
    let reply = w.call(1, "echo", json!({"text": "x"}));
    assert!(is_error(&reply));
    assert!(text(&reply).contains("audit store"), "{reply}");
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(w.recv_id(&json!(2))["result"], json!({}));
    let (_, stderr) = w.finish();
    assert!(stderr.contains("audit store unavailable"), "{stderr}");
    assert!(!home.mock_received().contains("tools/call"));
}

#[test]
fn no_policies_means_default_deny() {
    let home = Home::new();
    let mut w = home.wrap_mock();
    w.initialize();
    let reply = w.call(1, "read_file", json!({"path": "/a"}));
    assert!(text(&reply).contains("default deny"), "{reply}");
    let (_, stderr) = w.finish();
    assert!(stderr.contains("no .rego files"), "{stderr}");
}

#[test]
fn extra_policy_dirs_are_loaded() {
    let home = Home::new();
    let extra = tempfile::tempdir().expect("tempdir");
    std::fs::write(extra.path().join("team.rego"), ALLOW_ECHO).expect("write");
    let dir = extra.path().to_str().expect("utf-8 path");
    let mut w = home.wrap(
        &[
            "--name",
            "mock",
            "--policies",
            dir,
            "--",
            BIN,
            "mock-server",
        ],
        &[],
    );
    w.initialize();
    assert_eq!(text(&w.call(1, "echo", json!({"text": "ok"}))), "ok");
}

#[test]
fn outcomes_record_errors_and_is_error_results() {
    let home = Home::with_policy("p.rego", "package behavry.authz\nallow := true\n");
    let mut w = home.wrap_mock();
    w.initialize();
    assert!(is_error(&w.call(1, "fail", json!({}))));
    assert_eq!(w.call(2, "nope", json!({}))["error"]["code"], -32602);
    w.finish();
    let outcomes: Vec<Value> = home.log(&[]).iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("is_error"), json!("error")]);
}

#[test]
fn exits_with_the_servers_status() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap(&["--", "sh", "-c", "read line; exit 7"], &[]);
    w.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    let status = wait_timeout(&mut w.child, WAIT).expect("behavry exits when its server does");
    assert_eq!(status.code(), Some(7));
}

/// behavry turns error backtraces off for itself only: the server sees the user's setting.
#[test]
fn the_server_inherits_the_backtrace_setting_unchanged() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let seen = home.path().join("seen");
    let script = format!(
        "printf %s \"${{RUST_LIB_BACKTRACE-unset}}\" > '{}'; read line; exit 0",
        seen.display()
    );
    for (setting, want) in [(Some("full"), "full"), (None, "unset")] {
        let mut cmd = home.command(&["wrap", "--", "sh", "-c", &script]);
        match setting {
            Some(value) => cmd.env("RUST_LIB_BACKTRACE", value),
            None => cmd.env_remove("RUST_LIB_BACKTRACE"),
        };
        let mut w = Wrapper::spawn(cmd);
        w.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        wait_timeout(&mut w.child, WAIT).expect("behavry exits when its server does");
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), want);
    }
}

#[test]
fn a_missing_server_command_is_a_clear_error() {
    let home = Home::new();
    let out = run(home
        .command(&["wrap", "--", "/definitely/not/here"])
        .stdin(std::process::Stdio::null()));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing but frames on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot start `/definitely/not/here`"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let home = Home::new();
    home.config("[agent]\nrolee = 1\n");
    let out = run(home
        .command(&["wrap", "--", BIN, "mock-server"])
        .stdin(std::process::Stdio::null()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml"));
}

/// Starts a wrapped `sh` that records its pid and then becomes the mock server.
fn wrap_with_pid(home: &Home) -> (Wrapper, i32) {
    let pidfile = home.path().join("server.pid");
    let script = format!(
        "echo $$ > '{}'; exec '{BIN}' mock-server",
        pidfile.display()
    );
    let mut w = home.wrap(&["--name", "mock", "--", "sh", "-c", &script], &[]);
    w.initialize();
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    (w, pid)
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only count processes that are not zombies.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn wait_dead(pid: i32) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn stdin_eof_stops_the_server() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let (w, pid) = wrap_with_pid(&home);
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));
    assert!(wait_dead(pid));
}

#[test]
fn sigterm_stops_the_server_and_behavry() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let (mut w, pid) = wrap_with_pid(&home);
    signal(w.child.id(), "-TERM");
    let status = wait_timeout(&mut w.child, WAIT).expect("behavry exits on SIGTERM");
    // The mock exits cleanly when its stdin closes, before any signal is needed.
    assert_eq!(status.code(), Some(0));
    assert!(wait_dead(pid));
}

/// Starts a wrapped server that ignores its stdin and SIGINT/SIGHUP; returns its pid.
fn wrap_stubborn(home: &Home) -> (Wrapper, i32) {
    let pidfile = home.path().join("stubborn.pid");
    let script = format!(
        "echo $$ > '{}'; trap '' INT HUP; while :; do sleep 0.05; done",
        pidfile.display()
    );
    let w = home.wrap(&["--name", "stubborn", "--", "sh", "-c", &script], &[]);
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&pidfile).map_or(true, |s| !s.ends_with('\n')) {
        assert!(start.elapsed() < WAIT, "the server never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    (w, pid)
}

#[test]
fn a_server_that_ignores_its_stdin_is_terminated() {
    let home = Home::new();
    let (mut w, pid) = wrap_stubborn(&home);
    signal(w.child.id(), "-INT");
    let status = wait_timeout(&mut w.child, WAIT).expect("behavry exits");
    assert_eq!(status.code(), Some(128 + 15), "the server died of SIGTERM");
    assert!(wait_dead(pid));
}

#[test]
fn the_server_dies_with_a_killed_behavry() {
    let home = Home::new();
    // A server that would survive its stdin closing: only PR_SET_PDEATHSIG can end it.
    let (mut w, pid) = wrap_stubborn(&home);
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(pid));
    signal(w.child.id(), "-KILL");
    let _ = w.child.wait();
    assert!(wait_dead(pid), "server {pid} outlived a SIGKILLed behavry");
}

#[test]
fn two_wrappers_share_one_store() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let run = |name: &'static str| {
        let mut w = home.wrap(&["--name", name, "--", BIN, "mock-server"], &[]);
        w.initialize();
        for i in 0..40 {
            w.send(json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "t"}}}));
        }
        w
    };
    let mut a = run("a");
    let mut b = run("b");
    for w in [&mut a, &mut b] {
        for _ in 0..40 {
            assert_eq!(text(&w.recv()), "t");
        }
    }
    drop((a, b));
    assert_eq!(home.log(&["--server", "a"]).len(), 40);
    assert_eq!(home.log(&["--server", "b"]).len(), 40);
    assert_eq!(home.log(&[]).len(), 80);
}

#[test]
fn a_governed_method_without_an_id_is_never_forwarded() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    let mut w = home.wrap_mock();
    // The one version with batches, so the batch is looked at rather than refused whole.
    w.initialize_with("2025-03-26");
    w.send(json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "sneaky"}}}));
    w.send(json!([{"jsonrpc": "2.0", "method": "resources/read", "params": {"uri": "file:///etc/shadow"}}]));
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(w.recv()["id"], 1);
    let (_, stderr) = w.finish();
    assert!(
        stderr.contains("dropped a tools/call without an id"),
        "{stderr}"
    );
    let received = home.mock_received();
    assert!(
        !received.contains("sneaky") && !received.contains("shadow"),
        "{received}"
    );
}

#[test]
fn an_answer_over_the_size_limit_still_answers_its_request() {
    let home = Home::with_policy("p.rego", "package behavry.authz\nallow := true\n");
    home.config("[wrap]\nmax_frame_bytes = 4096\n");
    let mut w = home.wrap_mock();
    w.initialize();
    let reply = w.call(1, "big", json!({"bytes": 100_000}));
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("max_frame_bytes"),
        "{reply}"
    );
    // The id is free again, and the connection works.
    assert_eq!(text(&w.call(1, "big", json!({"bytes": 10}))), "xxxxxxxxxx");
    drop(w);
    assert_eq!(home.log(&[])[0]["outcome"], "error");
}

#[test]
fn the_servers_input_schema_says_which_arguments_are_paths() {
    let home = Home::with_policy(
        "p.rego",
        r#"package behavry.authz
import rego.v1
allow if input.action.name != "nothing"
deny if {
	some p in input.resource.paths
	contains(p, "prod")
}
"#,
    );
    let mut w = home.wrap_mock();
    w.initialize();
    // `where` is no path word and `prod/app` no path shape: only the schema's description ("The
    // directory to change to") makes it a path, relative to the server's directory.
    let reply = w.call(1, "goto", json!({"where": "prod/app"}));
    assert!(is_error(&reply), "{reply}");
    // The same argument on a tool whose schema says nothing is not read as a path.
    assert_eq!(
        text(&w.call(2, "echo", json!({"where": "prod/app", "text": "x"}))),
        "x"
    );
    drop(w);
    let rows = home.log(&["--tool", "goto"]);
    let path = rows[0]["resource_path"].as_str().unwrap_or("");
    assert!(path.ends_with("/prod/app"), "{rows:#?}");
}
