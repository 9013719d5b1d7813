//! Decision logs leaving the machine: real wrappers export to real receivers on 127.0.0.1
//! started here. `tests/collectors/opa.py` (an OPA decision-log receiver) and `otlp.py` (an OTLP
//! receiver decoding with PyPI `opentelemetry-proto`) record every request and can answer
//! 429/503 with Retry-After, hang, or refuse; `rotel-agent` (PyPI `rotel`) is a real OTLP
//! receiver that prints every record. Install them with `pip install -r tests/requirements.txt`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::*;
use serde_json::{json, Value};

const POLICY: &str = r#"package behavry.authz
import rego.v1
allow if input.action.name in {"echo", "read_file"}
deny if input.action.name == "write_file"
"#;

/// A receiver from `tests/collectors`, killed when dropped.
struct Collector {
    child: Child,
    port: u16,
    out: PathBuf,
    control: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts `tests/collectors/<kind>.py` on `port` (0: any free port).
    fn start(kind: &str, port: u16) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("received.jsonl");
        let control = dir.path().join("control.json");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/collectors/{kind}.py"));
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(&out)
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs the test collectors: install Python 3");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("collector stdout");
        let _ = BufReader::new(stdout).read_line(&mut first);
        let Some(port) = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
        else {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            let _ = child.kill();
            panic!(
                "{kind}.py did not start ({first:?}); install its packages: pip install -r \
                 tests/requirements.txt\n{err}"
            );
        };
        Collector {
            child,
            port,
            out,
            control,
            _dir: dir,
        }
    }

    /// Makes the next requests misbehave (see `tests/collectors/receiver.py`).
    fn control(&self, control: Value) {
        std::fs::write(&self.control, control.to_string()).expect("write control");
    }

    fn behave(&self) {
        let _ = std::fs::remove_file(&self.control);
    }

    /// Every request received: `{t, path, status, events}`.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The events of the requests answered 200 (what a collector stores).
    fn stored(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 200)
            .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// The seq of an event from either receiver.
fn seq(event: &Value) -> i64 {
    event["seq"]
        .as_i64()
        .or_else(|| event["attributes"]["behavry.seq"].as_i64())
        .unwrap_or_else(|| panic!("event without a seq: {event}"))
}

/// Every journal record an exporter sends (all but the genesis record): seq → hash.
fn journal(home: &Home) -> BTreeMap<i64, (String, String)> {
    let store = store(home);
    store
        .journal_after(0, usize::MAX >> 1, usize::MAX >> 1)
        .expect("journal")
        .into_iter()
        .filter(|r| r.kind != "genesis")
        .map(|r| (r.seq, (r.kind, r.hash)))
        .collect()
}

fn home_with(sinks: &str) -> Home {
    let home = Home::with_policy("p.rego", POLICY);
    home.config(&format!("[decision_log]\ninterval_secs = 1\n{sinks}"));
    home
}

fn opa_sink(c: &Collector) -> String {
    format!(
        "[decision_log.opa]\nurl = \"http://127.0.0.1:{}/logs\"\n",
        c.port
    )
}

fn otlp_sink(port: u16, protocol: &str) -> String {
    format!(
        "[decision_log.otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\n"
    )
}

fn calls(w: &mut Wrapper, from: i64, n: i64) {
    for id in from..from + n {
        let tool = if id % 3 == 0 { "write_file" } else { "echo" };
        w.call(
            id,
            tool,
            json!({"text": format!("call {id}"), "path": "/tmp/x"}),
        );
    }
}

