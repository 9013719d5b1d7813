//! The attack corpus: every `tests/attacks/*.case` file is sent, byte for byte, to the real
//! `behavry wrap` around the mock server, and must end in the outcome it states. Afterwards the
//! mock server's log must prove that nothing unevaluated reached it: every line it received is a
//! line the client sent, byte for byte (CRLF removed, lone surrogates repaired), or an element of
//! a batch the client sent, re-serialised; it parses strictly; and every governed request in it
//! has an `allow` row in the audit log.
//!
//! A case file is a header of `# ` lines, then the bytes to send (placeholders substituted):
//!
//! ```text
//! # <what the case is about>
//! # expect: <JSON>        one per reply; each must match a distinct reply (a subset match, any order)
//! # contains: <text>      some reply's error message or tool text contains it
//! # never: <text>         the mock server's log must not contain it
//! # protocol: <version>   initialize with this version (default 2025-06-18)
//! # policy: allow-all     instead of the default: allow the mock's tools, deny `{ROOT}/prod/`
//! # cwd: <dir>            behavry's (and so the server's) working directory, under {ROOT}
//! # env: KEY=VALUE        extra environment for behavry
//! # max-frame: <bytes>    [wrap] max_frame_bytes
//! # extra-policies: <dir> a --policies directory, under {ROOT}
//! ```
//!
//! `{ROOT}` is a fresh directory with `tmp/`, `prod/sub/`, `tmp/link -> prod`,
//! `tmp/sub -> prod/sub`, `tmp/dangling -> prod/new.txt`, `homelink -> {HOME}` and
//! `team-policies/`; `{HOME}` is the wrapper's `BEHAVRY_HOME`. After the payload a `ping` must
//! still be answered: no case breaks the connection.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use behavry::proxy::{message, strict};
use serde_json::{json, Value};

const ATTACK_POLICY: &str = r#"package behavry.authz
import rego.v1
allow if input.action.name in {"echo", "read_file", "write_file", "slow", "peek"}
allow if input.action.type == "read"
deny if startswith(input.resource.path, "{ROOT}/prod/")
deny if input.resource.path == "{ROOT}/prod"
reasons contains "prod is off limits" if startswith(input.resource.path, "{ROOT}/prod/")
"#;

const ALLOW_ALL: &str = "package behavry.authz\nallow := true\n";

const GOVERNED: &[&str] = &["tools/call", "resources/read", "prompts/get"];

#[derive(Debug, Default)]
struct Case {
    expect: Vec<Value>,
    contains: Vec<String>,
    never: Vec<String>,
    protocol: Option<String>,
    policy: Option<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
    max_frame: Option<usize>,
    extra_policies: Option<String>,
    payload: Vec<u8>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks")
}

fn load(path: &Path, subst: &dyn Fn(&str) -> String) -> Result<Case, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut case = Case::default();
    let mut rest: &[u8] = &bytes;
    while rest.starts_with(b"# ") {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = std::str::from_utf8(&rest[2..end]).map_err(|e| e.to_string())?;
        rest = rest.get(end + 1..).unwrap_or_default();
        let Some((key, value)) = line.split_once(": ") else {
            continue; // a description line
        };
        let value = subst(value);
        match key {
            "expect" => case.expect.push(
                serde_json::from_str(&value).map_err(|e| format!("bad expect {value}: {e}"))?,
            ),
            "contains" => case.contains.push(value),
            "never" => case.never.push(value),
            "protocol" => case.protocol = Some(value),
            "policy" => case.policy = Some(value),
            "cwd" => case.cwd = Some(value),
            "env" => {
                let (k, v) = value.split_once('=').ok_or("env needs KEY=VALUE")?;
                case.env.push((k.into(), v.into()));
            }
            "max-frame" => case.max_frame = Some(value.parse().map_err(|_| "bad max-frame")?),
            "extra-policies" => case.extra_policies = Some(value),
            _ => {} // description text that happens to contain ": "
        }
    }
    case.payload = subst_bytes(rest, subst);
    if case.expect.is_empty() {
        return Err("a case must expect at least one reply".into());
    }
    Ok(case)
}

/// Substitutes placeholders in a payload that may not be UTF-8.
fn subst_bytes(payload: &[u8], subst: &dyn Fn(&str) -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut rest = payload;
    while !rest.is_empty() {
        let Some(open) = rest.iter().position(|&b| b == b'{') else {
            out.extend_from_slice(rest);
            break;
        };
        out.extend_from_slice(&rest[..open]);
        rest = &rest[open..];
        let token = ["{ROOT}", "{HOME}"]
            .into_iter()
            .find(|t| rest.starts_with(t.as_bytes()));
        match token {
            Some(t) => {
                out.extend_from_slice(subst(t).as_bytes());
                rest = &rest[t.len()..];
            }
            None => {
                out.push(b'{');
                rest = &rest[1..];
            }
        }
    }
    out
}

