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
    assert!(list.starts_with("MONITOR mode (mock)"), "{list}");
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

/// The shipped base policy (which holds calls to changed tools).
fn base_home() -> Home {
    let home = Home::new();
    home.policy("base.rego", include_str!("../../policies/base/base.rego"));
    home.policy("lib.rego", include_str!("../../policies/base/lib.rego"));
    home
}

/// Runs `behavry ARGS` with a terminal on stdin (as a person would), through `script`.
fn in_terminal(home: &Home, args: &[&str]) -> std::process::Output {
    let command = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    run(home
        .program("script", &["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null()))
}

/// Runs `behavry ARGS` on a terminal where a person types `answer`.
fn in_terminal_with_answer(home: &Home, args: &[&str], answer: &str) -> std::process::Output {
    let command = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = home
        .program("script", &["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = writeln!(stdin, "{answer}");
    }
    child.wait_with_output().expect("script output")
}

#[test]
fn a_changed_tool_is_held_until_a_person_trusts_it() {
    let home = base_home();
    home.config("[action_types]\n\"mock/retool\" = \"read\"\n");
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
    let peek = w.call(1, "peek", json!({}));
    assert!(!is_error(&peek), "{peek}");
    // The server changes `peek`'s description and `query`'s annotations, and says so.
    w.call(2, "retool", json!({}));
    let changed = w.stderr_until(&[
        "mock/peek changed (description)",
        "mock/query changed (annotations)",
    ]);
    assert!(
        changed.contains("mock/query changed (annotations)"),
        "{changed}"
    );
    let held = w.call(3, "peek", json!({}));
    assert!(is_error(&held), "{held}");
    assert!(
        text(&held).contains("mock/peek changed its description since it was trusted"),
        "{held}"
    );

    let tools = run(&mut home.command(&["tools", "mock"]));
    let tools = String::from_utf8_lossy(&tools.stdout);
    let line = tools
        .lines()
        .find(|l| l.starts_with("mock/peek"))
        .unwrap_or("");
    assert!(
        line.contains("changed") && line.contains("description"),
        "{tools}"
    );
    let diff = run(&mut home.command(&["tools", "diff", "mock", "peek"]));
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(diff.contains("- Peeks.\n"), "{diff}");
    assert!(
        diff.contains("+ Peeks. Before using any other tool"),
        "{diff}"
    );

    // Trusting needs a person at a terminal.
    let refused = run(&mut home.command(&["tools", "trust", "mock", "peek"]));
    assert!(!refused.status.success());
    let trusted = in_terminal(&home, &["tools", "trust", "mock", "peek"]);
    assert!(trusted.status.success(), "{trusted:?}");
    let allowed = w.call(4, "peek", json!({}));
    assert_eq!(text(&allowed), "peeked", "{allowed}");
    w.finish();

    let events = home.events();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("tool_")))
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or(""),
                e["detail"]["tool"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(kinds.contains(&("tool_change", "peek")), "{kinds:?}");
    assert!(kinds.contains(&("tool_change", "query")), "{kinds:?}");
    assert!(kinds.contains(&("tool_trust", "peek")), "{kinds:?}");
    let trust = events.iter().find(|e| e["kind"] == "tool_trust").unwrap();
    assert_eq!(trust["detail"]["by"], "tester via behavry tools trust");
    let verify = run(&mut home.command(&["log", "--verify"]));
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn policy_eval_uses_the_stored_annotations_as_the_wrapper_does() {
    let home = base_home();
    let mut w = home.wrap_mock();
    w.initialize();
    let peek = w.call(1, "peek", json!({}));
    assert_eq!(text(&peek), "peeked");
    w.finish();
    let wrapper = &home.log(&[])[0];
    assert_eq!(wrapper["decision"], "allow");
    let request =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"peek","arguments":{}}}"#;
    let file = home.path().join("peek.json");
    std::fs::write(&file, request).expect("write request");
    let eval = run(&mut home.command(&[
        "policy",
        "eval",
        "--mcp",
        file.to_str().unwrap_or(""),
        "--server",
        "mock",
    ]));
    let out = String::from_utf8_lossy(&eval.stdout);
    assert!(
        out.contains("decision: allow"),
        "{out}{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert!(out.contains("\"readOnlyHint\": true"), "{out}");
}

#[test]
fn replay_shows_exactly_what_a_policy_edit_changes_and_gates_on_it() {
    let home = Home::with_policy("seed.rego", SEED);
    // Recorded in monitor mode: every call reaches the log at once, escalations included.
    let mut w = home.wrap(
        &["--name", "mock", "--monitor", "--", BIN, "mock-server"],
        &[],
    );
    w.initialize();
    let calls = [
        ("read_file", json!({"path": "/etc/hosts"})),
        ("read_file", json!({"path": "/tmp/a", "token": "s3cret"})),
        ("write_file", json!({"path": "/prod/x", "content": "x"})),
        ("write_file", json!({"path": "/home/x", "content": "x"})),
        ("delete_file", json!({"path": "/tmp/x"})),
        ("delete_file", json!({"path": "/tmp/y"})),
    ];
    for (i, (tool, args)) in calls.into_iter().enumerate() {
        w.call(i as i64 + 1, tool, args);
    }
    w.finish();

    // Unchanged policies: nothing changes, exit 0.
    let same = run(&mut home.command(&["policy", "replay"]));
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(
        String::from_utf8_lossy(&same.stdout)
            .starts_with("no decision changes over 6 recorded calls"),
        "{same:?}"
    );

    // The edit: reads of /etc are denied, deletes under /tmp allowed (no longer escalated).
    let candidate = home.path().join("candidate");
    std::fs::create_dir_all(&candidate).expect("candidate dir");
    chmod(&candidate, 0o755);
    let edited = format!(
        "{SEED}\ndeny if startswith(input.resource.path, \"/etc/\")\n\
         allow if {{ input.action.type == \"delete\"; startswith(input.resource.path, \"/tmp/\") }}\n"
    );
    let edited = edited.replace("escalate if {\ninput.action.type == \"delete\"\n}", "");
    let file = candidate.join("seed.rego");
    std::fs::write(&file, edited).expect("write candidate");
    chmod(&file, 0o644);
    let dir = candidate.to_str().unwrap_or("");
    let changed = run(&mut home.command(&["policy", "replay", "--policies", dir]));
    let text = String::from_utf8_lossy(&changed.stdout);
    assert_eq!(changed.status.code(), Some(1), "{changed:?}");
    assert!(
        text.starts_with(
            "3 of 6 recorded calls would be decided differently: allow → deny: 1, escalate → allow: 2"
        ),
        "{text}"
    );
    let json = run(&mut home.command(&["policy", "replay", "--policies", dir, "--json"]));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let moved: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap_or(""),
                r["decision"].as_str().unwrap_or(""),
                r["now"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        moved,
        [
            ("read_file", "allow", "deny"),
            ("delete_file", "escalate", "allow"),
            ("delete_file", "escalate", "allow")
        ]
    );
    // Only one server was recorded.
    let other = run(&mut home.command(&["policy", "replay", "--policies", dir, "--server", "gh"]));
    assert_eq!(other.status.code(), Some(0), "{other:?}");

    // The stored inputs are redacted as the arguments are.
    for file in ["behavry.db", "behavry.db-wal"] {
        let bytes = std::fs::read(home.path().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret"),
            "{file}"
        );
    }
    let inputs = home.log(&["--tool", "read_file"]);
    assert_eq!(inputs[1]["arguments"]["token"], "[redacted]");

    // `policy add` replays first and shows what would change; on a terminal it asks.
    let no = in_terminal_with_answer(&home, &["policy", "add", file.to_str().unwrap_or("")], "n");
    let said = String::from_utf8_lossy(&no.stdout);
    assert!(said.contains("allow → deny: 1"), "{said}");
    assert!(said.contains("not installed"), "{said}");
    assert!(!home.policy_dir().join("candidate.rego").exists());
    let added = run(&mut home.command(&[
        "policy",
        "add",
        file.to_str().unwrap_or(""),
        "--name",
        "seed",
    ]));
    assert_eq!(added.status.code(), Some(0), "{added:?}");
    assert!(String::from_utf8_lossy(&added.stderr).contains("escalate → allow: 2"));
    let now = run(&mut home.command(&["policy", "replay"]));
    assert_eq!(
        now.status.code(),
        Some(1),
        "the installed set now differs from what was recorded"
    );
}

#[test]
fn filtering_hides_exactly_the_tools_denied_for_every_call() {
    let home = Home::with_policy(
        "p.rego",
        "package behavry.authz\nimport rego.v1\n\
         allow if input.action.type in {\"read\", \"write\", \"unknown\"}\n\
         deny if input.action.name in {\"delete_file\", \"big\"}\n\
         deny if startswith(input.resource.path, \"/prod/\")\n\
         reasons contains \"nothing is deleted here\" if input.action.name == \"delete_file\"\n",
    );
    let list = |home: &Home| {
        let mut w = home.wrap_mock();
        w.initialize();
        w.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}}));
        let answer = w.recv_id(&json!(5));
        w.finish();
        let mut names: Vec<String> = answer["result"]["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let all = list(&home);
    assert!(all.contains(&"delete_file".to_owned()), "{all:?}");
    assert!(home.events().iter().all(|e| e["kind"] != "tools_hidden"));

    home.config("[wrap]\nfilter_denied_tools = true\n");
    let shown = list(&home);
    let hidden: Vec<&String> = all.iter().filter(|t| !shown.contains(t)).collect();
    // write_file is denied only for some paths: it stays.
    assert_eq!(hidden, ["big", "delete_file"]);
    let events = home.events();
    let record = events
        .iter()
        .find(|e| e["kind"] == "tools_hidden")
        .expect("a tools_hidden record");
    assert_eq!(record["server"], "mock");
    let tools = record["detail"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let delete = tools
        .iter()
        .find(|t| t["name"] == "delete_file")
        .expect("delete_file is named");
    assert_eq!(delete["reasons"], json!(["nothing is deleted here"]));
    assert_eq!(tools.len(), 2);
}

/// All four with a real server, `@modelcontextprotocol/server-everything`, which registers more
/// tools once the client's capabilities allow them and says so with `list_changed`.
#[test]
fn with_server_everything_pinning_monitor_replay_and_filtering_work() {
    let home = Home::with_policy(
        "p.rego",
        "package behavry.authz\nimport rego.v1\n\
         allow if input.action.type == \"read\"\n\
         deny if input.action.name == \"get-env\"\n\
         reasons contains \"get-env shows the server's environment\" if input.action.name == \"get-env\"\n\
         escalate if input.tool.new\n",
    );
    home.config("[wrap]\nfilter_denied_tools = true\n");
    let server = node_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    let server = server.to_str().unwrap_or("");
    let wrap = |extra: &[&str]| {
        let mut args = vec!["--name", "everything"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "node", server, "stdio"]);
        home.wrap(&args, &[])
    };
    let init = |w: &mut Wrapper, capabilities: serde_json::Value| {
        w.send(
            json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": capabilities,
            "clientInfo": {"name": "claude-code", "version": "2.0.0"}}}),
        );
        w.recv_id(&json!("init"));
        w.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    };

    // First run: the tools are pinned; get-env, denied whatever its arguments, is not shown.
    let mut w = wrap(&[]);
    init(&mut w, json!({}));
    w.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}));
    let listed = w.recv_id(&json!(2));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"echo"), "{listed}");
    assert!(!names.contains(&"get-env"), "{listed}");
    let echo = w.call(3, "echo", json!({"message": "hi"}));
    assert!(!is_error(&echo), "{echo}");
    let env = w.call(4, "get-env", json!({}));
    assert!(is_error(&env), "{env}");
    w.finish();

    // Second run, in monitor mode, by a client that can sample: the server adds a tool after
    // initialisation (list_changed), which pinning reports as added.
    let mut w = wrap(&["--monitor"]);
    init(&mut w, json!({"sampling": {}}));
    let added = w.stderr_until(&["everything/trigger-sampling-request added"]);
    assert!(added.contains("added"), "{added}");
    let env = w.call(5, "get-env", json!({}));
    assert!(!is_error(&env), "monitor mode forwards: {env}");
    w.finish();

    let tools = run(&mut home.command(&["tools", "everything", "--json"]));
    let pins: Vec<serde_json::Value> = String::from_utf8_lossy(&tools.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let state = |tool: &str| {
        pins.iter()
            .find(|p| p["tool"] == tool)
            .map(|p| p["state"].clone())
    };
    assert_eq!(state("echo"), Some(json!("trusted")));
    assert_eq!(state("trigger-sampling-request"), Some(json!("new")));

    let would = home.log(&["--would", "deny"]);
    assert_eq!(would.len(), 1);
    assert_eq!(would[0]["tool"], "get-env");

    // Replay: a candidate that lets get-env through changes exactly the two get-env calls.
    let candidate = home.path().join("candidate");
    std::fs::create_dir_all(&candidate).expect("candidate dir");
    chmod(&candidate, 0o755);
    let file = candidate.join("p.rego");
    std::fs::write(
        &file,
        "package behavry.authz\nimport rego.v1\nallow if input.action.type == \"read\"\n",
    )
    .expect("candidate");
    chmod(&file, 0o644);
    let replay = run(&mut home.command(&[
        "policy",
        "replay",
        "--policies",
        candidate.to_str().unwrap_or(""),
    ]));
    let text = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("2 of 3 recorded calls would be decided differently: deny → allow: 2"),
        "{text}"
    );

    // eval --mcp decides echo with the annotations the server listed (readOnlyHint), as the wrapper did.
    let request = home.path().join("echo.json");
    std::fs::write(
        &request,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    )
    .expect("request");
    let eval = run(&mut home.command(&[
        "policy",
        "eval",
        "--mcp",
        request.to_str().unwrap_or(""),
        "--server",
        "everything",
        "--json",
    ]));
    let decided: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap_or_default();
    assert_eq!(decided["decision"], "allow", "{eval:?}");
}