fn flush(home: &Home) -> (i32, String) {
    let out = run(&mut home.command(&["export", "flush"]));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_record_reaches_both_sinks_with_its_id_revision_seq_and_hash() {
    let opa = Collector::start("opa", 0);
    let otlp = Collector::start("otlp", 0);
    let home = home_with(&format!(
        "labels = {{ team = \"payments\" }}\n{}{}",
        opa_sink(&opa),
        otlp_sink(otlp.port, "http/protobuf")
    ));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 6);
    // The wrapper's own exporter sends while it runs.
    assert!(eventually(|| opa
        .stored()
        .iter()
        .filter(|e| e["kind"] == "decision")
        .count()
        == 6));
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));
    // What the wrapper wrote on its way out is sent by the next exporter, here `export flush`.
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");

    let journal = journal(&home);
    let instance = store(&home).instance_id().expect("instance id");
    for (name, events) in [("opa", opa.stored()), ("otlp", otlp.stored())] {
        let seqs: BTreeSet<i64> = events.iter().map(seq).collect();
        let want: BTreeSet<i64> = journal.keys().copied().collect();
        assert_eq!(seqs, want, "{name}: every record arrives");
    }

    let opa_events = opa.stored();
    for event in opa_events.iter().filter(|e| e["kind"] == "decision") {
        for field in [
            "decision_id",
            "labels",
            "bundles",
            "path",
            "input",
            "result",
            "requested_by",
            "timestamp",
            "metrics",
            "erased",
            "instance_id",
            "seq",
            "hash",
        ] {
            assert!(
                event.get(field).is_some(),
                "OPA event without {field}: {event}"
            );
        }
        let id = event["decision_id"].as_str().expect("decision_id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(event["bundles"], json!({}), "no bundle was active");
        assert_eq!(event["path"], "behavry/authz");
        assert_eq!(event["instance_id"], instance.as_str());
        assert_eq!(event["labels"]["id"], instance.as_str());
        assert_eq!(event["labels"]["team"], "payments");
        assert_eq!(event["hash"], journal[&seq(event)].1.as_str());
        assert_eq!(
            event["input"]["action"]["tool"]
                .as_str()
                .map(|t| t.starts_with("fs/")),
            Some(true)
        );
        assert_eq!(event["requested_by"], event["input"]["requester"]["id"]);
        let decision = event["result"]["decision"]
            .as_str()
            .expect("result.decision");
        let name = event["input"]["action"]["name"].as_str().unwrap_or("");
        assert_eq!(
            decision,
            if name == "write_file" {
                "deny"
            } else {
                "allow"
            }
        );
        assert!(event["result"]["reasons"].is_array());
    }
    // Outcomes and the session are exported too, each naming its kind.
    let kinds: BTreeSet<&str> = opa_events
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.is_superset(&BTreeSet::from(["decision", "outcome", "session"])),
        "{kinds:?}"
    );

    let otlp_events = otlp.stored();
    for event in &otlp_events {
        let resource = &event["resource"];
        assert_eq!(resource["service.name"], "behavry");
        assert_eq!(resource["service.instance.id"], instance.as_str());
        assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert!(resource["host.name"]
            .as_str()
            .is_some_and(|h| !h.is_empty()));
        assert_eq!(resource["team"], "payments");
        let attributes = &event["attributes"];
        let kind = attributes["behavry.kind"].as_str().expect("behavry.kind");
        assert_eq!(event["event_name"], format!("behavry.{kind}"));
        assert_eq!(attributes["behavry.hash"], journal[&seq(event)].1.as_str());
        assert_eq!(attributes["behavry.instance_id"], instance.as_str());
        if kind == "decision" {
            assert!(attributes["behavry.decision_id"].is_string(), "{event}");
            let bundles: Value =
                serde_json::from_str(attributes["behavry.bundles"].as_str().unwrap_or(""))
                    .expect("behavry.bundles is JSON");
            assert_eq!(bundles, json!({}));
            assert!(attributes["behavry.decision"].is_string());
        }
    }

    // The cursors say so.
    let out = run(&mut home.command(&["export", "status", "--json"]));
    let status: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("status line is JSON"))
        .collect();
    assert_eq!(status.len(), 2);
    for sink in &status {
        assert_eq!(sink["backlog"], 0, "{sink}");
        assert_eq!(sink["last_error"], Value::Null, "{sink}");
    }
}

