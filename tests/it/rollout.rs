//! Rolling policies out: monitor mode, tool pinning, replay and `tools/list` filtering, through
//! the real binary and the mock server.

use crate::common::*;
use serde_json::json;

#[test]
fn monitor_mode_forwards_every_call_and_records_what_would_have_happened() {
    let home = Home::with_policy("seed.rego", SEED);
    let mut w = home.wrap(
        &["--name", "mock", "--monitor", "--", BIN, "mock-server"],
        &[],
    );
    let warned = w.stderr_until(&["MONITOR MODE"]);
    assert!(warned.contains("NOT enforced"), "{warned}");
    w.initialize();
    let read = w.call(1, "read_file", json!({"path": "/etc/hosts"}));
    assert!(!is_error(&read), "{read}");
    let write = w.call(
        2,
        "write_file",
        json!({"path": "/prod/config.yaml", "content": "x"}),
    );
    assert!(!is_error(&write), "a monitored deny is forwarded: {write}");
    let delete = w.call(3, "delete_file", json!({"path": "/tmp/x"}));
    assert!(
        !is_error(&delete),
        "a monitored escalation is not held: {delete}"
    );
    // behavry's own files stay refused: no policy could allow them.
    let own = home.path().join("config.toml");
    let own = w.call(4, "read_file", json!({"path": own}));
    assert!(is_error(&own), "{own}");
    let (code, _) = w.finish();
    assert_eq!(code, Some(0));

    let received = home.mock_received();
    assert!(received.contains("/prod/config.yaml"));
    assert!(received.contains("delete_file"));

    let rows = home.log(&[]);
    let decided: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r["decision"].as_str().unwrap_or(""), r["enforced"] == true))
        .collect();
    assert_eq!(
        decided,
        [
            ("allow", false),
            ("deny", false),
            ("escalate", false),
            ("deny", true)
        ]
    );
    assert_eq!(rows[1]["outcome"], "ok");
    let would = home.log(&["--would", "deny"]);
    assert_eq!(would.len(), 1);
    assert_eq!(would[0]["tool"], "write_file");

    let table = run(&mut home.command(&["log"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.matches("MONITOR (fwd)").count(), 3, "{table}");
    let list = run(&mut home.command(&["approve", "--list"]));
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.starts_with("MONITOR: mock "), "{list}");
    // The chain covers the flag.
    let verify = run(&mut home.command(&["log", "--verify"]));
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn monitor_mode_is_set_in_config_globally_or_per_server() {
    let home = Home::with_policy("seed.rego", SEED);
    home.config("[wrap]\nmode = \"monitor\"\n[servers.strict]\nmode = \"enforce\"\n");
    for (name, forwarded) in [("mock", true), ("strict", false)] {
        let mut w = home.wrap(&["--name", name, "--", BIN, "mock-server"], &[]);
        w.initialize();
        let write = w.call(1, "write_file", json!({"path": "/prod/a", "content": "x"}));
        assert_eq!(!is_error(&write), forwarded, "{name}: {write}");
        w.finish();
    }
}
