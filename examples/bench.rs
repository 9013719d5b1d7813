//! What `behavry wrap` costs, measured against a direct connection in the same run.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- [--calls N] [--policy DIR]
//! ```
//!
//! Three setups talk to the same MCP server (an echo server in plain `python3`, no packages), so
//! the server's own cost is in all of them and the differences are what the wrapper adds:
//!
//! - **direct**: this harness ↔ the server;
//! - **one rule**: ↔ `behavry wrap` with a single `allow` rule;
//! - **base**: ↔ `behavry wrap` with the shipped `policies/base` (what users run).
//!
//! Every call is a `read_file` of a file inside the project (`CLAUDE_PROJECT_DIR`), allowed by
//! both policies, so each wrapped call is parsed, its path resolved, evaluated, committed to the
//! audit store, forwarded, and its outcome recorded. The setups are interleaved (call by call for
//! latency, batch by batch for throughput, alternating who goes first), so background load and CPU
//! frequency changes hit all of them alike. One table comes out:
//!
//! - round trip and added p50/p99, one call in flight;
//! - throughput with 16 calls in flight, and its ratio to direct;
//! - policy evaluation (`PolicySet::decide`, in this process) on the input the wrapper builds;
//! - a 16 MiB result: time ratio to direct, and the wrapper's peak RSS;
//! - the wrapper's idle RSS after the handshake, and start-up (spawn → `initialize` answered).
//!
//! It exits non-zero if any call was not answered by the server (a denied call, say): the figures
//! would not measure an allowed call. The binary is `target/release/behavry` next to this example,
//! or `BEHAVRY_BIN`; `--policy DIR` measures another base policy directory (for before/after).

// The report on stdout is what this example is for.
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use behavry::policy::PolicySet;
use serde_json::{json, Value};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The one-rule policy: allows reads, which every call of the benchmark is.
const ONE_RULE: &str =
    "package behavry.authz\n\nimport rego.v1\n\nallow if input.action.type == \"read\"\n";

/// A stdio MCP server in plain python3 (no packages): `read_file` answers with the path,
/// `read_blob {bytes}` with that many bytes of text.
const PYTHON_SERVER: &str = r#"
import json, sys
TOOLS = [
    {"name": "read_file", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
    {"name": "read_blob", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}},
]
out = sys.stdout
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if "id" not in msg or "method" not in msg:
        continue
    method, params = msg["method"], msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "echo", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "ping":
        result = {}
    elif method == "tools/call":
        args = params.get("arguments") or {}
        if params.get("name") == "read_blob":
            text = "x" * int(args.get("bytes", 1 << 20))
        else:
            text = "contents of " + str(args.get("path", ""))
        result = {"content": [{"type": "text", "text": text}]}
    else:
        out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                              "error": {"code": -32601, "message": "method not found"}}) + "\n")
        out.flush()
        continue
    out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    out.flush()
"#;

const IN_FLIGHT: usize = 16;
const BIG: u64 = 16 << 20;

struct Options {
    calls: usize,
    warmup: usize,
    pipelined: usize,
    evals: usize,
    big_calls: usize,
    starts: usize,
    policy: PathBuf,
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Printed with Display: `main() -> Result` would print the Debug form, quotes and escapes.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One way of reaching the server: direct, or wrapped with a policy directory.
struct Setup {
    label: &'static str,
    /// BEHAVRY_HOME for wrapped setups.
    home: Option<tempfile::TempDir>,
}

struct Env {
    behavry: PathBuf,
    server: Vec<String>,
    project: PathBuf,
    file: String,
}

impl Env {
    fn command(&self, setup: &Setup) -> Command {
        let mut cmd = match &setup.home {
            None => {
                let mut c = Command::new(&self.server[0]);
                c.args(&self.server[1..]);
                c
            }
            Some(home) => {
                let mut c = Command::new(&self.behavry);
                c.args(["wrap", "--name", "fs", "--"])
                    .args(&self.server)
                    .env("BEHAVRY_HOME", home.path());
                c
            }
        };
        cmd.env("CLAUDE_PROJECT_DIR", &self.project)
            .current_dir(&self.project);
        cmd
    }

