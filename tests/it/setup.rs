//! Setting behavry up: `init`, `claude add/wrap/unwrap/status` on Claude Code's real config files
//! (in a temporary HOME and project directory), `demo`, completions and the man page, and what
//! `wrap` says when a server cannot start or ends on its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::{run, text, Home, Wrapper, BIN, WAIT};

/// A temporary HOME and project directory, with behavry's own home beside them.
struct Claude {
    home: Home,
    user: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Claude {
    fn new() -> Claude {
        Claude {
            home: Home::new(),
            user: tempfile::tempdir().expect("tempdir"),
            project: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn claude_json(&self) -> PathBuf {
        self.user.path().join(".claude.json")
    }

    fn mcp_json(&self) -> PathBuf {
        self.project.path().join(".mcp.json")
    }

    /// The project directory as Claude Code keys it in `projects` (symlinks resolved, like getcwd).
    fn project_key(&self) -> String {
        std::fs::canonicalize(self.project.path())
            .expect("canonical project dir")
            .display()
            .to_string()
    }

    fn behavry(&self, args: &[&str]) -> std::process::Output {
        let mut args_all = vec!["claude"];
        args_all.extend_from_slice(args);
        run(self
            .home
            .command(&args_all)
            .env("HOME", self.user.path())
            .env_remove("CLAUDE_CONFIG_DIR")
            .current_dir(self.project.path()))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.behavry(args);
        assert!(
            out.status.success(),
            "behavry claude {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(path: &Path) -> Value {
    serde_json::from_str(&read(path)).expect("valid JSON")
}

/// A `~/.claude.json` as Claude Code writes it (`JSON.stringify(…, null, 2)`), with state around
/// the servers that must survive every edit.
fn claude_json(project: &str) -> String {
    format!(
        r#"{{
  "numStartups": 12,
  "theme": "dark",
  "zeta": 1.50,
  "mcpServers": {{
    "fs": {{
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/tmp"
      ],
      "env": {{
        "TOKEN": "caf\u00e9 \"quoted\""
      }}
    }},
    "web": {{
      "type": "http",
      "url": "https://example.com/mcp",
      "headers": {{
        "Authorization": "Bearer x"
      }}
    }}
  }},
  "projects": {{
    "{project}": {{
      "allowedTools": [],
      "hasTrustDialogAccepted": true,
      "mcpServers": {{
        "git": {{
          "command": "uvx",
          "args": [
            "mcp-server-git"
          ]
        }}
      }}
    }}
  }},
  "userID": "abc"
}}"#
    )
}

#[test]
fn init_writes_config_and_policies_once_and_keeps_edits() {
    let home = tempfile::tempdir().expect("tempdir");
    let init = || {
        let out = run(Command::new(BIN)
            .arg("init")
            .env("BEHAVRY_HOME", home.path()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let first = init();
    let config = home.path().join("config.toml");
    assert!(
        first.contains(&format!("wrote    {}", config.display())),
        "{first}"
    );
    assert!(
        first.contains("behavry demo"),
        "says what to do next: {first}"
    );
    for policy in ["base.rego", "lib.rego"] {
        assert!(
            home.path().join("policies").join(policy).is_file(),
            "{policy}"
        );
    }
    // The written config is valid: the policy set loads with it.
    let check = run(Command::new(BIN)
        .args(["policy", "check"])
        .env("BEHAVRY_HOME", home.path()));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    std::fs::write(&config, "[agent]\nrole = \"ci\"\n").expect("edit config");
    std::fs::remove_file(home.path().join("policies/lib.rego")).expect("remove a policy");
    let second = init();
    assert!(second.contains("kept"), "{second}");
    assert_eq!(
        read(&config),
        "[agent]\nrole = \"ci\"\n",
        "an edit survives init"
    );
    assert!(
        !home.path().join("policies/lib.rego").exists(),
        "a policy set the user changed is left as it is"
    );
}

#[test]
fn wrap_then_unwrap_restores_claude_json_exactly() {
    let claude = Claude::new();
    let original = claude_json(&claude.project_key());
    std::fs::write(claude.claude_json(), &original).expect("write ~/.claude.json");

    let said = claude.ok(&["wrap"]);
    assert!(said.contains("fs: wrapped"), "{said}");
    assert!(said.contains("git: wrapped"), "{said}");
    assert!(
        said.contains("web: left alone: http server"),
        "http entries are left alone, and said so: {said}"
    );
    let wrapped = parse(&claude.claude_json());
    let fs = &wrapped["mcpServers"]["fs"];
    assert_eq!(fs["command"], json!(BIN));
    assert_eq!(
        fs["args"],
        json!([
            "wrap",
            "--name",
            "fs",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/tmp"
        ])
    );
    assert_eq!(fs["type"], "stdio");
    assert_eq!(fs["env"]["TOKEN"], "café \"quoted\"");
    let git = &wrapped["projects"][claude.project_key()]["mcpServers"]["git"];
    assert_eq!(
        git["args"],
        json!(["wrap", "--name", "git", "--", "uvx", "mcp-server-git"])
    );
    // Everything but the wrapped entries is byte for byte what it was.
    let text = read(&claude.claude_json());
    for kept in [
        "  \"zeta\": 1.50,\n",
        "\"TOKEN\": \"caf\\u00e9 \\\"quoted\\\"\"",
        &original[original.find("    \"web\"").expect("web")
            ..original.find("  \"projects\"").expect("projects")],
        "  \"userID\": \"abc\"\n}",
    ] {
        assert!(text.contains(kept), "{kept:?} kept in\n{text}");
    }
    assert_eq!(
        read(&claude.user.path().join(".claude.json.behavry.bak")),
        original,
        "the file before the edit is kept as a backup"
    );

    let status = claude.ok(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("user") && l.contains("fs") && l.contains(" wrapped")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("local") && l.contains("git") && l.contains(" wrapped")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("web") && l.contains("remote")),
        "{status}"
    );

    assert!(claude.ok(&["wrap"]).contains("already wrapped"));
    claude.ok(&["unwrap"]);
    assert_eq!(read(&claude.claude_json()), original);
}

#[test]
fn add_creates_entries_that_run_behind_behavry() {
    let claude = Claude::new();
    claude.home.policy("seed.rego", crate::common::SEED);
    claude.ok(&[
        "add",
        "mock",
        "--scope",
        "project",
        "--",
        BIN,
        "mock-server",
    ]);
    claude.ok(&["add", "local-one", "--", "srv", "--flag"]);
    claude.ok(&["add", "user-one", "--scope", "user", "--", "srv"]);

    let user = parse(&claude.claude_json());
    assert_eq!(
        user["projects"][claude.project_key()]["mcpServers"]["local-one"]["args"],
        json!(["wrap", "--name", "local-one", "--", "srv", "--flag"]),
        "local scope is the default, under projects[cwd]"
    );
    assert_eq!(
        user["mcpServers"]["user-one"]["args"],
        json!(["wrap", "--name", "user-one", "--", "srv"])
    );
    let again = claude.behavry(&["add", "user-one", "--scope", "user", "--", "srv"]);
    assert!(!again.status.success(), "a name is not added twice");

    // The project entry is what Claude Code will run: run it and call a tool through it.
    let entry = parse(&claude.mcp_json())["mcpServers"]["mock"].clone();
    let args: Vec<String> = serde_json::from_value(entry["args"].clone()).expect("args");
    let mut command = claude
        .home
        .program(entry["command"].as_str().expect("command"), &[]);
    command.args(&args);
    let mut wrapper = Wrapper::spawn(command);
    wrapper.initialize();
    let reply = wrapper.call(1, "read_file", json!({"path": "/tmp/x"}));
    assert_eq!(text(&reply), "contents of /tmp/x");
    let row = &claude.home.log(&[])[0];
    assert_eq!(
        (row["server"].as_str(), row["tool"].as_str()),
        (Some("mock"), Some("read_file"))
    );
}

#[test]
fn a_malformed_config_is_reported_and_left_untouched() {
    let claude = Claude::new();
    let broken = "{\n  \"mcpServers\": {\n    \"fs\": {\"command\": \"npx\",}\n  }\n}\n";
    std::fs::write(claude.claude_json(), broken).expect("write");
    for args in [
        &["wrap"][..],
        &["add", "x", "--scope", "user", "--", "srv"],
        &["status"],
    ] {
        let out = claude.behavry(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not valid JSON") && stderr.contains("left untouched"),
            "{stderr}"
        );
        assert_eq!(read(&claude.claude_json()), broken);
    }
    assert!(!claude.user.path().join(".claude.json.behavry.bak").exists());
}

#[test]
fn demo_shows_each_decision_and_the_escalation_times_out() {
    let out = run(Command::new(BIN).args(["demo", "--wait", "1"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "allow: contents of /home/me/notes.txt",
        "deny: behavry denied demo/write_file: a deny rule matched",
        "default deny",
        "escalate: held",
        "behavry approve",
        "deny: behavry denied demo/delete_file",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
}

#[test]
fn demo_escalation_can_be_approved_from_another_terminal() {
    let mut demo = Command::new(BIN)
        .args(["demo", "--wait", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let home = loop {
        let line = lines
            .next()
            .expect("the demo says how to approve")
            .expect("utf-8");
        if let Some(rest) = line.trim().strip_prefix("BEHAVRY_HOME=") {
            break PathBuf::from(rest.trim_end_matches(" behavry approve"));
        }
    };
    let mut store = behavry::audit::Store::open(&home.join("behavry.db")).expect("store");
    let pending = store.pending().expect("pending");
    assert_eq!(pending.len(), 1);
    assert!(store
        .resolve(
            pending[0].id,
            None,
            behavry::audit::store::Resolution::Approved,
            None,
            "tester"
        )
        .expect("resolve"));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let rest = rest.join("\n");
    assert!(rest.contains("allow: deleted /home/me/old.log"), "{rest}");
    let status = crate::common::wait_timeout(&mut demo, WAIT).expect("demo ends");
    assert!(status.success());
    assert!(!home.exists(), "the demo removes its temporary home");
}

#[test]
fn completions_and_man_page_print_to_stdout() {
    for (args, want) in [
        (&["completions", "bash"][..], "_behavry"),
        (&["completions", "zsh"], "#compdef behavry"),
        (&["man"], ".TH behavry"),
    ] {
        let out = run(Command::new(BIN).args(args));
        assert!(out.status.success(), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(want), "{args:?}: {stdout}");
    }
}

#[test]
fn wrap_without_the_separator_hints_at_it() {
    let out = run(Command::new(BIN).args(["wrap", "--name", "fs", "npx", "-y", "pkg"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("put `--` before the server command")
            && stderr.contains("behavry wrap --name fs -- npx -y pkg"),
        "{stderr}"
    );
}

#[test]
fn a_command_missing_from_path_shows_the_path_searched() {
    let home = Home::new();
    let out = run(home
        .command(&["wrap", "--", "no-such-mcp-server-here"])
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not found on PATH") && stderr.contains("\"/usr/bin:/bin\""),
        "{stderr}"
    );
}

#[test]
fn a_server_that_exits_at_once_is_said_so() {
    let home = Home::new();
    let mut wrapper = Wrapper::spawn(home.command(&["wrap", "--", "false"]));
    let status = crate::common::wait_timeout(&mut wrapper.child, WAIT).expect("behavry exits");
    assert_eq!(status.code(), Some(1));
    let stderr = wrapper.stderr_until(&["exited on its own"]);
    assert!(
        stderr.contains("the server `false` exited on its own (exit code 1)"),
        "{stderr}"
    );
}

#[test]
fn a_client_that_hangs_up_is_not_reported_as_a_server_exit() {
    let home = Home::new();
    let mut wrapper = home.wrap_mock();
    wrapper.initialize();
    let (code, stderr) = wrapper.finish();
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("exited on its own"), "{stderr}");
}

#[test]
fn a_hand_written_mcp_json_keeps_its_layout() {
    let claude = Claude::new();
    let original = "{\n\t\"mcpServers\": {\n\t\t\"a\": {\"command\": \"srv\", \"args\": [\"--x\"], \"env\": {\"K\": \"1\"}},\n\t\t\"b\": {\n\t\t\t\"command\": \"other\"\n\t\t}\n\t},\n\t\"note\": \"kept\"\n}\n";
    std::fs::write(claude.mcp_json(), original).expect("write .mcp.json");
    claude.ok(&["wrap", "--scope", "project", "a"]);
    let text = read(&claude.mcp_json());
    assert!(
        text.contains(&format!(
            "\t\t\"a\": {{\"command\": {}, \"args\": [\"wrap\", \"--name\", \"a\", \"--\", \"srv\", \"--x\"], \"env\": {{\"K\": \"1\"}}}},\n",
            json!(BIN)
        )),
        "a one-line entry stays on one line:\n{text}"
    );
    assert!(
        text.contains("\t\t\"b\": {\n\t\t\t\"command\": \"other\"\n\t\t}"),
        "{text}"
    );
    claude.ok(&["unwrap", "--scope", "project"]);
    assert_eq!(read(&claude.mcp_json()), original);
}
