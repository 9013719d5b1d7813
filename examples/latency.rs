//! Measures how much latency `behavry wrap` adds to a `tools/call` round trip.
//!
//! Two setups talk to the same tiny MCP server (`behavry mock-server`, whose `echo` tool answers at
//! once), so the server's own cost is the same in both and the difference is what the proxy adds:
//!
//! - **direct**: this harness ↔ `behavry mock-server`;
//! - **wrapped**: this harness ↔ `behavry wrap --name mock -- behavry mock-server`, in a temporary
//!   `BEHAVRY_HOME` whose policy allows `echo` (alongside seed-style deny and escalate rules, so the
//!   engine evaluates a realistic rule set). Every wrapped call is therefore parsed, evaluated by
//!   regorus, committed to the SQLite audit store, forwarded, and its outcome recorded.
//!
//! Each setup does the MCP handshake, some warmup calls, then N sequential round trips: write one
//! request line, read until the response with the same id. The two setups are interleaved call by
//! call (alternating which goes first), so background load and CPU frequency changes hit both
//! alike. It prints p50/p90/p99/max, mean and calls/s for each, then the added latency and the
//! wrapped/direct ratio at p50 and p99. It exits non-zero if any call was not answered with the
//! echoed text (for instance, if the policy denied it), since the figures would then be meaningless.
//!
//! Run it against a release build of the binary:
//!
//! ```text
//! cargo build --release && cargo run --release --example latency -- [--calls N] [--warmup N]
//! ```
//!
//! The binary is looked up next to the example (`target/release/behavry`), or taken from
//! `BEHAVRY_BIN`.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

const DEFAULT_CALLS: usize = 2000;
const DEFAULT_WARMUP: usize = 200;

/// Allows the benchmark's `echo` and keeps the seed policy's deny/escalate rules, so each decision
/// evaluates more than a single trivially true rule.
const POLICY: &str = r#"package behavry.authz

import rego.v1

allow if input.action.name == "echo"

# Deny write actions to production paths
deny if {
	input.action.type == "write"
	startswith(input.resource.path, "/prod/")
}

# Escalate file deletions
escalate if input.action.type == "delete"
"#;

/// The text `echo` sends back; a response without it was not served by the mock's tool.
const ECHO_TEXT: &str = "hello";

struct Options {
    calls: usize,
    warmup: usize,
    /// A config.toml for the wrapper (e.g. `[audit] durability = "full"`).
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Printed with Display: `main() -> Result` would print the Debug form, quotes and escapes.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(opts) = parse_args()? else {
        return Ok(());
    };
    let behavry = find_behavry()?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("policies"))?;
    std::fs::write(home.path().join("policies/allow.rego"), POLICY)?;
    if let Some(config) = &opts.config {
        std::fs::copy(config, home.path().join("config.toml"))?;
    }

    let mut direct = Session::start(
        "direct",
        Command::new(&behavry).arg("mock-server"),
        home.path(),
    )?;
    let mut wrapped = Session::start(
        "wrapped",
        Command::new(&behavry)
            .args(["wrap", "--name", "mock", "--"])
            .arg(&behavry)
            .arg("mock-server"),
        home.path(),
    )?;

    println!(
        "behavry latency: {} tools/call round trips per setup after {} warmup calls, interleaved",
        opts.calls, opts.warmup
    );
    println!("binary: {}", behavry.display());
    println!();

    for session in [&mut direct, &mut wrapped] {
        session.handshake()?;
    }
    let mut direct_times = Vec::with_capacity(opts.calls);
    let mut wrapped_times = Vec::with_capacity(opts.calls);
    // Calls not answered with the echo; a few examples are kept, not thousands of alike lines.
    let mut failed = 0usize;
    let mut examples: Vec<String> = Vec::new();
    for i in 0..opts.warmup + opts.calls {
        // Alternate who goes first so neither setup always runs right after the other one.
        let order = if i % 2 == 0 {
            [
                (&mut direct, &mut direct_times),
                (&mut wrapped, &mut wrapped_times),
            ]
        } else {
            [
                (&mut wrapped, &mut wrapped_times),
                (&mut direct, &mut direct_times),
            ]
        };
        for (session, times) in order {
            let (response, elapsed) = session.request(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": ECHO_TEXT}}),
            )?;
            if let Some(problem) = echo_problem(&response) {
                failed += 1;
                if examples.len() < 5 {
                    examples.push(format!("{} call {}: {problem}", session.label, i + 1));
                }
            }
            if i >= opts.warmup {
                times.push(elapsed);
            }
        }
    }

    let direct_status = direct.finish()?;
    let wrapped_status = wrapped.finish()?;

    let d = Stats::of(&mut direct_times).ok_or("no calls were measured (--calls 0)")?;
    let w = Stats::of(&mut wrapped_times).ok_or("no calls were measured (--calls 0)")?;
    print_report(&d, &w);

    if failed > 0 {
        return Err(format!(
            "{failed} of {} calls were not answered with the echoed text, so the figures above do \
             not measure an allowed call:\n  {}",
            2 * (opts.warmup + opts.calls),
            examples.join("\n  ")
        )
        .into());
    }
    for (label, status) in [("direct", direct_status), ("wrapped", wrapped_status)] {
        if !status.success() {
            return Err(format!("the {label} process exited with {status}").into());
        }
    }
    println!();
    println!(
        "all {} wrapped calls were allowed and answered by the server",
        opts.warmup + opts.calls
    );
    Ok(())
}