#[test]
fn otlp_json_is_read_by_the_reference_decoder() {
    let otlp = Collector::start("otlp", 0);
    let home = home_with(&otlp_sink(otlp.port, "http/json"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 3);
    w.finish();
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let seqs: BTreeSet<i64> = otlp.stored().iter().map(seq).collect();
    assert_eq!(seqs, journal(&home).keys().copied().collect());
}

/// rotel's agent, printing every record it receives.
fn rotel(port: u16) -> (Child, Arc<Mutex<String>>) {
    let agent = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3");
    let agent = String::from_utf8_lossy(&agent.stdout).trim().to_owned();
    assert!(
        Path::new(&agent).exists(),
        "rotel-agent not found: pip install -r tests/requirements.txt (PyPI rotel)"
    );
    let mut child = Command::new(&agent)
        .args([
            "start",
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args([
            "--exporter",
            "blackhole",
            "--debug-log",
            "logs",
            "--debug-log-verbosity",
            "detailed",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rotel-agent");
    let printed = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let printed = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut p) = printed.lock() {
                    p.push_str(&line);
                    p.push('\n');
                }
            }
        });
    }
    (child, printed)
}

#[test]
fn rotel_receives_and_prints_every_record() {
    let port = free_port();
    let (mut agent, printed) = rotel(port);
    let home = home_with(&otlp_sink(port, "http/protobuf"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 4);
    w.finish();
    // rotel may still be starting: flush until it takes everything.
    assert!(
        eventually(|| flush(&home).0 == 0),
        "rotel never accepted the records"
    );
    let journal = journal(&home);
    let all_printed = eventually(|| {
        let p = printed.lock().map(|p| p.clone()).unwrap_or_default();
        journal.values().all(|(_, hash)| p.contains(hash.as_str()))
    });
    let p = printed.lock().map(|p| p.clone()).unwrap_or_default();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(all_printed, "rotel did not print every record's hash:\n{p}");
    assert!(p.contains("behavry.decision"), "{p}");
}

#[test]
fn a_kill_mid_batch_loses_nothing_and_repeats_only_that_batch() {
    let otlp = Collector::start("otlp", 0);
    otlp.control(json!({"hang": true}));
    let home = home_with(&otlp_sink(otlp.port, "http/protobuf"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 5);
    // The exporter sent a batch and waits for an answer that does not come.
    assert!(eventually(|| otlp
        .requests()
        .iter()
        .any(|r| r["status"] == "hang")));
    // Calls still flow while it waits.
    calls(&mut w, 6, 5);
    let reply = w.call(100, "echo", json!({"text": "still here"}));
    assert_eq!(text(&reply), "still here");
    // kill -9, mid-batch.
    w.child.kill().expect("kill -9");
    let _ = w.child.wait();
    otlp.behave();
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");

    let hung: BTreeSet<i64> = otlp
        .requests()
        .iter()
        .filter(|r| r["status"] == "hang")
        .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
        .map(|e| seq(&e))
        .collect();
    assert!(!hung.is_empty());
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in otlp.requests() {
        for e in r["events"].as_array().cloned().unwrap_or_default() {
            *seen.entry(seq(&e)).or_default() += 1;
        }
    }
    let journal = journal(&home);
    for seq in journal.keys() {
        assert!(seen.contains_key(seq), "seq {seq} never arrived");
    }
    for (seq, n) in &seen {
        assert!(
            *n == 1 || hung.contains(seq),
            "seq {seq} arrived {n} times outside the killed batch"
        );
    }
    let stored: BTreeSet<i64> = otlp.stored().iter().map(seq).collect();
    assert_eq!(
        stored,
        journal.keys().copied().collect(),
        "the collector holds every record"
    );
}

#[test]
fn a_collector_down_for_many_calls_gets_the_backlog_exactly_once() {
    let port = free_port();
    let home = home_with(&otlp_sink(port, "http/protobuf"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    // More than one batch's worth of records while nothing listens.
    calls(&mut w, 1, 400);
    let status = || {
        let out = run(&mut home.command(&["export", "status"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        eventually(|| status().contains("last error")),
        "{}",
        status()
    );
    let status = status();
    assert!(
        status.contains(&format!("exporting: behavry process {}", w.child.id())),
        "{status}"
    );
    let otlp = Collector::start("otlp", port);
    let journal_now = journal(&home);
    let last = *journal_now.keys().last().expect("records");
    // The wrapper's exporter drains it once the collector is up (after its backoff).
    assert!(
        eventually(|| otlp.stored().iter().any(|e| seq(e) >= last)),
        "the backlog never drained"
    );
    w.finish();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for e in otlp.stored() {
        *counts.entry(seq(&e)).or_default() += 1;
    }
    for seq in journal_now.keys() {
        assert_eq!(counts.get(seq), Some(&1), "seq {seq}");
    }
    assert!(
        otlp.requests().len() >= 2,
        "{} records fit no single batch",
        journal_now.len()
    );
}

#[test]
fn past_the_backlog_cap_records_are_skipped_and_the_gap_is_sent() {
    let port = free_port();
    let home = home_with(&format!(
        "max_backlog_rows = 10\n{}",
        otlp_sink(port, "http/protobuf")
    ));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 30);
    w.finish();
    let otlp = Collector::start("otlp", port);
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let stored = otlp.stored();
    let gaps: Vec<&Value> = stored
        .iter()
        .filter(|e| e["attributes"]["behavry.kind"] == "export_gap")
        .collect();
    assert_eq!(gaps.len(), 1, "{stored:?}");
    let gap: Value =
        serde_json::from_str(gaps[0]["body"].as_str().unwrap_or("")).expect("gap body");
    let (from, through) = (
        gap["from_seq"].as_i64().unwrap_or(0),
        gap["through_seq"].as_i64().unwrap_or(0),
    );
    assert_eq!(gap["records"], through - from + 1);
    assert_eq!(gap["sink"], "otlp");
    let received: BTreeSet<i64> = stored.iter().map(seq).collect();
    for seq in journal(&home).keys() {
        let skipped = (from..=through).contains(seq);
        assert_ne!(
            received.contains(seq),
            skipped,
            "seq {seq}: sent or skipped, never both or neither"
        );
    }
    assert!(received.len() <= 11, "kept within the cap: {received:?}");
    // The gap is in the audit trail as well.
    assert!(home.events().iter().any(|e| e["kind"] == "export_gap"));
}

#[test]
fn the_policy_mask_erases_fields_before_they_leave() {
    let opa = Collector::start("opa", 0);
    let home = home_with(&opa_sink(&opa));
    home.policy(
        "log.rego",
        "package behavry.log\nimport rego.v1\nmask contains \"/input/action/arguments/text\" if input.input.action.name == \"echo\"\n",
    );
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 3);
    w.finish();
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let decisions: Vec<Value> = opa
        .stored()
        .into_iter()
        .filter(|e| e["kind"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 3);
    for d in decisions {
        let args = &d["input"]["action"]["arguments"];
        if d["input"]["action"]["name"] == "echo" {
            assert_eq!(d["erased"], json!(["/input/action/arguments/text"]), "{d}");
            assert_eq!(args.get("text"), None, "{d}");
            assert_eq!(args["path"], "/tmp/x");
        } else {
            assert_eq!(d["erased"], json!([]));
            assert!(args["text"].is_string());
        }
    }
}

#[test]
fn retry_after_is_honoured_and_the_same_records_are_sent_again() {
    let otlp = Collector::start("otlp", 0);
    otlp.control(json!({"status": 429, "retry_after": 3, "times": 1}));
    let home = home_with(&otlp_sink(otlp.port, "http/protobuf"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 2);
    assert!(eventually(|| otlp
        .requests()
        .iter()
        .any(|r| r["status"] == 200)));
    w.finish();
    let requests = otlp.requests();
    let refused = requests.iter().find(|r| r["status"] == 429).expect("a 429");
    let accepted = requests.iter().find(|r| r["status"] == 200).expect("a 200");
    let waited = accepted["t"].as_f64().unwrap_or(0.0) - refused["t"].as_f64().unwrap_or(0.0);
    // The first backoff alone is at most 2 s: 3 s means Retry-After was followed.
    assert!(
        waited >= 3.0,
        "retried after {waited:.2}s, Retry-After said 3"
    );
    let seqs = |r: &Value| -> BTreeSet<i64> {
        r["events"]
            .as_array()
            .map(|e| e.iter().map(seq).collect())
            .unwrap_or_default()
    };
    assert!(
        seqs(accepted).is_superset(&seqs(refused)),
        "the refused records are sent again"
    );
}

#[test]
fn a_refused_batch_is_set_aside_with_a_record_and_export_moves_on() {
    let opa = Collector::start("opa", 0);
    opa.control(json!({"status": 400, "times": 1}));
    let home = home_with(&opa_sink(&opa));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 2);
    w.finish();
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let stored = opa.stored();
    let rejected = stored
        .iter()
        .find(|e| e["kind"] == "export_rejected")
        .unwrap_or_else(|| panic!("no export_rejected: {stored:?}"));
    assert_eq!(rejected["result"]["status"], 400);
    let from = rejected["result"]["from_seq"].as_i64().unwrap_or(0);
    let through = rejected["result"]["through_seq"].as_i64().unwrap_or(0);
    assert!(from >= 1 && through >= from, "{rejected}");
    assert!(home.events().iter().any(|e| e["kind"] == "export_rejected"));
}

#[test]
fn prune_keeps_what_no_sink_has_unless_forced_and_flush_fails_while_down() {
    let port = free_port();
    let home = home_with(&otlp_sink(port, "http/protobuf"));
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    calls(&mut w, 1, 3);
    w.finish();
    let (code, said) = flush(&home);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("otlp: failed: cannot reach"), "{said}");
    let before = journal(&home).len();
    let out = run(&mut home.command(&["log", "--prune", "--before", "0s"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("pruned 0 records"), "{said}");
    assert!(said.contains("--force"), "{said}");
    assert_eq!(journal(&home).len(), before);
    let out = run(&mut home.command(&["log", "--prune", "--before", "0s", "--force"]));
    assert!(out.status.success());
    assert!(journal(&home).len() < before);
    // What was forced out before the sink had anything is sent as a gap, not lost in silence.
    let otlp = Collector::start("otlp", port);
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let stored = otlp.stored();
    let gap = stored
        .iter()
        .find(|e| e["attributes"]["behavry.kind"] == "export_gap")
        .unwrap_or_else(|| panic!("no export_gap: {stored:?}"));
    let gap: Value = serde_json::from_str(gap["body"].as_str().unwrap_or("")).expect("gap body");
    assert_eq!(gap["why"], "pruned", "{gap}");
    assert_eq!(gap["from_seq"], 1, "{gap}");
}

/// `export flush` masks with the team's bundle, as the wrappers do: its `behavry.log` mask holds
/// whatever the local files say.
#[test]
fn flush_masks_with_the_team_bundle() {
    let opa = Collector::start("opa", 0);
    let home = Home::with_policy("p.rego", "package behavry.authz\nallow := true\n");
    let src = tempfile::tempdir().expect("tempdir");
    let archive = build_bundle(
        src.path(),
        "r1",
        &[
            ("policy.rego", "package behavry.authz\nimport rego.v1\nallow := true\n"),
            ("log.rego", "package behavry.log\nimport rego.v1\nmask contains \"/input/action/arguments/text\"\n"),
        ],
        &[],
    );
    let bundle = format!("[bundles.org]\nurl = \"file://{}\"\n", archive.display());
    home.config(&bundle);
    let fetched = run(&mut home.command(&["bundle", "fetch"]));
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let mut w = home.wrap(&["--name", "fs", "--", BIN, "mock-server"], &[]);
    w.initialize();
    w.call(1, "echo", json!({"text": "the secret", "path": "/tmp/x"}));
    w.finish();
    // The sink is configured afterwards, so `export flush` is what sends the decision.
    home.config(&format!("{bundle}[decision_log]\n{}", opa_sink(&opa)));
    let (code, said) = flush(&home);
    assert_eq!(code, 0, "{said}");
    let decisions: Vec<Value> = opa
        .stored()
        .into_iter()
        .filter(|e| e["kind"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let d = &decisions[0];
    assert_eq!(d["erased"], json!(["/input/action/arguments/text"]), "{d}");
    assert!(!d.to_string().contains("the secret"), "{d}");
}
