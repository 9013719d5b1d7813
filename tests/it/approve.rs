//! Escalated calls are held until someone resolves them in the shared store (as `behavry approve`
//! does), time out, or are cancelled; other traffic keeps flowing meanwhile.

use std::time::Duration;

use crate::common::*;
use behavry::audit::store::Resolution;
use serde_json::{json, Value};

/// Escalates deletes; allows the rest.
const ESCALATE_DELETES: &str = r#"package behavry.authz
import rego.v1
allow if input.action.type != "delete"
escalate if input.action.type == "delete"
reasons contains "deletes need a person" if input.action.type == "delete"
"#;

fn delete(w: &mut Wrapper, id: i64, path: &str) {
    w.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "delete_file", "arguments": {"path": path}}}));
}

fn resolve(home: &Home, id: i64, hash: &str, resolution: Resolution, reason: Option<&str>) -> bool {
    store(home)
        .resolve(id, Some(hash), resolution, reason, "tester via test")
        .expect("resolve")
}

#[test]
fn held_call_is_forwarded_after_approval_while_other_traffic_flows() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    let pending = wait_pending(&home, 1);
    let call = &pending[0];
    assert_eq!(
        (
            call.server.as_str(),
            call.tool.as_str(),
            call.action_type.as_str()
        ),
        ("mock", "delete_file", "delete")
    );
    assert_eq!(call.reasons, ["deletes need a person"]);
    assert_eq!(call.arguments, json!({"path": "/tmp/a"}));
    assert!(
        !home.mock_received().contains("delete_file"),
        "held, not forwarded"
    );

    // Held calls block nothing else.
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(w.recv(), json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    assert_eq!(
        text(&w.call(3, "echo", json!({"text": "meanwhile"}))),
        "meanwhile"
    );

    // An approval naming another request changes nothing.
    assert!(!resolve(
        &home,
        call.id,
        "not-the-hash",
        Resolution::Approved,
        None
    ));
    assert!(resolve(
        &home,
        call.id,
        &call.request_hash,
        Resolution::Approved,
        None
    ));
    let reply = w.recv_id(&json!(1));
    assert_eq!(text(&reply), "deleted /tmp/a");
    assert!(home.mock_received().contains("delete_file"));
    let (_, stderr) = w.finish();
    assert!(
        stderr.contains("mock/delete_file is waiting for approval: run `behavry approve`"),
        "{stderr}"
    );

    let row = &home.log(&["--tool", "delete_file"])[0];
    assert_eq!(row["decision"], "escalate");
    assert_eq!(row["resolution"], "approved");
    assert_eq!(row["resolved_by"], "tester via test");
    assert_eq!(row["outcome"], "ok");
}

#[test]
fn denial_carries_the_approvers_reason_to_the_agent() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    let call = wait_pending(&home, 1).remove(0);
    assert!(resolve(
        &home,
        call.id,
        &call.request_hash,
        Resolution::Denied,
        Some("not before the release")
    ));
    let reply = w.recv_id(&json!(1));
    assert!(is_error(&reply));
    assert_eq!(
        text(&reply),
        "behavry denied mock/delete_file: a person denied this call (tester via test): not before the release"
    );
    drop(w);
    assert!(!home.mock_received().contains("delete_file"));
    assert_eq!(home.log(&[])[0]["resolution"], "denied");
}

#[test]
fn unapproved_calls_time_out_with_advice_and_keepalives() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    home.config("[wrap]\napproval_keepalive_secs = 1\n");
    let mut w = home.wrap(
        &[
            "--name",
            "mock",
            "--approval-timeout",
            "3",
            "--",
            BIN,
            "mock-server",
        ],
        &[],
    );
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "delete_file", "arguments": {"path": "/tmp/a"}, "_meta": {"progressToken": "tok"}}}));
    let mut progress = Vec::new();
    let reply = loop {
        let frame = w.recv();
        if frame["method"] == "notifications/progress" {
            progress.push(frame);
        } else {
            break frame;
        }
    };
    assert_eq!(reply["id"], 1);
    assert!(
        text(&reply).contains("was not approved within 3s"),
        "{reply}"
    );
    assert!(text(&reply).contains("behavry approve"), "{reply}");
    assert!(progress.len() >= 2, "{progress:?}");
    assert_eq!(progress[0]["params"]["progressToken"], "tok");
    assert_eq!(progress[0]["params"]["progress"], 1);
    assert_eq!(progress[1]["params"]["progress"], 2);
    let message = progress[0]["params"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("awaiting approval: run `behavry approve` in another terminal (")
            && message.ends_with(" left)"),
        "{message}"
    );
    drop(w);
    assert_eq!(home.log(&[])[0]["resolution"], "timeout");
}

