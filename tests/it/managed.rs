//! Managed deployment: the system config an administrator installs, and
//! `behavry claude managed`, which writes Claude Code's managed files.

use serde_json::json;

use crate::common::*;

const ALLOW_ALL: &str = "package behavry.authz\nallow := true\n";

/// A system config in a root-owned directory of its own (tests run as root, as CI does).
fn system_config(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    chmod(dir.path(), 0o755);
    let file = dir.path().join("config.toml");
    std::fs::write(&file, text).expect("write system config");
    chmod(&file, mode);
    (dir, file)
}

#[test]
fn a_system_config_others_can_write_denies_every_call_saying_why() {
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let (_dir, file) = system_config("local = \"off\"\n", 0o666);
    let file = file.to_str().expect("utf-8 path");
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_SYSTEM_CONFIG", file)],
    );
    w.initialize();
    let warning = w.recv();
    assert_eq!(warning["method"], "notifications/message", "{warning}");
    let data = warning["params"]["data"].as_str().unwrap_or("");
    assert!(
        data.contains("every tool call will be denied") && data.contains("is refused"),
        "{data}"
    );
    let reply = w.call(2, "echo", json!({"text": "hi"}));
    assert!(is_error(&reply), "{reply}");
    assert!(
        text(&reply).contains("is refused") && text(&reply).contains("chmod go-w"),
        "{reply}"
    );
    let (_, stderr) = w.finish();
    assert!(
        stderr.contains("every governed call will be denied"),
        "{stderr}"
    );
    assert_eq!(home.log(&[])[0]["decision"], "deny");

    // Fixed, the same policies allow the call.
    chmod(std::path::Path::new(file), 0o644);
    let mut w = home.wrap(
        &["--name", "mock", "--", BIN, "mock-server"],
        &[("BEHAVRY_SYSTEM_CONFIG", file)],
    );
    w.initialize();
    let reply = w.call(2, "echo", json!({"text": "hi"}));
    assert!(!is_error(&reply), "{reply}");
}

#[test]
fn paths_shows_the_system_config() {
    let home = Home::new();
    let (_dir, file) = system_config("", 0o644);
    let out = run(home.command(&["paths"]).env("BEHAVRY_SYSTEM_CONFIG", &file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("system:   {} (in force)", file.display())),
        "{stdout}"
    );
}