    fn start(&self, setup: &Setup) -> Result<Session> {
        let mut s = Session::start(setup.label, &mut self.command(setup))?;
        s.handshake()?;
        Ok(s)
    }
}

fn run() -> Result<()> {
    let Some(opts) = parse_args()? else {
        return Ok(());
    };
    let behavry = support::behavry_binary()?;
    let project = tempfile::tempdir()?;
    std::fs::create_dir_all(project.path().join("src"))?;
    let file = project.path().join("src/main.rs");
    std::fs::write(&file, "fn main() {}\n")?;
    let server = vec![python()?, "-u".into(), "-c".into(), PYTHON_SERVER.into()];
    let env = Env {
        behavry: behavry.clone(),
        server,
        project: project.path().to_path_buf(),
        file: file.display().to_string(),
    };
    let base_files = rego_files(&opts.policy)?;
    let one_rule = vec![("one_rule.rego".to_owned(), ONE_RULE.to_owned())];
    let setups = [
        Setup {
            label: "direct",
            home: None,
        },
        Setup {
            label: "one rule",
            home: Some(home_with(&one_rule, opts.config.as_deref())?),
        },
        Setup {
            label: "base",
            home: Some(home_with(&base_files, opts.config.as_deref())?),
        },
    ];
    eprintln!(
        "bench: binary {}, base policy {}",
        behavry.display(),
        opts.policy.display()
    );

    // Start-up first, on fresh processes, before anything else warms the page cache unevenly.
    eprintln!("bench: start-up ({} starts per setup)", opts.starts);
    let mut starts: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    for i in 0..opts.starts {
        for k in order(i, setups.len()) {
            let t = Instant::now();
            let s = env.start(&setups[k])?;
            starts[k].push(t.elapsed());
            s.finish()?;
        }
    }

    let mut sessions: Vec<Session> = setups.iter().map(|s| env.start(s)).collect::<Result<_>>()?;
    let idle: Vec<Option<f64>> = sessions.iter().map(|s| s.wrapper_rss("VmRSS")).collect();

    eprintln!(
        "bench: latency ({} calls per setup, one in flight)",
        opts.calls
    );
    let mut latency: Vec<Vec<Duration>> = vec![Vec::with_capacity(opts.calls); setups.len()];
    // A ping is relayed, not governed: its added time is the relay alone (two more pipe hops
    // and thread wake-ups), the floor under every governed call.
    let mut pings: Vec<Vec<Duration>> = vec![Vec::with_capacity(opts.calls); setups.len()];
    for i in 0..opts.warmup + opts.calls {
        for k in order(i, sessions.len()) {
            let (response, elapsed) = sessions[k].request("tools/call", read_call(&env.file))?;
            check_answer(sessions[k].label, &response, "contents of ")?;
            let (pong, ping) = sessions[k].request("ping", json!({}))?;
            if pong.get("result").is_none() {
                return Err(format!("{}: ping was not answered: {pong}", sessions[k].label).into());
            }
            if i >= opts.warmup {
                latency[k].push(elapsed);
                pings[k].push(ping);
            }
        }
    }

    eprintln!(
        "bench: throughput ({} calls per setup, {IN_FLIGHT} in flight)",
        opts.pipelined
    );
    let rounds = 8;
    let mut busy = vec![Duration::ZERO; setups.len()];
    for round in 0..rounds {
        for k in order(round, sessions.len()) {
            busy[k] += sessions[k].pipelined(opts.pipelined / rounds, &env.file)?;
        }
    }
    let per_round = (opts.pipelined / rounds * rounds) as f64;
    let throughput: Vec<f64> = busy.iter().map(|b| per_round / b.as_secs_f64()).collect();
    for s in sessions {
        s.finish()?;
    }

    eprintln!(
        "bench: {} MiB results ({} per setup, fresh processes)",
        BIG >> 20,
        opts.big_calls
    );
    let mut sessions: Vec<Session> = setups.iter().map(|s| env.start(s)).collect::<Result<_>>()?;
    let mut big: Vec<Vec<Duration>> = vec![Vec::new(); setups.len()];
    for i in 0..opts.big_calls {
        for k in order(i, sessions.len()) {
            let (response, elapsed) = sessions[k].request(
                "tools/call",
                json!({"name": "read_blob", "arguments": {"bytes": BIG}}),
            )?;
            let text = response
                .pointer("/result/content/0/text")
                .and_then(Value::as_str);
            if text.map(str::len) != Some(BIG as usize) {
                return Err(
                    format!("{}: the big result did not arrive whole", sessions[k].label).into(),
                );
            }
            big[k].push(elapsed);
        }
    }
    let peak: Vec<Option<f64>> = sessions.iter().map(|s| s.wrapper_rss("VmHWM")).collect();
    for s in sessions {
        s.finish()?;
    }

    eprintln!(
        "bench: policy evaluation ({} per policy, in this process)",
        opts.evals
    );
    let input = wrapper_input(&env)?;
    let mut evals: Vec<Option<Stats>> = vec![None];
    for files in [&one_rule, &base_files] {
        let set = PolicySet::from_sources(files, Duration::from_secs(1));
        if let Some(e) = set.error() {
            return Err(format!("the policy does not compile: {e}").into());
        }
        let verdict = set.decide(&input);
        if verdict.decision != behavry::policy::Decision::Allow {
            return Err(
                format!("the policy does not allow the benchmark's call: {verdict:?}").into(),
            );
        }
        let mut times = Vec::with_capacity(opts.evals);
        for _ in 0..opts.evals {
            let t = Instant::now();
            std::hint::black_box(set.decide(std::hint::black_box(&input)));
            times.push(t.elapsed());
        }
        evals.push(Stats::of(&mut times));
    }

    eprintln!(
        "bench: audit commit ({} decisions, in this process)",
        opts.evals
    );
    let commits = commit_times(&input, opts.evals)?;

    let stats = |v: &mut Vec<Vec<Duration>>| -> Vec<Stats> {
        v.iter_mut().filter_map(|t| Stats::of(t)).collect()
    };
    let table = Table {
        labels: setups.iter().map(|s| s.label).collect(),
        latency: stats(&mut latency),
        pings: stats(&mut pings),
        commits,
        throughput,
        evals,
        big: stats(&mut big),
        peak,
        idle,
        starts: stats(&mut starts),
    };
    println!(
        "behavry bench (python3 echo server): {} round trips, {} pipelined calls, {} × {} MiB, {} starts per setup",
        opts.calls,
        opts.pipelined / rounds * rounds,
        opts.big_calls,
        BIG >> 20,
        opts.starts
    );
    table.print();
    Ok(())
}

/// Commits `n` decisions like the benchmark's call (with its stored policy input) to a fresh
/// store, one transaction each, as the wrapper does with one call in flight.
fn commit_times(input: &Value, n: usize) -> Result<Stats> {
    let dir = tempfile::tempdir()?;
    let mut store = behavry::audit::Store::open(&dir.path().join("behavry.db"))?;
    let path = input
        .pointer("/resource/path")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let row = behavry::audit::DecisionRow {
        session_id: "bench".into(),
        server: "fs".into(),
        tool: "read_file".into(),
        method: "tools/call".into(),
        action_type: "read".into(),
        resource_path: Some(path.clone()),
        paths: vec![path],
        decision: "allow".into(),
        reasons: Vec::new(),
        arguments: input["action"]["arguments"].clone(),
        agent: "claude-code".into(),
        requester: "bench".into(),
        channel: "claude-code".into(),
        policy_hash: "bench".into(),
        request_id: "1".into(),
        resolution: None,
        enforced: true,
        input: Some(input.clone()),
        bundles: None,
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        store.record_decision(&row)?;
        times.push(t.elapsed());
    }
    Stats::of(&mut times).ok_or_else(|| "no commits measured".into())
}

/// The python3 interpreter itself: version-manager shims (pyenv) are shell scripts that would
/// add their own start-up to every setup.
fn python() -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("cannot run python3 (the benchmark's MCP server): {e}"))?;
    let exe = String::from_utf8(out.stdout)?.trim().to_owned();
    if !out.status.success() || exe.is_empty() {
        return Err("python3 did not say where its interpreter is".into());
    }
    Ok(exe)
}

