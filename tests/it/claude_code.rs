//! The real Claude Code (`@anthropic-ai/claude-code`, pinned in `tests/e2e/package-lock.json`) in
//! `-p` mode, with `behavry wrap` around `@modelcontextprotocol/server-filesystem` as its only MCP
//! server. The model is the scripted stand-in in [`crate::messages_api`] on 127.0.0.1: it decides
//! which tool is called, and what the model received is read back from its request log.
//!
//! Needs Node.js and npm (and tmux for the approver); fails (never skips) without them. Claude Code
//! takes seconds to start, so waits are generous; nothing here measures time.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::messages_api::{result_text, MessagesApi, ToolUse};
use serde_json::{json, Value};

/// How long one `claude -p` run may take before the test gives up on it.
pub(crate) const CLAUDE_WAIT: Duration = Duration::from_secs(180);

/// Reads and lists are allowed; writes to `locked.txt` are denied with a reason; other writes wait
/// for a person.
const POLICY: &str = r#"package behavry.authz
import rego.v1
locked if {
	input.action.type == "write"
	endswith(input.resource.path, "/locked.txt")
}
allow if input.action.type in {"read", "list", "search"}
deny if locked
reasons contains "locked.txt is read-only for agents" if locked
escalate if {
	input.action.type == "write"
	not locked
}
reasons contains "writes need a person" if {
	input.action.type == "write"
	not locked
}
"#;

/// One Claude Code run's world: its own HOME, BEHAVRY_HOME, project directory and model.
struct Setup {
    home: Home,
    user_home: tempfile::TempDir,
    _root_dir: tempfile::TempDir,
    /// The project directory (canonical: the filesystem server resolves symlinks).
    root: PathBuf,
    api: MessagesApi,
    /// When set, the frames between Claude Code and behavry are copied here (`client.log` what
    /// Claude Code sent, `server.log` what behavry answered).
    tap: Option<PathBuf>,
    /// Whether the wrapped server is [`ASKER`] rather than the filesystem server.
    asker: bool,
}

impl Setup {
    fn new() -> Setup {
        let home = Home::with_policy("test.rego", POLICY);
        let root_dir = tempfile::tempdir().expect("tempdir");
        let root = root_dir.path().canonicalize().expect("canonical root");
        Setup {
            home,
            user_home: tempfile::tempdir().expect("tempdir"),
            _root_dir: root_dir,
            root,
            api: MessagesApi::start(),
            tap: None,
            asker: false,
        }
    }

    /// Copies the MCP traffic of the run to files (see [`Setup::tap`]).
    fn tapped(mut self) -> Setup {
        self.tap = Some(self.home.path().join("tap"));
        self
    }

    /// Wraps [`ASKER`] (as `asker`) instead of the filesystem server.
    fn with_asker(mut self) -> Setup {
        self.asker = true;
        self
    }

    /// The MCP server's name in Claude Code (its tools are `mcp__<name>__<tool>`).
    fn name(&self) -> &'static str {
        if self.asker {
            "asker"
        } else {
            "fs"
        }
    }

    fn path(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    /// The `--mcp-config` file: one stdio server, behavry around the filesystem server (`fs`) or,
    /// [`Setup::with_asker`], around [`ASKER`] (`asker`).
    fn mcp_config(&self) -> PathBuf {
        let server: Vec<Value> = if self.asker {
            let script = self.home.path().join("asker.cjs");
            std::fs::write(&script, ASKER).expect("write the asker server");
            vec![json!("node"), json!(script)]
        } else {
            let fs = node_modules().join("@modelcontextprotocol/server-filesystem/dist/index.js");
            vec![json!("node"), json!(fs), json!(self.root)]
        };
        let mut wrap = vec![
            json!(BIN),
            json!("wrap"),
            json!("--name"),
            json!(self.name()),
        ];
        wrap.push(json!("--"));
        wrap.extend(server);
        let (command, args) = match &self.tap {
            None => (wrap[0].clone(), json!(wrap[1..])),
            Some(tap) => {
                std::fs::create_dir_all(tap).expect("tap dir");
                // tee copies each direction without buffering; the pipeline ends when Claude Code
                // closes its end.
                let script = r#"tee -a "$0/client.log" | "$@" | tee -a "$0/server.log""#;
                let mut args = vec![json!("-c"), json!(script), json!(tap)];
                args.extend(wrap);
                (json!("sh"), json!(args))
            }
        };
        let config = json!({"mcpServers": {self.name(): {
            "type": "stdio",
            "command": command,
            "args": args,
            "env": {"BEHAVRY_HOME": self.home.path(), "USER": "tester"},
        }}});
        let file = self.home.path().join("mcp.json");
        std::fs::write(&file, config.to_string()).expect("write mcp config");
        file
    }

    /// Starts `claude -p PROMPT` with only the `fs` server and `tools` allowed.
    fn spawn(&self, prompt: &str, tools: &[&str]) -> Run {
        let mut cmd = claude_command(self.user_home.path(), &self.api, &self.root);
        cmd.args(["-p", prompt, "--mcp-config"])
            .arg(self.mcp_config())
            .args(["--strict-mcp-config", "--allowedTools", &tools.join(",")])
            .env("BEHAVRY_HOME", self.home.path());
        Run::spawn(cmd)
    }

    /// What went on, for failure messages: Claude Code's output and the stand-in's request log.
    fn report(&self, run: &Finished) -> String {
        report(run, &self.api)
    }

    /// The `tool_result` the model got for the `n`th scripted call; fails with the whole story.
    fn tool_result(&self, n: usize, run: &Finished) -> Value {
        self.api.tool_result(n).unwrap_or_else(|| {
            panic!(
                "the model never got a result for call {n}\n{}",
                self.report(run)
            )
        })
    }
}

