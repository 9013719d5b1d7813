//! The audit trail as users see it: `behavry log` formats, `--verify` catching tampering,
//! `--head`, `--prune`, `--stats`, and governed calls denied (never forwarded unrecorded) when
//! the database cannot be written.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::*;
use serde_json::{json, Value};

const POLICY: &str = r#"package behavry.authz
import rego.v1
allow if input.action.name in {"echo", "read_file"}
deny if input.action.name == "write_file"
escalate if input.action.name == "delete_file"
"#;

/// A home with one session's worth of decisions: allow, allow, deny, escalate (timed out).
fn session() -> Home {
    let home = Home::with_policy("p.rego", POLICY);
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
        &[],
    );
    w.initialize();
    w.call(1, "echo", json!({"text": "a,b \"c\""}));
    w.call(2, "read_file", json!({"path": "/etc/hosts"}));
    w.call(3, "write_file", json!({"path": "/x"}));
    w.call(4, "delete_file", json!({"path": "/y"}));
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));
    home
}

fn stdout(home: &Home, args: &[&str]) -> (i32, String) {
    let out = run(&mut home.command(args));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_head_stats_and_csv() {
    let home = session();
    // 1 genesis + 1 session + 4 decisions + 2 outcomes + 1 resolution.
    assert_eq!(
        stdout(&home, &["log", "--verify"]),
        (0, "ok: 4 decisions, 9 records\n".into())
    );

    let (code, head) = stdout(&home, &["log", "--head"]);
    assert_eq!(code, 0);
    let (seq, hash) = head.trim().split_once(' ').expect("seq and hash");
    assert_eq!(seq, "9");
    assert_eq!(hash.len(), 64);

    let (_, csv) = stdout(&home, &["log", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("ts,session_id,server,tool,method,action_type,resource_path,decision,resolution,reasons,outcome"));
    assert!(
        lines[1].ends_with(r#","{""text"":""a,b \""c\""""}""#),
        "{}",
        lines[1]
    );
    assert!(
        lines[4].contains(",delete_file,") && lines[4].contains(",escalate,timeout,"),
        "{}",
        lines[4]
    );

    let (_, stats) = stdout(&home, &["log", "--stats"]);
    assert!(stats.starts_with("4 decisions"), "{stats}");
    assert!(
        stats.contains("2  allow") && stats.contains("1  timeout") && stats.contains("1  fs/echo"),
        "{stats}"
    );
    // The timed-out escalation's reasons say so, as the agent was told.
    let reasons = home.log(&["--tool", "delete_file"])[0]["reasons"].clone();
    let last = reasons.as_array().and_then(|r| r.last()).cloned();
    assert!(
        last.as_ref()
            .and_then(Value::as_str)
            .is_some_and(|r| r.contains("was not approved within")),
        "{reasons}"
    );
    let (_, stats) = stdout(&home, &["log", "--stats", "--json", "--since", "1h"]);
    let stats: Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(stats["total"], 4);
    assert_eq!(stats["decision"][0], json!(["allow", 2]));
}

#[test]
fn verify_catches_tampering_and_exits_non_zero() {
    let home = session();
    let db = rusqlite::Connection::open(home.path().join("behavry.db")).expect("db");
    db.execute(
        "UPDATE decisions SET decision = 'allow' WHERE tool = 'write_file'",
        [],
    )
    .expect("tamper");
    let (code, out) = stdout(&home, &["log", "--verify"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("verification failed at seq "), "{out}");
    assert!(out.contains(": the decision row was altered"), "{out}");
}

#[test]
fn prune_keeps_the_chain_verifiable() {
    let home = session();
    let (code, out) = stdout(&home, &["log", "--prune", "--before", "0s"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "pruned 9 records older than {}\n",
            out.trim().rsplit(' ').next().unwrap_or("")
        )
    );
    assert_eq!(
        stdout(&home, &["log", "--verify"]),
        (0, "ok: 0 decisions, 1 record\n".into())
    );
    assert!(home.log(&[]).is_empty());
    let (code, _) = stdout(&home, &["log", "--prune"]);
    assert_eq!(code, 2, "--prune needs --before");
}

#[test]
fn follow_streams_new_rows() {
    let home = session();
    let mut follow = home
        .command(&["log", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("log --follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    for _ in 0..4 {
        lines.next().expect("existing row").expect("line");
    }
    let mut w = home.wrap(&["--name", "later", "--", BIN, "mock-server"], &[]);
    w.initialize();
    w.call(1, "echo", json!({"text": "new"}));
    let line = lines.next().expect("a new row").expect("line");
    let row: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(row["server"], "later");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn a_full_disk_denies_calls_and_forwards_nothing_unrecorded() {
    let home = Home::with_policy("p.rego", POLICY);
    // Create the database first, so the limit below bites on the first commits, not on setup.
    drop(store(&home));
    // RLIMIT_FSIZE makes writes past ~256 KiB fail as on a full disk.
    let script = format!("ulimit -f 512; exec '{BIN}' wrap --name fs -- '{BIN}' mock-server");
    let mut w = Wrapper::spawn(home.program("sh", &["-c", &script]));
    w.initialize();
    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..400 {
        let reply = w.call(i, "echo", json!({"text": "x".repeat(2000)}));
        if is_error(&reply) {
            assert!(
                text(&reply).contains("the audit store could not record this call"),
                "{reply}"
            );
            refused += 1;
        } else {
            allowed += 1;
        }
    }
    assert!(
        allowed > 0 && refused > 0,
        "allowed {allowed}, refused {refused}"
    );
    // The wrapper keeps running.
    w.send(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}));
    assert_eq!(w.recv_id(&json!("p"))["result"], json!({}));
    drop(w);
    let forwarded = home.mock_received().matches("\"tools/call\"").count();
    assert_eq!(
        forwarded, allowed,
        "every call that reached the server was allowed"
    );
    let rows = home.log(&[]);
    assert!(
        rows.len() >= allowed,
        "every forwarded call has its committed row ({} rows)",
        rows.len()
    );
}

#[test]
fn a_read_only_database_denies_calls() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::with_policy("p.rego", POLICY);
    drop(store(&home));
    let chmod = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    // SAFETY: geteuid has no preconditions.
    let cmd = if unsafe { libc::geteuid() } == 0 {
        // Root may write anything, so run the wrapper as another user, to whom the database
        // (owned by root, mode 0644) is read-only.
        let probe = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
            .status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "as root, this test needs setpriv (util-linux)"
        );
        chmod(home.path(), 0o755);
        for entry in std::fs::read_dir(home.path()).expect("ls") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                chmod(&path, 0o644);
            }
        }
        let mut cmd = home.program(
            "setpriv",
            &["--reuid=65534", "--regid=65534", "--clear-groups"],
        );
        // The other user cannot write the mock server's log either.
        cmd.args([BIN, "wrap", "--name", "fs", "--", BIN, "mock-server"])
            .env("HOME", home.path())
            .env_remove("BEHAVRY_MOCK_LOG");
        cmd
    } else {
        // Anyone else is refused by the file mode itself.
        for entry in std::fs::read_dir(home.path()).expect("ls") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                chmod(&path, 0o444);
            }
        }
        chmod(home.path(), 0o555);
        let mut cmd = home.command(&["wrap", "--name", "fs", "--", BIN, "mock-server"]);
        cmd.env_remove("BEHAVRY_MOCK_LOG");
        cmd
    };
    let mut w = Wrapper::spawn(cmd);
    w.initialize();
    let reply = w.call(1, "echo", json!({"text": "x"}));
    assert!(is_error(&reply), "{reply}");
    assert!(text(&reply).contains("audit"), "{reply}");
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(w.recv_id(&json!(2))["result"], json!({}));
    drop(w);
    // Let the temporary directory be removed.
    chmod(home.path(), 0o755);
}

