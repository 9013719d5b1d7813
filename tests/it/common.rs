//! A small harness for running the real `behavry` binary in a temporary `BEHAVRY_HOME`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_behavry");

/// How long a test waits for a frame before it fails (generous: CI machines are shared).
pub const WAIT: Duration = Duration::from_secs(20);

/// The seed page's policy, verbatim.
pub const SEED: &str = include_str!("../../policies/examples/seed.rego");

/// A temporary BEHAVRY_HOME with policies and config.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("policies dir");
        // behavry refuses policies others can write; don't depend on the umask tests run under.
        chmod(&policies, 0o755);
        Home { dir }
    }

    pub fn with_policy(name: &str, text: &str) -> Home {
        let home = Home::new();
        home.policy(name, text);
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.path().join("policies")
    }

    pub fn policy(&self, name: &str, text: &str) {
        let path = self.policy_dir().join(name);
        std::fs::write(&path, text).expect("write policy");
        chmod(&path, 0o644);
    }

    /// Replaces a policy file the way editors save: a temporary file renamed over the old one.
    pub fn save_policy(&self, name: &str, text: &str) {
        let tmp = self.policy_dir().join(format!(".{name}.swp"));
        std::fs::write(&tmp, text).expect("write temporary file");
        chmod(&tmp, 0o644);
        std::fs::rename(&tmp, self.policy_dir().join(name)).expect("rename over the policy");
    }

    pub fn config(&self, text: &str) {
        std::fs::write(self.path().join("config.toml"), text).expect("write config");
    }

    pub fn mock_log(&self) -> PathBuf {
        self.path().join("mock.log")
    }

    /// Every line the mock server received.
    pub fn mock_received(&self) -> String {
        std::fs::read_to_string(self.mock_log()).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.program(BIN, args)
    }

    /// Any program, with this home's environment.
    pub fn program(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("BEHAVRY_HOME", self.path())
            .env("BEHAVRY_MOCK_LOG", self.mock_log())
            .env("USER", "tester")
            .env_remove("CLAUDE_PROJECT_DIR");
        cmd
    }

    /// `behavry log --json`, parsed.
    pub fn log(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["log", "--json"];
        args.extend_from_slice(extra);
        let out = self.command(&args).output().expect("behavry log");
        assert!(
            out.status.success(),
            "behavry log failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    /// `behavry log --events --json`, parsed: the policy reload events.
    pub fn events(&self) -> Vec<Value> {
        self.log(&["--events"])
    }

    /// Starts `behavry wrap --name mock -- behavry mock-server`.
    pub fn wrap_mock(&self) -> Wrapper {
        self.wrap(&["--name", "mock", "--", BIN, "mock-server"], &[])
    }

    pub fn wrap(&self, wrap_args: &[&str], env: &[(&str, &str)]) -> Wrapper {
        let mut args = vec!["wrap"];
        args.extend_from_slice(wrap_args);
        let mut cmd = self.command(&args);
        cmd.envs(env.iter().copied());
        Wrapper::spawn(cmd)
    }
}

/// `behavry bundle build` of `files` (name, text) at `revision`, rooted at `behavry`, with `extra`
/// arguments (signing): the archive is written beside its sources in `dir`.
pub fn build_bundle(dir: &Path, revision: &str, files: &[(&str, &str)], extra: &[&str]) -> PathBuf {
    let src = dir.join(format!("src-{revision}"));
    std::fs::create_dir_all(&src).expect("bundle source dir");
    for (name, text) in files {
        std::fs::write(src.join(name), text).expect("bundle source file");
    }
    let out = dir.join(format!("{revision}.tar.gz"));
    let built = Command::new(BIN)
        .args(["bundle", "build"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .args(["--revision", revision, "--root", "behavry"])
        .args(extra)
        .output()
        .expect("behavry bundle build");
    assert!(
        built.status.success(),
        "bundle build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// A running `behavry wrap`, driven line by line.
pub struct Wrapper {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Wrapper {
    pub fn spawn(mut cmd: Command) -> Wrapper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn behavry");
        let stdout = child.stdout.take().expect("stdout");
        let errors = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(errors).lines() {
                let Ok(line) = line else { return };
                let _ = etx.send(line);
            }
        });
        Wrapper {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to behavry");
        stdin.flush().expect("flush");
    }

    pub fn send(&mut self, msg: Value) {
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// Sends `initialize` (as Claude Code would) and `notifications/initialized`.
    pub fn initialize(&mut self) -> Value {
        self.initialize_with("2025-06-18")
    }

    /// `initialize` proposing `version` (the mock server accepts whatever it is offered).
    pub fn initialize_with(&mut self, version: &str) -> Value {
        self.send(
            json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "claude-code", "version": "2.0.0"}}}),
        );
        let reply = self.recv_id(&json!("init"));
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        reply
    }

    pub fn call(&mut self, id: i64, tool: &str, arguments: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}));
        self.recv_id(&json!(id))
    }

    /// The next line on behavry's stdout; every one must be a JSON object.
    pub fn recv_line(&mut self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a frame from behavry in time")
    }

    pub fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"))
    }

    /// The next frame with this id (frames for other ids are returned by later `recv`s no more;
    /// tests that interleave use `recv` directly).
    pub fn recv_id(&mut self, id: &Value) -> Value {
        loop {
            let v = self.recv();
            if v.get("id") == Some(id) {
                return v;
            }
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits for behavry to exit; returns its exit code.
    pub fn finish(mut self) -> (Option<i32>, String) {
        self.close_stdin();
        let status = wait_timeout(&mut self.child, WAIT).expect("behavry exits after stdin closes");
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status.code(), stderr.join("\n"))
    }

    /// Stderr from now until it contains every one of `needles` (or [`WAIT`] passes).
    pub fn stderr_until(&self, needles: &[&str]) -> String {
        let start = std::time::Instant::now();
        let mut seen = String::new();
        while !needles.iter().all(|n| seen.contains(n)) && start.elapsed() < WAIT {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        seen
    }
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The text of a tool result's first content item.
pub fn text(reply: &Value) -> &str {
    reply
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn is_error(reply: &Value) -> bool {
    reply.pointer("/result/isError") == Some(&Value::Bool(true))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run behavry")
}

/// The shared store, opened the way `behavry approve` opens it.
pub fn store(home: &Home) -> behavry::audit::Store {
    behavry::audit::Store::open(&home.path().join("behavry.db")).expect("open store")
}

/// Waits until `n` calls are waiting for approval, and returns them.
pub fn wait_pending(home: &Home, n: usize) -> Vec<behavry::audit::store::PendingCall> {
    let start = std::time::Instant::now();
    loop {
        if home.path().join("behavry.db").exists() {
            let pending = store(home).pending().expect("pending");
            if pending.len() == n {
                return pending;
            }
        }
        assert!(start.elapsed() < WAIT, "never saw {n} pending call(s)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- Real MCP peers (npm packages pinned in tests/e2e/package-lock.json) ----

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Installs the pinned packages once per test run.
pub fn node_modules() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = e2e_dir();
        let modules = dir.join("node_modules");
        let installed = [
            "@modelcontextprotocol/server-filesystem",
            "@modelcontextprotocol/server-everything",
        ]
        .iter()
        .all(|p| modules.join(p).join("package.json").exists());
        if !installed {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .unwrap_or_else(|e| {
                    panic!("the end-to-end tests need npm (Node.js >= 20) on PATH: {e}")
                });
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
        modules
    })
}

/// Runs the SDK client against `behavry wrap -- node server-filesystem <root>`.
pub fn run_client(home: &Home, root: &Path, calls: Value) -> Value {
    run_client_with(home, root, calls, json!({}))
}

/// [`run_client`] with more of the client's spec (`{"elicitation": [...]}`, see client.mjs).
pub fn run_client_with(home: &Home, root: &Path, calls: Value, more: Value) -> Value {
    let server = node_modules().join("@modelcontextprotocol/server-filesystem/dist/index.js");
    let mut spec = json!({
        "command": BIN,
        "args": ["wrap", "--name", "fs", "--", "node", server, root],
        "env": {
            "BEHAVRY_HOME": home.path(),
            "USER": "tester",
            "CLAUDE_PROJECT_DIR": root,
        },
        "calls": calls,
    });
    if let (Some(spec), Some(more)) = (spec.as_object_mut(), more.as_object()) {
        spec.extend(more.clone());
    }
    let spec_file = home.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write spec");
    let out = Command::new("node")
        .arg(e2e_dir().join("client.mjs"))
        .arg(&spec_file)
        .output()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client output {stdout:?}: {e}\n{stderr}"))
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Polls `check` every 20 ms until it holds or [`WAIT`] passes; returns whether it held.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The real Claude Code CLI from the pinned end-to-end packages (installed on first use).
pub fn claude_code() -> &'static Path {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(|| {
        let package = node_modules().join("@anthropic-ai/claude-code");
        if !package.join("package.json").exists() {
            // A node_modules that predates the Claude Code pin.
            npm_ci();
        }
        let bin = node_modules().join(".bin/claude");
        // The package ships a placeholder that its postinstall replaces with the native binary;
        // an npm that skipped install scripts leaves the placeholder.
        if !runs(&bin) {
            let _ = Command::new("node")
                .arg("install.cjs")
                .current_dir(&package)
                .status();
        }
        assert!(
            runs(&bin),
            "{} --version fails: run `node install.cjs` in {} (npm skipped its postinstall?)",
            bin.display(),
            package.display()
        );
        bin
    })
}

fn runs(bin: &Path) -> bool {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(bin)
        .arg("--version")
        .env("HOME", home.path())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn npm_ci() {
    let dir = e2e_dir();
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|e| panic!("the end-to-end tests need npm (Node.js >= 20) on PATH: {e}"));
    assert!(status.success(), "npm ci in {} failed", dir.display());
}
