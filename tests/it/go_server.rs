//! Key twins against a real Go reader: a stdio MCP server built with Go's `encoding/json`
//! (`tests/go/echoserver`, what mcp-go decodes with), wrapped by the real `behavry wrap`. Go
//! matches struct fields case-insensitively under Unicode simple folding and keeps the last key,
//! so every spelling behavry's strict parse refuses is one Go would have merged, and the ones it
//! lets through Go reads as behavry does. Skipped, with the reason printed, when `go` is missing
//! (`.ci/run` installs it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use behavry::proxy::strict;
use serde_json::{json, Value};

/// Builds `tests/go/<package>` into `dir`, offline; `None` (with a printed reason) without Go.
fn go_build(package: &str, dir: &Path) -> Option<PathBuf> {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("skipped: `go` is not installed (apt-get install golang-go; .ci/run does)");
        return None;
    }
    let out = dir.join(package);
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(format!("./{package}"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", dir.join("gocache"))
        .status()
        .expect("run go build");
    assert!(status.success(), "go build ./{package} failed");
    Some(out)
}

#[test]
fn fold_table_matches_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(program) = go_build("foldtable", dir.path()) else {
        return;
    };
    let out = Command::new(program).output().expect("run foldtable");
    let go: BTreeSet<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((
                u32::from_str_radix(a, 16).ok()?,
                u32::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    let ours: BTreeSet<(u32, u32)> = strict::fold_table()
        .map(|(a, b)| (a as u32, b as u32))
        .collect();
    assert!(go.len() > 1000, "foldtable printed {} pairs", go.len());
    assert_eq!(
        go.difference(&ours).collect::<Vec<_>>(),
        Vec::<&(u32, u32)>::new(),
        "Go folds these chars and behavry does not: regenerate src/proxy/strict/fold.rs"
    );
    assert_eq!(
        ours.difference(&go).collect::<Vec<_>>(),
        Vec::<&(u32, u32)>::new(),
        "behavry folds these chars and Go does not"
    );
}

const POLICY: &str = r#"package behavry.authz
import rego.v1
allow if input.action.name == "echo"
"#;

#[test]
fn twins_never_reach_a_go_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = go_build("echoserver", dir.path()) else {
        return;
    };
    let ran_log = dir.path().join("ran.log");
    let home = Home::with_policy("p.rego", POLICY);
    let server_s = server.display().to_string();
    let log_s = ran_log.display().to_string();
    let mut w = home.wrap(
        &["--name", "go", "--", &server_s],
        &[("ECHO_SERVER_LOG", &log_s)],
    );
    // The initialize answer holds 1e400: valid JSON, relayed as the server wrote it.
    w.send(json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "claude-code", "version": "2"}}}));
    let init = w.recv_line();
    assert!(init.contains(r#""huge":1e400"#), "{init}");
    w.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    // Twins and other spellings Go would read as the field: refused with the id, never run.
    let twins = [
        r#""params":{"name":"echo","arguments":{"text":"a"},"argumentſ":{"text":"twin-1"}}"#,
        r#""params":{"name":"echo","arguments":{"text":"a"},"Arguments":{"text":"twin-2"}}"#,
        r#""params":{"name":"echo","nAme":"write_file","arguments":{"text":"twin-3"}}"#,
        r#""params":{"nAme":"echo","arguments":{"text":"twin-4"}}"#,
        r#""params":{"name":"echo","NAME":"echo","arguments":{"text":"twin-5"}}"#,
        r#""params":{"name":"echo","arguments":{"text":"a","TEXT":"twin-6"}}"#,
        r#""params":{"name":"echo","arguments":{"text":"twin-7","\u212Aey":1,"key":2}}"#,
        r#""params":{"name":"echo","arguments":{"text":"twin-8"}},"paramſ":{"name":"delete"}"#,
    ];
    for (i, twin) in twins.iter().enumerate() {
        let id = 100 + i as i64;
        let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call",{twin}}}"#);
        w.send_raw(format!("{line}\n").as_bytes());
        let reply = w.recv();
        assert_eq!(reply["id"], id, "{line}: {reply}");
        assert_eq!(reply["error"]["code"], -32600, "{line}: {reply}");
    }
    // What the rule lets through, Go reads as behavry does.
    let fine = [
        // Tool arguments named like fields behavry reads elsewhere are the tool's own.
        (
            r#"{"name":"echo","arguments":{"Name":"n","ID":1,"text":"fine-1"}}"#,
            json!({"name": "echo", "arguments": {"Name": "n", "ID": 1, "text": "fine-1"}}),
        ),
        // Fullwidth letters are not in `name`'s folding orbit: Go does not read it as `name`.
        (
            r#"{"name":"echo","ｎame":"write_file","arguments":{"text":"fine-2"}}"#,
            json!({"name": "echo", "arguments": {"text": "fine-2"}}),
        ),
        // Dotless ı folds to itself in simple folding.
        (
            r#"{"name":"echo","arguments":{"text":"fine-3"},"argumentı":{"x":1}}"#,
            json!({"name": "echo", "arguments": {"text": "fine-3"}}),
        ),
    ];
    for (i, (params, ran)) in fine.iter().enumerate() {
        let id = 200 + i as i64;
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#);
        w.send_raw(format!("{line}\n").as_bytes());
        let reply = w.recv_id(&json!(id));
        let text = reply
            .pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{line}: {reply}"));
        let got: Value = serde_json::from_str(text).expect("the Go server echoes JSON");
        assert_eq!(&got, ran, "{line}");
    }
    let (code, stderr) = w.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let ran = std::fs::read_to_string(&ran_log).unwrap_or_default();
    assert!(!ran.contains("twin"), "the Go server ran a twin:\n{ran}");
    assert_eq!(ran.lines().count(), fine.len(), "{ran}");
}

#[test]
fn the_go_server_merges_what_behavry_refuses() {
    // Straight to the Go server, no behavry: shows each refused spelling is a real merge.
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = go_build("echoserver", dir.path()) else {
        return;
    };
    let input = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1},"argumentſ":{"b":2},"nAme":"delete"}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","paramſ":{"name":"delete"}}"#,
        "\n"
    );
    let mut child = Command::new(server)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the Go server");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let ran: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let reply: Value = serde_json::from_str(l).expect("JSON");
            serde_json::from_str(
                reply["result"]["content"][0]["text"]
                    .as_str()
                    .expect("text"),
            )
            .expect("JSON text")
        })
        .collect();
    assert_eq!(
        ran[0],
        json!({"name": "delete", "arguments": {"a": 1, "b": 2}})
    );
    assert_eq!(ran[1]["name"], "delete");
    for line in input.lines() {
        assert!(strict::parse(line.as_bytes()).is_err(), "{line}");
    }
}