/// The order in which setups take turn `i`: rotated, so none always goes first.
fn order(i: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + i) % n)
}

fn read_call(path: &str) -> Value {
    json!({"name": "read_file", "arguments": {"path": path}})
}

/// The input the wrapper builds for the benchmark's call (`behavry policy eval --print-input`).
fn wrapper_input(env: &Env) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let call = dir.path().join("call.json");
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": read_call(&env.file)});
    std::fs::write(&call, request.to_string())?;
    let out = Command::new(&env.behavry)
        .args(["policy", "eval", "--server", "fs", "--print-input", "--mcp"])
        .arg(&call)
        .env("BEHAVRY_HOME", dir.path())
        .env("CLAUDE_PROJECT_DIR", &env.project)
        .current_dir(&env.project)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "behavry policy eval --print-input failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut input: Value = serde_json::from_slice(&out.stdout)?;
    // The wrapper also knows the tool's annotations from tools/list.
    input["action"]["annotations"] = json!({"readOnlyHint": true});
    Ok(input)
}

fn rego_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        let name = path.display().to_string();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            files.push((name, std::fs::read_to_string(&path)?));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .rego files in {}", dir.display()).into());
    }
    Ok(files)
}

/// A BEHAVRY_HOME whose policy directory holds `files` (by their base names).
fn home_with(files: &[(String, String)], config: Option<&Path>) -> Result<tempfile::TempDir> {
    let home = tempfile::tempdir()?;
    let policies = home.path().join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, text) in files {
        let base = Path::new(name)
            .file_name()
            .ok_or("a policy file without a name")?;
        std::fs::write(policies.join(base), text)?;
    }
    if let Some(config) = config {
        std::fs::copy(config, home.path().join("config.toml"))?;
    }
    Ok(home)
}