#[test]
fn cancelled_before_approval_is_never_forwarded_or_answered() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    let call = wait_pending(&home, 1).remove(0);
    w.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "user pressed esc"}}));
    let start = std::time::Instant::now();
    while store(&home)
        .resolution(call.id)
        .expect("resolution")
        .is_none()
    {
        assert!(start.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !resolve(
            &home,
            call.id,
            &call.request_hash,
            Resolution::Approved,
            None
        ),
        "too late to approve"
    );
    // The next frame is the ping's answer: nothing was sent for the cancelled call.
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(w.recv()["id"], 2);
    drop(w);
    let received = home.mock_received();
    assert!(
        !received.contains("delete_file") && !received.contains("notifications/cancelled"),
        "{received}"
    );
    assert_eq!(home.log(&[])[0]["resolution"], "cancelled");
}

#[test]
fn cancelled_after_approval_reaches_the_server() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"ms": 1500}}}));
    // `slow` is allowed; a cancellation for a forwarded call is the server's business.
    std::thread::sleep(Duration::from_millis(200));
    w.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    );
    delete(&mut w, 2, "/tmp/b");
    let call = wait_pending(&home, 1).remove(0);
    assert!(resolve(
        &home,
        call.id,
        &call.request_hash,
        Resolution::Approved,
        None
    ));
    assert_eq!(text(&w.recv_id(&json!(2))), "deleted /tmp/b");
    w.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}),
    );
    w.send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    w.recv_id(&json!(3));
    drop(w);
    let received = home.mock_received();
    assert!(
        received.contains("\"requestId\":1") && received.contains("\"requestId\":2"),
        "{received}"
    );
}

#[test]
fn approving_for_the_session_allows_later_identical_calls() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    let call = wait_pending(&home, 1).remove(0);
    assert!(resolve(
        &home,
        call.id,
        &call.request_hash,
        Resolution::ApprovedSession,
        None
    ));
    assert_eq!(text(&w.recv_id(&json!(1))), "deleted /tmp/a");
    // Same server and tool: allowed without a prompt.
    delete(&mut w, 2, "/tmp/b");
    assert_eq!(text(&w.recv_id(&json!(2))), "deleted /tmp/b");
    drop(w);
    let rows = home.log(&[]);
    assert_eq!(rows[0]["resolution"], "approved_session");
    assert_eq!(rows[1]["decision"], "escalate");
    assert_eq!(rows[1]["resolution"], "approved_session");
    assert_eq!(
        rows[1]["resolved_by"], "behavry (approved for this session earlier)",
        "nobody was asked"
    );

    // Another session (a new wrapper) asks again.
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/c");
    wait_pending(&home, 1);
}

#[test]
fn one_approver_serves_two_wrappers() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut a = home.wrap(&["--name", "a", "--", BIN, "mock-server"], &[]);
    let mut b = home.wrap(&["--name", "b", "--", BIN, "mock-server"], &[]);
    a.initialize();
    b.initialize();
    delete(&mut a, 1, "/tmp/a");
    delete(&mut b, 1, "/tmp/b");
    let pending = wait_pending(&home, 2);
    let servers: Vec<&str> = pending.iter().map(|c| c.server.as_str()).collect();
    assert!(servers.contains(&"a") && servers.contains(&"b"));
    for call in &pending {
        let resolution = if call.server == "a" {
            Resolution::Approved
        } else {
            Resolution::Denied
        };
        assert!(resolve(
            &home,
            call.id,
            &call.request_hash,
            resolution,
            None
        ));
    }
    assert_eq!(text(&a.recv_id(&json!(1))), "deleted /tmp/a");
    assert!(is_error(&b.recv_id(&json!(1))));
}

#[test]
fn a_wrapper_that_exits_abandons_its_held_calls() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    wait_pending(&home, 1);
    let (code, stderr) = w.finish();
    assert_eq!(code, Some(0));
    assert!(stderr.contains("abandoned"), "{stderr}");
    assert_eq!(home.log(&[])[0]["resolution"], "abandoned");
}