/// `None` when `--help` was asked for.
fn parse_args() -> Result<Option<Options>> {
    let mut opts = Options {
        calls: DEFAULT_CALLS,
        warmup: DEFAULT_WARMUP,
        config: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "--config" {
            let value = inline
                .or_else(|| args.next())
                .ok_or("--config needs a file")?;
            opts.config = Some(PathBuf::from(value));
            continue;
        }
        let target = match flag.as_str() {
            "--calls" => &mut opts.calls,
            "--warmup" => &mut opts.warmup,
            "-h" | "--help" => {
                println!(
                    "usage: latency [--calls N] [--warmup N] [--config FILE]\n\n\
                     --calls N   measured round trips per setup [default: {DEFAULT_CALLS}]\n\
                     --warmup N  unmeasured round trips first [default: {DEFAULT_WARMUP}]\n\
                     --config F  config.toml for the wrapped setup (e.g. [audit] durability = \"full\")\n\n\
                     BEHAVRY_BIN=<path> overrides the binary (default: target/release/behavry)"
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a number"))?;
        *target = value
            .parse()
            .map_err(|e| format!("{flag} {value:?}: {e}"))?;
    }
    if opts.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    Ok(Some(opts))
}

/// `BEHAVRY_BIN`, or the `behavry` built alongside this example (`target/<profile>/examples/..`).
fn find_behavry() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BEHAVRY_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(format!("BEHAVRY_BIN={} is not a file", bin.display()).into());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("behavry{}", std::env::consts::EXE_SUFFIX)))
        .ok_or("cannot tell where this example's executable lives; set BEHAVRY_BIN")?;
    if !bin.is_file() {
        return Err(format!(
            "{} not found; run `cargo build --release` first (or set BEHAVRY_BIN to a behavry binary)",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// One MCP client connection over a child's stdin/stdout.
struct Session {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Session {
    fn start(label: &'static str, command: &mut Command, home: &Path) -> Result<Session> {
        let mut child = command
            .env("BEHAVRY_HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Diagnostics (a policy that failed to load, say) should be seen, not swallowed.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {label} server: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("the {label} server's pipes were not created").into());
        };
        Ok(Session {
            label,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            next_id: 1,
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
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        // The proxy caches tool annotations from tools/list, as it would for a real client.
        let (tools, _) = self.request("tools/list", json!({}))?;
        if tools.pointer("/result/tools").is_none() {
            return Err(format!("{}: tools/list failed: {tools}", self.label).into());
        }
        Ok(())
    }

    fn send(&mut self, message: &Value) -> Result<()> {
        let line = format!("{message}\n");
        self.write_line(&line)
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        stdin.write_all(line.as_bytes())?;
        // Without a flush the request could sit in our buffer and the timing would be meaningless.
        stdin.flush()?;
        Ok(())
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
        let mut buf = String::new();
        let start = Instant::now();
        self.write_line(&line)?;
        loop {
            buf.clear();
            if self.stdout.read_line(&mut buf)? == 0 {
                return Err(format!(
                    "the {} server closed its stdout while {method} (id {id}) was pending",
                    self.label
                )
                .into());
            }
            // Stamped before parsing, which only identifies the line.
            let elapsed = start.elapsed();
            // Notifications, other ids and non-JSON noise are not the answer we wait for.
            let Ok(message) = serde_json::from_str::<Value>(&buf) else {
                continue;
            };
            if message.get("id") == Some(&json!(id)) {
                return Ok((message, elapsed));
            }
        }
    }

    /// Closes stdin (the MCP way to end a stdio session) and waits for the process to exit.
    fn finish(mut self) -> Result<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                // A benchmark must not hang on a process that ignores EOF; say so and move on.
                self.child.kill()?;
                return Err(format!(
                    "the {} process did not exit within 10 s of its stdin closing; killed it",
                    self.label
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Why `response` is not the mock's echo of [`ECHO_TEXT`], if it is not.
fn echo_problem(response: &Value) -> Option<String> {
    if let Some(error) = response.get("error") {
        return Some(format!("JSON-RPC error {error}"));
    }
    let text = response
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_error = response.pointer("/result/isError") == Some(&Value::Bool(true));
    if is_error || text.contains("behavry denied") || text != ECHO_TEXT {
        return Some(format!("unexpected result {}", response["result"]));
    }
    None
}

/// Summary of one setup's round-trip times, in microseconds.
struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
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
        let total: Duration = times.iter().sum();
        Some(Stats {
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: us(times[times.len() - 1]),
            mean: us(total) / times.len() as f64,
        })
    }

    /// Sequential calls: throughput is the inverse of the mean round trip.
    fn calls_per_second(&self) -> f64 {
        1e6 / self.mean
    }
}

fn print_report(d: &Stats, w: &Stats) {
    println!(
        "{:<10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "µs", "p50", "p90", "p99", "max", "mean", "calls/s"
    );
    for (label, s) in [("direct", d), ("wrapped", w)] {
        println!(
            "{label:<10}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.0}",
            s.p50,
            s.p90,
            s.p99,
            s.max,
            s.mean,
            s.calls_per_second()
        );
    }
    println!();
    // Differences of percentiles, not percentiles of per-call differences: the two setups' calls
    // are independent samples, not pairs.
    println!(
        "added by behavry (wrapped − direct):  p50 {:+.1} µs   p99 {:+.1} µs",
        w.p50 - d.p50,
        w.p99 - d.p99
    );
    println!(
        "ratio (wrapped / direct):             p50 {:.2}×     p99 {:.2}×",
        w.p50 / d.p50,
        w.p99 / d.p99
    );
}