fn check_answer(label: &str, response: &Value, prefix: &str) -> Result<()> {
    let text = response
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_error = response.pointer("/result/isError") == Some(&Value::Bool(true));
    if is_error || !text.starts_with(prefix) {
        return Err(format!(
            "{label}: the call was not answered by the server ({response}); the figures would not measure an allowed call"
        )
        .into());
    }
    Ok(())
}

/// `None` when `--help` was asked for.
fn parse_args() -> Result<Option<Options>> {
    let mut opts = Options {
        calls: 2000,
        warmup: 200,
        pipelined: 8000,
        evals: 5000,
        big_calls: 9,
        starts: 20,
        policy: Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/base"),
        config: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            println!(
                "usage: bench [--calls N] [--warmup N] [--pipelined N] [--evals N] [--big N] [--starts N]\n             \
                 [--policy DIR] [--config FILE]\n\n\
                 --calls N      round trips per setup, one in flight [default: 2000]\n\
                 --warmup N     unmeasured round trips first [default: 200]\n\
                 --pipelined N  calls per setup with {IN_FLIGHT} in flight [default: 8000]\n\
                 --evals N      policy evaluations per policy [default: 5000]\n\
                 --big N        16 MiB results per setup [default: 9]\n\
                 --starts N     start-ups per setup [default: 20]\n\
                 --policy DIR   the base policy directory [default: policies/base]\n\
                 --config FILE  config.toml for the wrapped setups (e.g. [audit] durability = \"full\")\n\n\
                 BEHAVRY_BIN=<path> overrides the binary (default: target/release/behavry)"
            );
            return Ok(None);
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<usize> {
            value
                .parse()
                .map_err(|e| format!("{flag} {value:?}: {e}").into())
        };
        match flag.as_str() {
            "--calls" => opts.calls = number()?,
            "--warmup" => opts.warmup = number()?,
            "--pipelined" => opts.pipelined = number()?,
            "--evals" => opts.evals = number()?,
            "--big" => opts.big_calls = number()?,
            "--starts" => opts.starts = number()?,
            "--policy" => opts.policy = PathBuf::from(&value),
            "--config" => opts.config = Some(PathBuf::from(&value)),
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
    }
    if opts.calls == 0
        || opts.pipelined < 8
        || opts.evals == 0
        || opts.big_calls == 0
        || opts.starts == 0
    {
        return Err(
            "--calls, --evals, --big and --starts must be at least 1, --pipelined at least 8"
                .into(),
        );
    }
    Ok(Some(opts))
}

/// One MCP client connection over a child's stdin/stdout.
struct Session {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    wrapped: bool,
}

impl Session {
    fn start(label: &'static str, command: &mut Command) -> Result<Session> {
        let wrapped = command.get_args().any(|a| a == "wrap");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Diagnostics (a policy that failed to load, say) should be seen, not swallowed.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {label} setup: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("the {label} setup's pipes were not created").into());
        };
        Ok(Session {
            label,
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(1 << 20, stdout),
            next_id: 1,
            wrapped,
        })
    }

    fn handshake(&mut self) -> Result<()> {
        let (init, _) = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1.0.0"},
            }),
        )?;
        if init.get("result").is_none() {
            return Err(format!("{}: initialize failed: {init}", self.label).into());
        }
        self.write_line(&format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        ))?;
        // The wrapper learns tool annotations from tools/list, as it would with a real client.
        let (tools, _) = self.request("tools/list", json!({}))?;
        if tools.pointer("/result/tools").is_none() {
            return Err(format!("{}: tools/list failed: {tools}", self.label).into());
        }
        Ok(())
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        stdin.write_all(line.as_bytes())?;
        // Without a flush the request could sit in our buffer and the timing would be meaningless.
        stdin.flush()?;
        Ok(())
    }

    fn line(&mut self, method: &str) -> Result<String> {
        let mut buf = String::new();
        if self.stdout.read_line(&mut buf)? == 0 {
            return Err(
                format!("the {} setup closed its stdout during {method}", self.label).into(),
            );
        }
        Ok(buf)
    }

    /// Sends one request and waits for its response; returns it with the round-trip time.
    fn request(&mut self, method: &str, params: Value) -> Result<(Value, Duration)> {
        let id = self.next_id;
        self.next_id += 1;
        // Serialised before the clock starts: only the round trip is measured.
        let line = format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        );
        let start = Instant::now();
        self.write_line(&line)?;
        loop {
            let buf = self.line(method)?;
            // Stamped before parsing, which only identifies the line.
            let elapsed = start.elapsed();
            let Ok(message) = serde_json::from_str::<Value>(&buf) else {
                continue;
            };
            if message.get("id") == Some(&json!(id)) {
                return Ok((message, elapsed));
            }
        }
    }

    /// Sends `n` read calls keeping [`IN_FLIGHT`] outstanding; returns the time until the last
    /// answer. A writer thread sends the next request as each answer arrives.
    fn pipelined(&mut self, n: usize, path: &str) -> Result<Duration> {
        let first = self.next_id;
        self.next_id += n as u64;
        let lines: Vec<String> = (first..first + n as u64)
            .map(|id| {
                format!(
                    "{}\n",
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": read_call(path)})
                )
            })
            .collect();
        let mut stdin = self.stdin.take().ok_or("stdin already closed")?;
        let (credit, credits) = mpsc::channel::<()>();
        let start = Instant::now();
        let writer = std::thread::spawn(move || -> std::io::Result<ChildStdin> {
            for (i, line) in lines.iter().enumerate() {
                if i >= IN_FLIGHT && credits.recv().is_err() {
                    break;
                }
                stdin.write_all(line.as_bytes())?;
                stdin.flush()?;
            }
            Ok(stdin)
        });
        let mut answered = 0;
        let mut result = Ok(());
        while answered < n {
            let buf = match self.line("tools/call") {
                Ok(buf) => buf,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let Ok(message) = serde_json::from_str::<Value>(&buf) else {
                continue;
            };
            if message.get("id").is_none() {
                continue;
            }
            if let Err(e) = check_answer(self.label, &message, "contents of ") {
                result = Err(e);
                break;
            }
            answered += 1;
            let _ = credit.send(());
        }
        let elapsed = start.elapsed();
        drop(credit);
        let stdin = writer.join().map_err(|_| "the writer thread panicked")??;
        self.stdin = Some(stdin);
        result.map(|()| elapsed)
    }

    /// A line of the wrapper's `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB; `None` direct.
    fn wrapper_rss(&self, field: &str) -> Option<f64> {
        if !self.wrapped {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// Closes stdin (the MCP way to end a stdio session) and waits for the process to exit.
    fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!("the {} setup exited with {status}", self.label).into());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                // A benchmark must not hang on a process that ignores EOF; say so and move on.
                self.child.kill()?;
                return Err(format!(
                    "the {} setup did not exit within 10 s of its stdin closing; killed it",
                    self.label
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Percentiles of one series, in microseconds.
struct Stats {
    p50: f64,
    p99: f64,
}

impl Stats {
    fn of(times: &mut [Duration]) -> Option<Stats> {
        if times.is_empty() {
            return None;
        }
        times.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Nearest-rank percentile: the smallest sample with at least p% of samples at or below it.
        let pct = |p: f64| {
            let rank = ((p / 100.0) * times.len() as f64).ceil() as usize;
            us(times[rank.clamp(1, times.len()) - 1])
        };
        Some(Stats {
            p50: pct(50.0),
            p99: pct(99.0),
        })
    }
}

struct Table {
    labels: Vec<&'static str>,
    latency: Vec<Stats>,
    pings: Vec<Stats>,
    commits: Stats,
    throughput: Vec<f64>,
    evals: Vec<Option<Stats>>,
    big: Vec<Stats>,
    peak: Vec<Option<f64>>,
    idle: Vec<Option<f64>>,
    starts: Vec<Stats>,
}

impl Table {
    fn print(&self) {
        let row = |name: &str, cells: Vec<String>| {
            let cells: String = cells.iter().map(|c| format!("{c:>12}")).collect();
            println!("{name:<40}{cells}");
        };
        let each = |f: &dyn Fn(usize) -> String| (0..self.labels.len()).map(f).collect::<Vec<_>>();
        // Differences of percentiles, not percentiles of per-call differences: the setups' calls
        // are independent samples, not pairs.
        let added = |k: usize, v: f64, d: f64| {
            if k == 0 {
                "–".to_owned()
            } else {
                format!("{:+.0}", v - d)
            }
        };
        let mib = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        row("", self.labels.iter().map(|l| l.to_string()).collect());
        row(
            "round trip p50 µs (1 in flight)",
            each(&|k| format!("{:.0}", self.latency[k].p50)),
        );
        row(
            "round trip p99 µs",
            each(&|k| format!("{:.0}", self.latency[k].p99)),
        );
        row(
            "added p50 µs",
            each(&|k| added(k, self.latency[k].p50, self.latency[0].p50)),
        );
        row(
            "added p99 µs",
            each(&|k| added(k, self.latency[k].p99, self.latency[0].p99)),
        );
        row(
            "ping added p50 µs (relayed, not governed)",
            each(&|k| added(k, self.pings[k].p50, self.pings[0].p50)),
        );
        row(
            &format!("throughput calls/s ({IN_FLIGHT} in flight)"),
            each(&|k| format!("{:.0}", self.throughput[k])),
        );
        row(
            "  ratio to direct",
            each(&|k| format!("{:.2}×", self.throughput[k] / self.throughput[0])),
        );
        row(
            "policy eval µs p50 / p99",
            each(&|k| {
                self.evals[k]
                    .as_ref()
                    .map_or("–".to_owned(), |s| format!("{:.1}/{:.0}", s.p50, s.p99))
            }),
        );
        row(
            "audit commit µs p50 / p99 (one decision)",
            each(&|k| {
                if k == 0 {
                    "–".to_owned()
                } else {
                    format!("{:.1}/{:.0}", self.commits.p50, self.commits.p99)
                }
            }),
        );
        row(
            &format!("{} MiB result ms p50", BIG >> 20),
            each(&|k| format!("{:.1}", self.big[k].p50 / 1000.0)),
        );
        row(
            "  ratio to direct",
            each(&|k| format!("{:.2}×", self.big[k].p50 / self.big[0].p50)),
        );
        row(
            "wrapper peak RSS MiB (after big results)",
            each(&|k| mib(self.peak[k])),
        );
        row(
            "wrapper idle RSS MiB (after handshake)",
            each(&|k| mib(self.idle[k])),
        );
        row(
            "start-up ms p50 (spawn → initialized)",
            each(&|k| format!("{:.1}", self.starts[k].p50 / 1000.0)),
        );
        row(
            "  added ms",
            each(&|k| {
                if k == 0 {
                    "–".to_owned()
                } else {
                    format!("{:+.1}", (self.starts[k].p50 - self.starts[0].p50) / 1000.0)
                }
            }),
        );
    }
}
