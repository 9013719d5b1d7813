//! The wrapper is transparent: a client sees through `behavry wrap` exactly what it sees talking to
//! the server directly, and a policy that is slow to decide one call holds up nothing else.

use std::process::Command;

use crate::common::*;
use serde_json::{json, Value};

const ALLOW_ALL: &str = "package behavry.authz\nallow := true\n";

/// Every tool of server-everything whose result does not depend on the client answering a
/// request (sampling, elicitation, roots) or on tasks, with fixed arguments; plus calls the server
/// refuses, so its errors are compared too.
fn everything_calls() -> Value {
    json!([
        {"name": "echo", "arguments": {"message": "hi ☃ \u{1F600}"}},
        {"name": "get-annotated-message", "arguments": {"messageType": "success", "includeImage": true}},
        {"name": "get-annotated-message", "arguments": {"messageType": "error"}},
        {"name": "get-env", "arguments": {}},
        {"name": "get-resource-links", "arguments": {"count": 3}},
        {"name": "get-resource-reference", "arguments": {"resourceType": "Text", "resourceId": 2}},
        {"name": "get-resource-reference", "arguments": {"resourceType": "Blob", "resourceId": 3}},
        {"name": "get-structured-content", "arguments": {"location": "New York"}},
        {"name": "get-sum", "arguments": {"a": 2, "b": 3.5}},
        {"name": "get-sum", "arguments": {"a": 1e300, "b": -0.0}},
        {"name": "get-tiny-image", "arguments": {}},
        {"name": "gzip-file-as-resource", "arguments": {
            "name": "hello.gz", "data": "data:text/plain;base64,aGVsbG8=", "outputType": "resource"}},
        {"name": "gzip-file-as-resource", "arguments": {
            "name": "link.gz", "data": "data:text/plain;base64,aGVsbG8=", "outputType": "resourceLink"}},
        {"name": "trigger-long-running-operation", "arguments": {"duration": 0.2, "steps": 2}},
        {"name": "toggle-subscriber-updates", "arguments": {}},
        {"name": "toggle-subscriber-updates", "arguments": {}},
        {"name": "get-sum", "arguments": {"a": "not a number"}},
        {"name": "no-such-tool", "arguments": {}},
    ])
}

/// Runs the SDK client with `spec` (see client.mjs) and returns its parsed output.
fn run_spec(home: &Home, name: &str, spec: &Value) -> Value {
    let file = home.path().join(format!("{name}.json"));
    std::fs::write(&file, spec.to_string()).expect("write spec");
    let client = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/client.mjs");
    let out = Command::new("node")
        .arg(client)
        .arg(&file)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} client failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name} client output {stdout:?}: {e}\n{stderr}"))
}

/// Removes what legitimately differs between two runs of the same script: server-everything's
/// dynamic resources say when they were generated ("… created at 2:58:38 PM", in `text`, and
/// base64-encoded in `blob`). Nothing else is stripped: no id, order or number is normalised.
fn strip_varying(value: &mut Value) {
    match value {
        Value::String(s) => *s = strip_time(s),
        Value::Array(items) => items.iter_mut().for_each(strip_varying),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match (key.as_str(), &field) {
                    ("blob", Value::String(b)) => {
                        if let Some(text) = base64_text(b).filter(|t| t.contains(CREATED_AT)) {
                            *field = Value::String(format!("base64 of {:?}", strip_time(&text)));
                        }
                    }
                    _ => strip_varying(field),
                }
            }
        }
        _ => {}
    }
}

const CREATED_AT: &str = " created at ";

fn strip_time(s: &str) -> String {
    match s.find(CREATED_AT) {
        Some(at) => format!("{}{CREATED_AT}<time>", &s[..at]),
        None => s.to_string(),
    }
}

/// Standard base64 decoded as UTF-8 text; `None` for anything else.
fn base64_text(b: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in b.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Every place where `a` and `b` differ, as JSON pointers with both values.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let here = format!("{at}/{key}");
                match (x.get(key), y.get(key)) {
                    (Some(v), Some(w)) => differences(v, w, &here, out),
                    (v, w) => out.push(format!("{here}: direct {v:?}, wrapped {w:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{at}: direct {a}, wrapped {b}")),
        _ => {}
    }
}