#[test]
fn empty_results_and_stats_say_so() {
    let home = session();
    let (code, out) = stdout(&home, &["log", "--server", "nope"]);
    assert_eq!((code, out.as_str()), (0, "no decisions match\n"));
    let (_, stats) = stdout(&home, &["log", "--stats", "--since", "0s"]);
    assert!(!stats.contains("by resolution:"), "{stats}");
    assert!(stats.starts_with("0 decisions"), "{stats}");
}

#[test]
fn a_sessions_client_and_refused_frames_are_in_the_journal() {
    let home = session();
    let session_id = home.log(&[])[0]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    // The wrapper recorded its session's client when `initialize` was answered.
    let mut store = store(&home);
    store
        .record_refused_frame(&behavry::audit::RefusedFrame {
            session_id: &session_id,
            server: "mock",
            what: "duplicate_key",
            reason: "the key \"params\" appears twice",
            id: Some(&json!(7)),
            line: br#"{"id":7,"params":{},"params":{}}"#,
        })
        .expect("refused frame");
    drop(store);

    let (_, table) = stdout(&home, &["log", "--session", &session_id]);
    assert!(
        table.starts_with(&format!(
            "session {session_id}: client claude-code 2.0.0, protocol 2025-06-18"
        )),
        "{table}"
    );
    let events = home.events();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["session", "refused_frame"]);
    assert_eq!(events[1]["detail"]["request_id"], "7");
    let (_, table) = stdout(&home, &["log", "--events"]);
    assert!(
        table.contains("duplicate_key: the key \"params\" appears twice (id 7"),
        "{table}"
    );
    assert_eq!(stdout(&home, &["log", "--verify"]).0, 0);
}