/// What went on, for failure messages: Claude Code's output and the stand-in's request log.
pub(crate) fn report(run: &Finished, api: &MessagesApi) -> String {
    format!(
        "claude exit: {:?}\n--- claude stderr ---\n{}\n--- claude stdout ---\n{}\n--- requests to the stand-in ---\n{}",
        run.code,
        run.stderr,
        // stream-json: one event a line; the first lists every tool and goes on for pages.
        run.stdout
            .lines()
            .map(|l| l.chars().take(1500).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n"),
        api.transcript()
    )
}

/// `claude` (with `-p` and its arguments still to add) isolated from the developer's own setup:
/// `user_home` as HOME, `api` as the model, stream-json on stdout, run in `cwd`.
pub(crate) fn claude_command(
    user_home: &std::path::Path,
    api: &MessagesApi,
    cwd: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(claude_code());
    cmd.args(["--output-format", "stream-json", "--verbose"])
        .current_dir(cwd)
        // Nothing from the developer's own setup: no real key, no real config, no proxy.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", user_home)
        .env("ANTHROPIC_BASE_URL", api.base_url())
        .env("ANTHROPIC_API_KEY", "dummy")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        // By default `claude -p` asks the model after at most 5 s even when an MCP server is
        // still connecting (its tools missing); behavry and node take longer on a busy machine.
        // Measured on 2.1.197: both variables are needed to make it wait.
        .env("MCP_CONNECTION_NONBLOCKING", "false")
        .env(
            "MCP_CONNECT_TIMEOUT_MS",
            CLAUDE_WAIT.as_millis().to_string(),
        )
        .env("MCP_TIMEOUT", CLAUDE_WAIT.as_millis().to_string())
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// A `claude -p` process.
pub(crate) struct Run {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

pub(crate) struct Finished {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Starts `cmd` (from [`claude_command`]) and collects its output.
    pub(crate) fn spawn(mut cmd: Command) -> Run {
        let mut child = cmd.spawn().expect("spawn claude");
        let stdout = reader(child.stdout.take());
        let stderr = reader(child.stderr.take());
        Run {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for Claude Code to exit (killing it after [`CLAUDE_WAIT`]).
    pub(crate) fn finish(mut self) -> Finished {
        let status = wait_timeout(&mut self.child, CLAUDE_WAIT);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        Finished {
            code: status.and_then(|s| s.code()),
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

/// An approver (`behavry approve`) in a tmux server of its own, so tests never touch the user's.
struct Approver {
    socket: String,
}

impl Approver {
    fn start(home: &Home, test: &str) -> Approver {
        let approver = Approver {
            socket: format!("behavry-claude-{}-{test}", std::process::id()),
        };
        let command = format!(
            "env BEHAVRY_HOME='{}' USER=tester '{BIN}' approve",
            home.path().display()
        );
        let status = approver
            .tmux(&[
                "new-session",
                "-d",
                "-s",
                "approve",
                "-x",
                "160",
                "-y",
                "40",
            ])
            .arg(command)
            .status()
            .unwrap_or_else(|e| panic!("this test needs tmux on PATH: {e}"));
        assert!(status.success(), "tmux new-session failed");
        approver
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]).args(args);
        cmd
    }

    fn screen(&self) -> String {
        let out = self
            .tmux(&["capture-pane", "-p", "-t", "approve"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows every one of `needles`, or Claude Code is gone.
    fn wait_for(&self, needles: &[&str], run: &mut Run) -> Result<String, String> {
        let start = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return Ok(screen);
            }
            if start.elapsed() > CLAUDE_WAIT || !run.running() {
                return Err(format!("the approver never showed {needles:?}:\n{screen}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &str) {
        let status = self.tmux(&["send-keys", "-t", "approve", keys]).status();
        assert!(status.is_ok_and(|s| s.success()), "tmux send-keys failed");
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]).output();
    }
}

impl Run {
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Setup {
    /// Waits until behavry holds one call for approval while Claude Code waits on it.
    fn held(&self, run: &mut Run) -> Result<behavry::audit::store::PendingCall, String> {
        let start = std::time::Instant::now();
        loop {
            if self.home.path().join("behavry.db").exists() {
                if let Some(call) = store(&self.home).pending().expect("pending").pop() {
                    return Ok(call);
                }
            }
            if start.elapsed() > CLAUDE_WAIT || !run.running() {
                return Err("no call was ever held for approval".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The journal records that refer to decision `id`, as (kind, body).
    fn journal(&self, id: i64) -> Vec<(String, Value)> {
        let db = rusqlite::Connection::open_with_flags(
            self.home.path().join("behavry.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the store");
        let mut stmt = db
            .prepare("SELECT kind, body FROM journal WHERE ref_seq = ?1 ORDER BY seq")
            .expect("journal query");
        stmt.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .expect("journal rows")
        .map(|r| {
            let (kind, body) = r.expect("journal row");
            (
                kind,
                serde_json::from_str(&body).unwrap_or(Value::String(body)),
            )
        })
        .collect()
    }

    /// The frames one side of the tap carried, parsed.
    fn tapped_frames(&self, file: &str) -> Vec<Value> {
        let tap = self.tap.as_ref().expect("a tapped setup");
        std::fs::read_to_string(tap.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn write_file(setup: &Setup, name: &str, content: &str) -> ToolUse {
    ToolUse::new(
        "mcp__fs__write_file",
        json!({"path": setup.path(name), "content": content}),
    )
}

/// The tools the runs on the filesystem server may call without a prompt from Claude Code.
const TOOLS: &[&str] = &["mcp__fs__read_text_file", "mcp__fs__write_file"];

#[test]
fn allowed_read_reaches_the_model() {
    let setup = Setup::new();
    std::fs::write(setup.root.join("hello.txt"), "hello from disk\n").expect("write");
    let read = ToolUse::new(
        "mcp__fs__read_text_file",
        json!({"path": setup.path("hello.txt")}),
    );
    setup.api.script(vec![read]);

    let run = setup.spawn("Read hello.txt", TOOLS).finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_ne!(result["is_error"], true, "{report}");
    assert!(result_text(&result).contains("hello from disk"), "{report}");
    assert_eq!(run.code, Some(0), "{report}");

    let rows = setup.home.log(&[]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (&rows[0]["tool"], &rows[0]["decision"], &rows[0]["outcome"]),
        (&json!("read_text_file"), &json!("allow"), &json!("ok"))
    );
    assert_eq!(rows[0]["resource_path"], setup.path("hello.txt"));
    // What Claude Code says about itself reaches the policy and the log.
    assert_eq!(rows[0]["agent"], "claude-code");
}

#[test]
fn denied_write_gives_the_model_the_reason() {
    let setup = Setup::new();
    std::fs::write(setup.root.join("locked.txt"), "original\n").expect("write");
    setup
        .api
        .script(vec![write_file(&setup, "locked.txt", "pwned")]);

    let run = setup.spawn("Overwrite locked.txt", TOOLS).finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_eq!(result["is_error"], true, "{report}");
    assert_eq!(
        result_text(&result),
        "behavry denied fs/write_file: locked.txt is read-only for agents",
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(setup.root.join("locked.txt")).expect("read"),
        "original\n"
    );
    let rows = setup.home.log(&[]);
    assert_eq!(rows[0]["decision"], "deny", "{rows:?}");
    assert_eq!(
        rows[0]["reasons"],
        json!(["locked.txt is read-only for agents"])
    );
}

#[test]
fn escalated_write_approved_through_the_store() {
    let setup = Setup::new();
    setup
        .api
        .script(vec![write_file(&setup, "notes.txt", "approved content")]);

    let mut run = setup.spawn("Write notes.txt", TOOLS);
    let call = match setup.held(&mut run) {
        Ok(call) => call,
        Err(why) => panic!("{why}\n{}", setup.report(&run.finish())),
    };
    assert_eq!(
        (call.server.as_str(), call.tool.as_str()),
        ("fs", "write_file")
    );
    assert_eq!(call.reasons, ["writes need a person"]);
    assert!(
        !setup.root.join("notes.txt").exists(),
        "held, not forwarded"
    );
    assert!(store(&setup.home)
        .resolve(
            call.id,
            Some(&call.request_hash),
            behavry::audit::store::Resolution::Approved,
            None,
            "tester via test",
        )
        .expect("resolve"));

    let run = run.finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_ne!(result["is_error"], true, "{report}");
    assert!(
        result_text(&result).contains("Successfully wrote to"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_to_string(setup.root.join("notes.txt")).expect("written"),
        "approved content"
    );
    let row = &setup.home.log(&[])[0];
    assert_eq!(
        (&row["decision"], &row["resolution"], &row["outcome"]),
        (&json!("escalate"), &json!("approved"), &json!("ok")),
        "{row}"
    );
}

#[test]
fn escalated_write_approved_in_the_terminal_app() {
    let setup = Setup::new();
    setup.api.script(vec![write_file(
        &setup,
        "tui.txt",
        "approved in the approver",
    )]);
    let approver = Approver::start(&setup.home, "tui");

    let mut run = setup.spawn("Write tui.txt", TOOLS);
    let shown = approver.wait_for(
        &[
            "1 call is waiting for approval",
            "write_file",
            "writes need a person",
            "tui.txt",
        ],
        &mut run,
    );
    if let Err(why) = shown {
        panic!("{why}\n{}", setup.report(&run.finish()));
    }
    approver.keys("a");

    let run = run.finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_ne!(result["is_error"], true, "{report}");
    assert_eq!(
        std::fs::read_to_string(setup.root.join("tui.txt")).expect("written"),
        "approved in the approver"
    );
    let row = &setup.home.log(&[])[0];
    assert_eq!(row["resolution"], "approved", "{row}");
    assert!(
        row["resolved_by"]
            .as_str()
            .is_some_and(|by| by.contains("behavry approve")),
        "{row}"
    );
}

/// `claude -p` answers every `elicitation/create` with `cancel` at once. Whether or not behavry
/// asks Claude Code about a held call, a cancelled form is no decision: the call stays held until a
/// person resolves it in `behavry approve` (here through its store).
#[test]
fn elicitation_cancelled_by_claude_code_leaves_the_call_held() {
    let setup = Setup::new().tapped();
    // Keepalives on the held call mark where behavry has done what it does when holding a call.
    setup.home.config("[wrap]\napproval_keepalive_secs = 1\n");
    setup.api.script(vec![write_file(
        &setup,
        "held.txt",
        "approved after cancel",
    )]);

    let mut run = setup.spawn("Write held.txt", TOOLS);
    let call = match setup.held(&mut run) {
        Ok(call) => call,
        Err(why) => panic!("{why}\n{}", setup.report(&run.finish())),
    };
    // Wait for a keepalive on the held call: anything behavry sends when it holds a call (a form)
    // went before it, and Claude Code's answer follows it within milliseconds.
    let keepalive = eventually_long(&mut run, || {
        setup
            .tapped_frames("server.log")
            .iter()
            .any(|f| f["method"] == "notifications/progress")
    });
    assert!(
        keepalive,
        "no keepalive on the held call\n{}",
        setup.report(&run.finish())
    );
    let forms: Vec<Value> = setup
        .tapped_frames("server.log")
        .into_iter()
        .filter(|f| f["method"] == "elicitation/create")
        .collect();
    // behavry puts a held call to a client that declared elicitation as one form.
    assert_eq!(forms.len(), 1, "{forms:?}\n{}", setup.report(&run.finish()));
    let answered = eventually_long(&mut run, || {
        let client = setup.tapped_frames("client.log");
        forms.iter().all(|form| {
            client
                .iter()
                .any(|f| f["id"] == form["id"] && f.get("method").is_none())
        })
    });
    assert!(
        answered,
        "Claude Code never answered {forms:?}\n{}",
        setup.report(&run.finish())
    );

    // The client offered forms; whatever it answered, the call is still held.
    let client = setup.tapped_frames("client.log");
    let init = client
        .iter()
        .find(|f| f["method"] == "initialize")
        .expect("Claude Code initialized");
    assert!(
        init.pointer("/params/capabilities/elicitation").is_some(),
        "{init}"
    );
    for form in &forms {
        let answer = client
            .iter()
            .find(|f| f["id"] == form["id"] && f.get("method").is_none())
            .expect("answered");
        assert_eq!(
            answer.pointer("/result/action"),
            Some(&json!("cancel")),
            "{answer}"
        );
    }
    let still = store(&setup.home).pending().expect("pending");
    assert_eq!(still.len(), 1, "a cancelled form is no decision: {still:?}");
    assert_eq!(still[0].id, call.id);
    assert!(!setup.root.join("held.txt").exists());

    assert!(store(&setup.home)
        .resolve(
            call.id,
            Some(&call.request_hash),
            behavry::audit::store::Resolution::Approved,
            None,
            "tester via test",
        )
        .expect("resolve"));
    let run = run.finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_ne!(result["is_error"], true, "{report}");
    assert_eq!(
        std::fs::read_to_string(setup.root.join("held.txt")).expect("written"),
        "approved after cancel"
    );

    // One resolution, by the person: the cancelled form left no decision in the journal.
    let journal = setup.journal(call.id);
    let resolutions: Vec<&Value> = journal
        .iter()
        .filter(|(kind, _)| kind == "resolution")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(resolutions.len(), 1, "{journal:?}");
    assert_eq!(resolutions[0]["resolution"], "approved", "{journal:?}");
    assert_eq!(resolutions[0]["by"], "tester via test", "{journal:?}");
    let verify = run_verify(&setup.home);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn run_verify(home: &Home) -> std::process::Output {
    run(&mut home.command(&["log", "--verify"]))
}

/// Polls `check` until it holds; gives up after [`CLAUDE_WAIT`] or when Claude Code exits.
fn eventually_long(run: &mut Run, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > CLAUDE_WAIT || !run.running() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A one-tool MCP server: `ask` (read-only) asks the client for input with `elicitation/create`
/// and answers the call with what the client said.
const ASKER: &str = r#"
const send = (m) => process.stdout.write(JSON.stringify(m) + "\n");
let call = null;
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line);
  if (m.method === "initialize") {
    send({ jsonrpc: "2.0", id: m.id, result: { protocolVersion: m.params.protocolVersion,
      capabilities: { tools: {} }, serverInfo: { name: "asker", version: "1.0.0" } } });
  } else if (m.method === "tools/list") {
    send({ jsonrpc: "2.0", id: m.id, result: { tools: [{ name: "ask",
      inputSchema: { type: "object" }, annotations: { readOnlyHint: true } }] } });
  } else if (m.method === "tools/call") {
    call = m.id;
    send({ jsonrpc: "2.0", id: "ask-1", method: "elicitation/create", params: {
      message: "Go ahead?", requestedSchema: { type: "object",
        properties: { ok: { type: "boolean" } } } } });
  } else if (m.id === "ask-1" && m.method === undefined) {
    send({ jsonrpc: "2.0", id: call, result: { content: [{ type: "text",
      text: "the client answered " + JSON.stringify(m.result ?? m.error) }] } });
  } else if (m.id !== undefined && m.method !== undefined) {
    send({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "method not found" } });
  }
});
"#;

/// A server's own `elicitation/create` reaches Claude Code through behavry, and Claude Code's
/// answer reaches the server under the server's id (`claude -p` cannot show a form: it cancels).
#[test]
fn a_servers_elicitation_reaches_claude_code_and_its_answer_the_server() {
    let setup = Setup::new().with_asker().tapped();
    setup
        .api
        .script(vec![ToolUse::new("mcp__asker__ask", json!({}))]);

    let run = setup.spawn("Ask me", &["mcp__asker__ask"]).finish();
    let result = setup.tool_result(0, &run);
    let report = setup.report(&run);
    assert_eq!(
        result_text(&result),
        r#"the client answered {"action":"cancel"}"#,
        "{report}"
    );
    let forms: Vec<Value> = setup
        .tapped_frames("server.log")
        .into_iter()
        .filter(|f| f["method"] == "elicitation/create")
        .collect();
    assert_eq!(forms.len(), 1, "{forms:?}\n{report}");
    assert_eq!(forms[0]["id"], "ask-1", "{report}");
    assert_eq!(forms[0]["params"]["message"], "Go ahead?", "{report}");
}