/// The same SDK client script, once straight against server-everything and once through
/// `behavry wrap` with a policy that allows everything: the parsed results are equal.
#[test]
fn server_everything_direct_and_wrapped_give_the_same_results() {
    let home = Home::with_policy("allow.rego", ALLOW_ALL);
    let server = node_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    let script = json!({
        // The same environment both ways, so get-env shows whether behavry changes the server's.
        "env": {"BEHAVRY_HOME": home.path(), "USER": "tester"},
        "calls": everything_calls(),
        "survey": true,
        "readListed": true,
        "reads": [
            "demo://resource/dynamic/text/1",
            "demo://resource/dynamic/blob/2",
            "demo://resource/session/hello.gz",
            "demo://resource/nope",
        ],
        "prompts": [
            {"name": "simple-prompt"},
            {"name": "args-prompt", "arguments": {"city": "Paris", "state": "Île-de-France"}},
            {"name": "args-prompt", "arguments": {"city": "Oslo"}},
            {"name": "completable-prompt", "arguments": {"department": "Engineering", "name": "Alice"}},
            {"name": "resource-prompt", "arguments": {"resourceType": "Text", "resourceId": "1"}},
            {"name": "resource-prompt", "arguments": {"resourceType": "Blob", "resourceId": "2"}},
            {"name": "no-such-prompt"},
        ],
    });
    let with = |command: &str, args: Value| {
        let mut spec = script.clone();
        spec["command"] = json!(command);
        spec["args"] = args;
        spec
    };
    let mut direct = run_spec(&home, "direct", &with("node", json!([server, "stdio"])));
    let mut wrapped = run_spec(
        &home,
        "wrapped",
        &with(
            BIN,
            json!([
                "wrap",
                "--name",
                "everything",
                "--",
                "node",
                server,
                "stdio"
            ]),
        ),
    );

    // The script did what it says: the comparison is not between two empty outputs.
    let results = direct["results"].as_array().map_or(0, Vec::len);
    assert_eq!(results, everything_calls().as_array().map_or(0, Vec::len));
    assert_eq!(
        text(&json!({"result": direct["results"][0]["result"]})),
        "Echo: hi ☃ \u{1F600}"
    );
    let listed = &direct["listed"];
    for list in ["tools", "prompts", "resources", "resourceTemplates"] {
        assert!(
            listed[list].as_array().is_some_and(|l| !l.is_empty()),
            "{list} is empty: {listed}"
        );
    }
    let reads = direct["reads"].as_array().map_or(0, Vec::len);
    let prompts = direct["prompts"].as_array().map_or(0, Vec::len);
    assert!(reads > 4, "{direct}");

    strip_varying(&mut direct);
    strip_varying(&mut wrapped);
    let mut diff = Vec::new();
    differences(&direct, &wrapped, "", &mut diff);
    assert!(
        diff.is_empty(),
        "{} difference(s) between direct and wrapped:\n{}",
        diff.len(),
        diff.join("\n")
    );

    // And behavry did decide every governed request, rather than pass the session through.
    let rows = home.log(&[]);
    assert_eq!(rows.len(), results + reads + prompts, "{rows:?}");
    assert!(rows.iter().all(|r| r["decision"] == "allow"), "{rows:?}");
}

/// Deciding `peek` loops over 50 000 numbers (~200 ms in a debug build); `echo` and `progress`
/// are allowed by cheap rules whose first line fails for `peek`, and the reverse.
const SLOW_FOR_PEEK: &str = r#"package behavry.authz
import rego.v1
allow if input.action.name in {"echo", "progress"}
allow if {
	input.action.name == "peek"
	count([x | some x in numbers.range(1, 50000); x % 7 == 3]) > 0
}
"#;

/// While several slow decisions are under way, pings, a fast call, and the server's progress
/// notifications for it all get through first: a slow policy holds up only the calls it decides.
#[test]
fn a_slow_policy_stalls_only_the_calls_it_is_deciding() {
    let home = Home::with_policy("slow.rego", SLOW_FOR_PEEK);
    // The default limit (250 ms) is close to this policy's running time on a busy machine.
    home.config("[wrap]\neval_timeout_ms = 60000\n");
    let mut w = home.wrap_mock();
    w.initialize();

    let slow = [json!(1), json!(2), json!(3)];
    for id in &slow {
        w.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "peek", "arguments": {}}}));
    }
    w.send(json!({"jsonrpc": "2.0", "id": "ping-1", "method": "ping"}));
    w.send(
        json!({"jsonrpc": "2.0", "id": "echo", "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "fast"}}}),
    );
    w.send(
        json!({"jsonrpc": "2.0", "id": "progress", "method": "tools/call",
        "params": {"name": "progress", "arguments": {}, "_meta": {"progressToken": "t"}}}),
    );
    w.send(json!({"jsonrpc": "2.0", "id": "ping-2", "method": "ping"}));

    // Every frame in the order it arrived: answers by id, notifications by method.
    let mut order = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < 7 {
        let frame = w.recv();
        match frame.get("id") {
            Some(id) => {
                order.push(id.to_string());
                answers.push(frame);
            }
            None => order.push(frame["method"].as_str().unwrap_or("?").to_string()),
        }
    }
    let first_slow = order
        .iter()
        .position(|o| ["1", "2", "3"].contains(&o.as_str()))
        .expect("the slow calls are answered");
    let fast = [
        "\"ping-1\"",
        "\"echo\"",
        "\"progress\"",
        "\"ping-2\"",
        "notifications/progress",
    ];
    for f in fast {
        let at = order.iter().position(|o| o == f);
        assert!(
            at.is_some_and(|at| at < first_slow),
            "{f} waited for a slow decision: {order:?}"
        );
    }
    // The slow calls were decided, not cut off: all allowed and answered by the server.
    for a in &answers {
        assert!(a.get("result").is_some() && !is_error(a), "{a}");
    }
    w.finish();
    let rows = home.log(&[]);
    let decided: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(decided.len(), 5, "{decided:?}");
    assert!(decided.iter().all(|(_, d)| *d == "allow"), "{decided:?}");
    assert_eq!(decided.iter().filter(|(t, _)| *t == "peek").count(), 3);
}
