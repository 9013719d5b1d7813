//! Save → enforced latency of policy hot reload, measured against a real `behavry wrap` of the
//! mock server.
//!
//! The policy file is replaced the way editors save (write a temporary file, rename it over the
//! policy), alternating between a policy that allows `echo` and one that denies it. The clock
//! starts when the rename returns and stops at the reply of the first `echo` call that shows the
//! new decision; calls are sent back to back in between.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/reload [--iterations 200] [--bin target/release/behavry]
//! ```

// The report on stdout is what this example is for.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ALLOW: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n";
const DENY: &str = "package behavry.authz\nimport rego.v1\ndeny if input.action.name == \"echo\"\n";

/// A reload that takes longer than this is reported as a failure, not waited for.
const GIVE_UP: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut iterations = 200usize;
    let mut bin: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => iterations = args.next().ok_or("--iterations N")?.parse()?,
            "--bin" => bin = Some(args.next().ok_or("--bin PATH")?.into()),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    // Examples live in target/<profile>/examples/; the binary one level up.
    let bin = match bin {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot locate the behavry binary; pass --bin")?
            .join("behavry"),
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found; run `cargo build --release --bins` first, or pass --bin",
            bin.display()
        )
        .into());
    }

    let home = tempfile::tempdir()?;
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies)?;
    std::fs::set_permissions(&policies, std::fs::Permissions::from_mode(0o755))?;
    let policy = policies.join("p.rego");
    save(&policy, ALLOW)?;

    let stderr = std::fs::File::create(home.path().join("wrap.log"))?;
    let mut child = Command::new(&bin)
        .args(["wrap", "--name", "mock", "--"])
        .arg(&bin)
        .arg("mock-server")
        .env("BEHAVRY_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut id = 0u64;
    let mut request = |method: &str, params: Value| -> Result<Value, Box<dyn std::error::Error>> {
        id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{msg}")?;
        stdin.flush()?;
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line)? == 0 {
                return Err("behavry closed its stdout".into());
            }
            let reply: Value = serde_json::from_str(&line)?;
            if reply["id"] == json!(id) {
                return Ok(reply);
            }
        }
    };
    request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "reload-bench", "version": "1"}}),
    )?;
    let mut allowed = || -> Result<bool, Box<dyn std::error::Error>> {
        let reply = request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}}),
        )?;
        Ok(reply.pointer("/result/isError") != Some(&Value::Bool(true)))
    };
    if !allowed()? {
        return Err("the initial allow policy is not in force".into());
    }

    let mut latencies = Vec::with_capacity(iterations);
    let mut calls = 0usize;
    for i in 0..iterations {
        let want_allowed = i % 2 == 1;
        let text = if want_allowed { ALLOW } else { DENY };
        let started = save(&policy, text)?;
        loop {
            calls += 1;
            if allowed()? == want_allowed {
                latencies.push(started.elapsed());
                break;
            }
            if started.elapsed() > GIVE_UP {
                return Err(format!("reload {i} not enforced after {GIVE_UP:?}").into());
            }
        }
        // Let the watcher go idle, so each save is measured on its own.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        ms(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    let mean = latencies.iter().map(|d| ms(*d)).sum::<f64>() / latencies.len() as f64;
    println!(
        "save → enforced over {} reloads (alternating allow/deny, {:.1} calls per reload):",
        latencies.len(),
        calls as f64 / latencies.len() as f64
    );
    println!(
        "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms   mean {:.1} ms   min {:.1} ms",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        ms(latencies[latencies.len() - 1]),
        mean,
        ms(latencies[0]),
    );
    Ok(())
}

/// Replaces `path` as editors do; returns when the rename happened.
fn save(path: &Path, text: &str) -> std::io::Result<Instant> {
    let tmp = path.with_file_name(".p.rego.swp");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)?;
    Ok(Instant::now())
}