/// `pattern` is contained in `value`: objects by key (recursively), arrays element by element,
/// everything else equal. A null in the pattern also matches a missing key.
fn matches(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, pv)| matches(pv, v.get(k).unwrap_or(&Value::Null))),
        (Value::Array(p), Value::Array(v)) => {
            p.len() <= v.len() && p.iter().zip(v).all(|(p, v)| matches(p, v))
        }
        (p, v) => p == v,
    }
}

/// Every string in a reply that a person reads: error messages and tool texts.
fn texts(reply: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = reply.pointer("/error/message").and_then(Value::as_str) {
        out.push(m.to_owned());
    }
    for item in reply
        .pointer("/result/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = item.get("text").and_then(Value::as_str) {
            out.push(t.to_owned());
        }
    }
    out
}

fn layout(root: &Path, home: &Path) {
    use std::os::unix::fs::symlink;
    for dir in ["tmp", "prod/sub", "team-policies"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    symlink(root.join("prod"), root.join("tmp/link")).expect("symlink");
    symlink(root.join("prod/sub"), root.join("tmp/sub")).expect("symlink");
    symlink(root.join("prod/new.txt"), root.join("tmp/dangling")).expect("symlink");
    symlink(home, root.join("homelink")).expect("symlink");
}

fn run_case(path: &Path) -> Result<(), String> {
    let home = Home::new();
    let root_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = std::fs::canonicalize(root_dir.path()).map_err(|e| e.to_string())?;
    let home_path = std::fs::canonicalize(home.path()).map_err(|e| e.to_string())?;
    layout(&root, &home_path);
    let (root_s, home_s) = (root.display().to_string(), home_path.display().to_string());
    let subst = |s: &str| s.replace("{ROOT}", &root_s).replace("{HOME}", &home_s);
    let case = load(path, &subst)?;

    let policy = match case.policy.as_deref() {
        None => subst(ATTACK_POLICY),
        Some("allow-all") => ALLOW_ALL.to_owned(),
        Some(other) => return Err(format!("unknown policy {other}")),
    };
    home.policy("attack.rego", &policy);
    if let Some(max) = case.max_frame {
        home.config(&format!("[wrap]\nmax_frame_bytes = {max}\n"));
    }
    let mut args = vec!["wrap".to_owned(), "--name".into(), "mock".into()];
    if let Some(dir) = &case.extra_policies {
        args.extend(["--policies".into(), root.join(dir).display().to_string()]);
    }
    args.extend(["--".into(), BIN.into(), "mock-server".into()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = home.command(&arg_refs);
    cmd.current_dir(root.join(case.cwd.as_deref().unwrap_or(".")));
    cmd.envs(case.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut w = Wrapper::spawn(cmd);
    w.initialize_with(case.protocol.as_deref().unwrap_or("2025-06-18"));

    w.send_raw(&case.payload);
    if !case.payload.ends_with(b"\n") {
        w.send_raw(b"\n");
    }
    let probe = json!({"jsonrpc": "2.0", "id": "probe", "method": "ping"});
    w.send(probe.clone());
    // What the client sent, line by line, as a server may receive it.
    let mut sent: Vec<Vec<u8>> = case
        .payload
        .split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            strict::repair_surrogates(line).unwrap_or_else(|| line.to_vec())
        })
        .collect();
    sent.push(probe.to_string().into_bytes());

    let mut unmatched: Vec<&Value> = case.expect.iter().collect();
    let mut replies = Vec::new();
    let mut probed = false;
    let deadline = Instant::now() + WAIT;
    while !(unmatched.is_empty() && probed) {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out; still expecting {unmatched:?} (probe answered: {probed}); got {replies:?}"
            ));
        }
        let reply = w.recv();
        if reply["id"] == "probe" {
            if reply["result"] != json!({}) {
                return Err(format!("the probe ping failed: {reply}"));
            }
            probed = true;
            continue;
        }
        match unmatched.iter().position(|p| matches(p, &reply)) {
            Some(i) => {
                unmatched.remove(i);
                replies.push(reply);
            }
            None => {
                return Err(format!(
                    "unexpected reply {reply}; still expecting {unmatched:?}"
                ))
            }
        }
    }
    let all_texts: Vec<String> = replies.iter().flat_map(texts).collect();
    for want in &case.contains {
        if !all_texts.iter().any(|t| t.contains(want.as_str())) {
            return Err(format!("no reply says {want:?}: {all_texts:?}"));
        }
    }
    let (code, stderr) = w.finish();
    if code != Some(0) {
        return Err(format!("behavry exited with {code:?}: {stderr}"));
    }

    let received = home.mock_received();
    for never in &case.never {
        if received.contains(never.as_str()) {
            return Err(format!("{never:?} reached the server:\n{received}"));
        }
    }
    only_evaluated_messages_reached_the_server(&home, &received, &sent)
}

