//! behavry's stderr is for people, and the client may never read it: notes must never stall the
//! proxy, and what was dropped is reported once someone reads again.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::mpsc;

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ECHO: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n";

#[test]
fn a_client_that_never_reads_stderr_does_not_stall_the_proxy() {
    let home = Home::with_policy("p.rego", ALLOW_ECHO);
    // A server that logs to stdout: every line becomes a note, far more than a pipe holds.
    let script = format!(
        "i=0; while [ $i -lt 4000 ]; do echo \"starting up, step $i of many, nothing to see here\"; \
         i=$((i+1)); done; exec '{BIN}' mock-server"
    );
    let mut child = home
        .command(&["wrap", "--name", "chatty", "--", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn behavry");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).expect("stdout carries JSON only"));
        }
    });
    let mut send = move |v: Value| {
        stdin.write_all(format!("{v}\n").as_bytes()).expect("write");
        stdin.flush().expect("flush");
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "claude-code", "version": "2.0.0"}}}),
    );
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "still here"}}}));
    let mut reply = Value::Null;
    while reply.get("id") != Some(&json!(1)) {
        reply = lines
            .recv_timeout(WAIT)
            .expect("an answer while nobody reads stderr");
    }
    assert_eq!(text(&reply), "still here");
    drop(send);

    // Now read: what was queued arrives, and so does the count of what was not.
    let mut seen = String::new();
    stderr.read_to_string(&mut seen).expect("read stderr");
    let status = wait_timeout(&mut child, WAIT).expect("behavry exits");
    assert!(status.success(), "{seen}");
    assert!(
        seen.contains("notes dropped: stderr was not being read"),
        "{}",
        &seen[seen.len().saturating_sub(2000)..]
    );
    assert!(seen.contains("step 0 of many"), "the first notes are kept");
}
