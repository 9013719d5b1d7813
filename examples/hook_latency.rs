//! Measures `behavry hook` as Claude Code runs it: a new process per tool call, one event on
//! stdin, until it exits. Uses the shipped policies in a temporary `BEHAVRY_HOME`.
//!
//! ```text
//! cargo build --release --bins --examples
//! cargo run --release --example hook_latency -- [--runs N]
//! ```
//!
//! Rows: process start alone (`behavry paths`), an `mcp__*` call (no opinion: start, config, exit),
//! loading and compiling the policies (`behavry policy check`), then PreToolUse Read, the
//! PostToolUse of that Read, and PreToolUse Bash (`rm -rf /prod/x`, a deny).

// A measuring tool: its report is its output.
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn event(name: &str, tool: &str, input: &str, id: &str) -> String {
    format!(
        r#"{{"session_id":"bench","transcript_path":"/nonexistent","cwd":"/home/dev/code","hook_event_name":"{name}","tool_name":"{tool}","tool_input":{input},"tool_use_id":"{id}","duration_ms":3}}"#
    )
}

/// Milliseconds per run, sorted.
fn measure(
    bin: &Path,
    home: &Path,
    args: &[&str],
    stdin: &str,
    runs: usize,
) -> Result<Vec<f64>, Box<dyn Error>> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 10 {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args(args)
            .env("BEHAVRY_HOME", home)
            .env("CLAUDE_PROJECT_DIR", "/home/dev/code")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(stdin.as_bytes())?;
        child.wait()?;
        if i >= 10 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut runs = 300;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            other => {
                return Err(
                    format!("unknown argument {other}; usage: hook_latency [--runs N]").into(),
                )
            }
        }
    }
    let bin = support::behavry_binary()?;
    let home = tempfile::tempdir()?;
    let policies = home.path().join("policies");
    std::fs::create_dir(&policies)?;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/base");
    for entry in std::fs::read_dir(base)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&path, policies.join(name))?;
        }
    }
    let read = r#"{"file_path":"/home/dev/code/src/main.rs"}"#;
    let cases = [
        ("start (behavry paths)", vec!["paths"], String::new()),
        (
            "hook, mcp__ tool (no opinion)",
            vec!["hook"],
            event("PreToolUse", "mcp__fs__x", "{}", "t0"),
        ),
        (
            "policy check (load + compile)",
            vec!["policy", "check"],
            String::new(),
        ),
        (
            "hook PreToolUse Read",
            vec!["hook"],
            event("PreToolUse", "Read", read, "t1"),
        ),
        (
            "hook PostToolUse (that Read)",
            vec!["hook"],
            event("PostToolUse", "Read", read, "t1"),
        ),
        (
            "hook PreToolUse Bash (deny)",
            vec!["hook"],
            event(
                "PreToolUse",
                "Bash",
                r#"{"command":"rm -rf /prod/x"}"#,
                "t2",
            ),
        ),
    ];
    println!("{runs} runs each (after 10 warm-up runs)");
    for (name, args, stdin) in cases {
        let t = measure(&bin, home.path(), &args, &stdin, runs)?;
        let at = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
        println!(
            "{name:<32} p50 {:6.2} ms  p90 {:6.2}  p99 {:6.2}  min {:5.2}",
            at(0.5),
            at(0.9),
            at(0.99),
            t[0]
        );
    }
    Ok(())
}