/// Every line the mock received is a line the client sent (or an element of a batch it sent,
/// re-serialised), strictly valid, and every governed request among them was allowed by a
/// recorded decision. The handshake lines the harness sends before the payload are serialised
/// by `serde_json` too, so "re-serialised" covers them.
fn only_evaluated_messages_reached_the_server(
    home: &Home,
    received: &str,
    sent: &[Vec<u8>],
) -> Result<(), String> {
    let batch_elements: Vec<Value> = sent
        .iter()
        .filter_map(|line| match strict::parse(line) {
            Ok(Value::Array(items)) => Some(items),
            _ => None,
        })
        .flatten()
        .collect();
    let rows = home.log(&[]);
    let allowed: HashSet<(String, String)> = rows
        .iter()
        .filter(|r| r["decision"] == "allow")
        .map(|r| {
            (
                r["request_id"].as_str().unwrap_or("").to_owned(),
                r["method"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for line in received.lines() {
        let value = strict::parse(line.as_bytes())
            .map_err(|e| format!("the server received an ambiguous line ({e}): {line}"))?;
        let reserialised = serde_json::to_string(&value).unwrap_or_default();
        let as_sent = sent.iter().any(|s| s.as_slice() == line.as_bytes());
        let handshake =
            line.contains(r#""id":"init""#) || line.contains("notifications/initialized");
        let element = batch_elements.contains(&value);
        // behavry's own requests (it lists the server's tools itself) carry ids of its own.
        let own = value["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("behavry-"))
            && value["method"] == "tools/list";
        if !(as_sent || own || (reserialised.as_str() == line && (handshake || element))) {
            return Err(format!(
                "the server received bytes the client did not send: {line}"
            ));
        }
        let messages = match &value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for m in messages {
            let Some(method) = m.get("method").and_then(Value::as_str) else {
                continue;
            };
            if !GOVERNED.contains(&method) {
                continue;
            }
            let id = message::id_key(m.get("id").unwrap_or(&Value::Null));
            if !allowed.contains(&(id.clone(), method.to_owned())) {
                return Err(format!(
                    "the server received {method} {id} without an allow decision: {line}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn attack_corpus() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/attacks")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 60, "the corpus shrank: {}", cases.len());
    // Cases are independent processes; run a few at a time.
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<Vec<PathBuf>> = cases
            .chunks(cases.len().div_ceil(4))
            .map(<[PathBuf]>::to_vec)
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for case in chunk {
                        let name = case
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let started = Instant::now();
                        let result = std::panic::catch_unwind(|| run_case(&case))
                            .unwrap_or_else(|_| Err("panicked".into()));
                        if let Err(e) = result {
                            failures.push(format!("{name}: {e}"));
                        } else if started.elapsed() > Duration::from_secs(15) {
                            failures.push(format!("{name}: took {:?}", started.elapsed()));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} attack cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn server_requests_are_recorded() {
    // The mock answers `tools/call sample` by sending the client a sampling request first.
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let mut w = home.wrap_mock();
    w.initialize();
    w.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ask_client", "arguments": {}}}));
    let mut seen = Vec::new();
    for _ in 0..10 {
        let m = w.recv();
        if let Some(method) = m.get("method").and_then(Value::as_str) {
            seen.push(method.to_owned());
            // Answer it as a client would: ids are per direction, so id 1 is fine here.
            w.send(json!({"jsonrpc": "2.0", "id": m["id"], "result": {}}));
        }
        if m["id"] == 1 && m.get("method").is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "sampling/createMessage",
            "elicitation/create",
            "roots/list",
            "ping"
        ]
    );
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));
    // Server requests are records in the hash-chained journal, like every audit fact.
    let db = rusqlite::Connection::open(home.path().join("behavry.db")).expect("open the store");
    let mut stmt = db
        .prepare("SELECT body FROM journal WHERE kind = 'server_request' ORDER BY seq")
        .expect("query");
    let rows: Vec<Value> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("rows")
        .map(|b| serde_json::from_str(&b.expect("body")).expect("JSON body"))
        .collect();
    let methods: Vec<&str> = rows.iter().filter_map(|r| r["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["sampling/createMessage", "elicitation/create", "roots/list"],
        "ping acts on nobody and is not recorded"
    );
    assert_eq!(rows[0]["server"], "mock");
    assert_eq!(rows[0]["params"]["apiKey"], "[redacted]");
    assert_eq!(rows[0]["request_id"], "\"s-0\"");
    assert!(rows[0]["session_id"]
        .as_str()
        .is_some_and(|s| s.len() == 36));
    let verify = home
        .command(&["log", "--verify"])
        .output()
        .expect("log --verify");
    assert!(
        verify.status.success(),
        "the journal still verifies: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