/// `behavry claude managed` for one server (`mock`, the wrapped mock server) into `out`.
fn write_managed(home: &Home, out: &std::path::Path) {
    let team = home.path().join("team.toml");
    std::fs::write(
        &team,
        format!(
            "[servers.mock]\ncommand = [{BIN:?}, \"mock-server\"]\nenv = {{ BEHAVRY_HOME = {:?} }}\n",
            home.path().display().to_string()
        ),
    )
    .expect("write team.toml");
    let out = run(&mut home.command(&[
        "claude",
        "managed",
        "--servers",
        team.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("/etc/claude-code/managed-mcp.json"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/Library/Application Support/ClaudeCode/managed-settings.json"),
        "{stdout}"
    );
}

/// `claude mcp list` (which connects to every server it would use) with `files` in
/// `/etc/claude-code/`. The real /etc is never touched: Claude Code runs in a private mount
/// namespace where /etc is an overlay whose writes land in a temporary directory.
fn mcp_list_with_managed(files: &[std::path::PathBuf], user_home: &std::path::Path) -> String {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    std::fs::create_dir(&upper).expect("mkdir");
    std::fs::create_dir(&work).expect("mkdir");
    let script = r#"claude="$1" upper="$2" work="$3"; shift 3
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$upper,workdir=$work" /etc || exit 97
mkdir -p /etc/claude-code && cp "$@" /etc/claude-code/ && exec "$claude" mcp list"#;
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(claude_code())
        .args([&upper, &work])
        .args(files)
        .current_dir(user_home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", user_home)
        .env("ANTHROPIC_API_KEY", "dummy")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("MCP_TIMEOUT", "120000")
        .output()
        .expect(
            "cannot run `unshare` (util-linux): it gives Claude Code a private /etc/claude-code",
        );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(97),
        "mounting an overlay on /etc in a private mount namespace failed (needs root and \
         overlayfs): {stderr}"
    );
    assert!(out.status.success(), "claude mcp list failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn claude_code_runs_the_servers_of_the_generated_managed_mcp_json() {
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let out = home.path().join("managed");
    write_managed(&home, &out);
    let user_home = tempfile::tempdir().expect("tempdir");
    let listed = mcp_list_with_managed(&[out.join("managed-mcp.json")], user_home.path());
    let want = format!("mock: {BIN} wrap --name mock -- {BIN} mock-server - ✔ Connected");
    assert!(listed.contains(&want), "{listed}");
}

#[test]
fn claude_code_admits_exactly_the_wrapped_commands_of_managed_settings_json() {
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let out = home.path().join("managed");
    write_managed(&home, &out);
    // The user's own config: the wrapped server as generated, and the same server unwrapped.
    let user_home = tempfile::tempdir().expect("tempdir");
    let managed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("managed-mcp.json")).expect("read managed-mcp.json"),
    )
    .expect("JSON");
    let mut servers = managed["mcpServers"].clone();
    servers["unwrapped"] = json!({"type": "stdio", "command": BIN, "args": ["mock-server"]});
    std::fs::write(
        user_home.path().join(".claude.json"),
        json!({ "mcpServers": servers }).to_string(),
    )
    .expect("write .claude.json");
    let listed = mcp_list_with_managed(&[out.join("managed-settings.json")], user_home.path());
    assert!(
        listed.contains("mock: ") && listed.contains("✔ Connected"),
        "{listed}"
    );
    assert!(!listed.contains("unwrapped"), "{listed}");
}

/// Claude Code's own tools are decided by the team's bundle too: with only the local files
/// (which the agent can edit) deciding them, the team's policy would not hold for Bash or Write.
#[test]
fn the_hook_decides_with_the_team_bundle_not_the_local_files_alone() {
    let home = Home::with_policy("p.rego", ALLOW_ALL);
    let src = tempfile::tempdir().expect("tempdir");
    let archive = build_bundle(src.path(), "r1", &[("policy.rego", "package behavry.authz\nimport rego.v1\ndeny := true\nreasons contains \"the team says no\"\n")], &[]);
    home.config(&format!(
        "[bundles.org]\nurl = \"file://{}\"\n",
        archive.display()
    ));
    let fetched = run(&mut home.command(&["bundle", "fetch"]));
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let event = json!({
        "session_id": "sess-1", "transcript_path": "/nonexistent/transcript.jsonl",
        "cwd": "/tmp", "permission_mode": "default", "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_use_id": "tu-1",
    });
    let mut child = home
        .command(&["hook"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("behavry hook");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(event.to_string().as_bytes())
            .expect("write event");
    }
    let out = child.wait_with_output().expect("behavry hook");
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the hook answers JSON");
    let specific = &answer["hookSpecificOutput"];
    assert_eq!(specific["permissionDecision"], "deny", "{answer}");
    assert!(
        specific["permissionDecisionReason"]
            .as_str()
            .is_some_and(|r| r.contains("the team says no")),
        "{answer}"
    );
    let row = &home.log(&[])[0];
    assert_eq!(row["bundles"]["org"]["revision"], "r1", "{row}");
}

/// `wrap --monitor` would switch the team's policy off for one server: under a system config only
/// the administrator sets the mode, so the flag is ignored and the call is denied as enforced.
#[test]
fn monitor_flag_is_ignored_under_a_system_config() {
    let home = Home::with_policy("p.rego", "package behavry.authz\ndeny := true\n");
    let (_dir, file) = system_config("", 0o644);
    let file = file.to_str().expect("utf-8 path");
    let mut w = home.wrap(
        &["--name", "mock", "--monitor", "--", BIN, "mock-server"],
        &[("BEHAVRY_SYSTEM_CONFIG", file)],
    );
    w.initialize();
    let reply = w.call(2, "echo", json!({"text": "hi"}));
    assert!(is_error(&reply), "enforced, not monitored: {reply}");
    let (_, stderr) = w.finish();
    assert!(stderr.contains("--monitor is ignored"), "{stderr}");
    assert_eq!(home.log(&[])[0]["decision"], "deny");
}