#[test]
fn a_killed_wrappers_calls_are_abandoned_by_the_next_reader() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    wait_pending(&home, 1);
    w.child.kill().expect("kill");
    w.child.wait().expect("reap");
    // `behavry approve --list` (like the approver) only shows live calls.
    let out = run(&mut home.command(&["approve", "--list"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing is waiting"),
        "{out:?}"
    );
    let row = &home.log(&[])[0];
    assert_eq!(row["resolution"], "abandoned");
}

#[test]
fn approve_list_prints_pending_calls_and_the_app_needs_a_terminal() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/listed");
    wait_pending(&home, 1);
    let out = run(&mut home.command(&["approve", "--list"]));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("mock/delete_file") && listing.contains("/tmp/listed"),
        "{listing}"
    );
    assert!(listing.contains("deletes need a person"), "{listing}");
    let out = run(&mut home.command(&["approve", "--list", "--json"]));
    let row: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(row["tool"], "delete_file");

    let out = run(home
        .command(&["approve"])
        .stdin(std::process::Stdio::null()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an interactive terminal"));
}

#[test]
fn a_cancellation_that_arrives_while_the_call_is_being_decided_wins() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    // Another process holds the database's write lock, so the decisions cannot be recorded yet.
    let mut blocker = rusqlite::Connection::open(home.path().join("behavry.db")).expect("db");
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("write lock");
    delete(&mut w, 1, "/tmp/escalated");
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "allowed"}}}));
    std::thread::sleep(Duration::from_millis(300));
    for id in [1, 2] {
        w.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}));
    }
    std::thread::sleep(Duration::from_millis(300));
    tx.commit().expect("release the lock");
    // The escalation was resolved `cancelled` as soon as it was recorded; approving is too late.
    let start = std::time::Instant::now();
    let row = loop {
        let rows = home.log(&["--tool", "delete_file"]);
        if rows.first().is_some_and(|r| r["resolution"] != Value::Null) {
            break rows[0].clone();
        }
        assert!(start.elapsed() < WAIT, "the escalation was never resolved");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(row["resolution"], "cancelled");
    // Neither call was answered or forwarded: the next frame is the ping's.
    w.send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    assert_eq!(w.recv()["id"], 3);
    drop(w);
    let received = home.mock_received();
    assert!(
        !received.contains("tools/call") && !received.contains("notifications/cancelled"),
        "{received}"
    );
}

#[test]
fn progress_only_increases_across_an_approval() {
    let home = Home::with_policy(
        "p.rego",
        r#"package behavry.authz
import rego.v1
allow if input.action.name != "progress"
escalate if input.action.name == "progress"
"#,
    );
    home.config("[wrap]\napproval_keepalive_secs = 1\n");
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "progress", "arguments": {}, "_meta": {"progressToken": 9}}}));
    let call = wait_pending(&home, 1).remove(0);
    // At least one keepalive on the client's token before the person approves.
    let first = w.recv();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert!(resolve(
        &home,
        call.id,
        &call.request_hash,
        Resolution::Approved,
        None
    ));
    let mut seen = vec![first["params"]["progress"].as_f64().unwrap_or(f64::NAN)];
    let reply = loop {
        let frame = w.recv();
        if frame["id"] == 1 {
            break frame;
        }
        assert_eq!(frame["method"], "notifications/progress", "{frame}");
        assert_eq!(frame["params"]["progressToken"], 9);
        seen.push(frame["params"]["progress"].as_f64().unwrap_or(f64::NAN));
    };
    assert_eq!(text(&reply), "progressed");
    // The mock counts its own progress 1, 2 (of 2): both arrive, after the keepalives.
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went backwards: {seen:?}"
    );
}

#[test]
fn beyond_the_cap_an_escalation_is_denied_at_once() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    home.config("[wrap]\nmax_held = 2\n");
    let mut w = home.wrap_mock();
    w.initialize();
    delete(&mut w, 1, "/tmp/a");
    delete(&mut w, 2, "/tmp/b");
    wait_pending(&home, 2);
    delete(&mut w, 3, "/prod/db");
    let reply = w.recv_id(&json!(3));
    assert!(is_error(&reply), "{reply}");
    assert!(
        text(&reply).contains("2 calls from this server are already waiting for approval"),
        "{reply}"
    );
    assert_eq!(wait_pending(&home, 2).len(), 2, "the third was never held");
    drop(w);
    let rows = home.log(&["--decision", "deny"]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let reasons = rows[0]["reasons"].to_string();
    assert!(
        reasons.contains("deletes need a person") && reasons.contains("already waiting"),
        "the log keeps the policy's reason and the cap's: {reasons}"
    );
}

#[test]
fn a_forwarded_call_the_client_cancels_is_recorded_cancelled() {
    let home = Home::with_policy("p.rego", ESCALATE_DELETES);
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 300}}}));
    assert!(eventually(|| home.mock_received().contains("\"slow\"")));
    w.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "reason": "user pressed Esc"}}),
    );
    // The server is told, and its late answer is still relayed.
    assert!(eventually(|| home
        .mock_received()
        .contains("notifications/cancelled")));
    assert_eq!(text(&w.recv_id(&json!(1))), "slept 300 ms");
    drop(w);
    let row = &home.log(&["--tool", "slow"])[0];
    assert_eq!(row["outcome"], "cancelled", "{row}");
}
