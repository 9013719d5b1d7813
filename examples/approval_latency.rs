//! Measures keypress-to-forward latency of `behavry approve`: the time from pressing `a` in the
//! approver (running in a real terminal, tmux) to the held call's answer reaching the client.
//!
//! ```text
//! cargo build --release --examples
//! cargo run --release --example approval_latency -- [--calls N]
//! ```
//!
//! Each round: send an escalated `delete_file` call through `behavry wrap` (around the bundled
//! mock server), wait until the approver shows it, press `a` with `tmux send-keys`, and time until
//! the response arrives. The response includes the mock server's reply, well under a millisecond.

// The report on stdout is what this example is for.
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmux(socket: &str, args: &[&str]) -> Result<String, Box<dyn Error>> {
    let out = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut calls = 50usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => calls = args.next().ok_or("--calls needs a number")?.parse()?,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: approval_latency [--calls N]"
                )
                .into())
            }
        }
    }
    let bin = support::behavry_binary()?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("policies"))?;
    std::fs::write(
        home.path().join("policies/p.rego"),
        "package behavry.authz\nimport rego.v1\nallow if input.action.type != \"delete\"\nescalate if input.action.type == \"delete\"\n",
    )?;
    let socket = format!("behavry-bench-{}", std::process::id());
    let approve = format!(
        "env BEHAVRY_HOME='{}' '{}' approve",
        home.path().display(),
        bin.display()
    );
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "a",
            "-x",
            "140",
            "-y",
            "40",
            &approve,
        ],
    )?;

    let mut wrapper = Command::new(&bin)
        .args(["wrap", "--name", "bench", "--"])
        .arg(&bin)
        .arg("mock-server")
        .env("BEHAVRY_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = wrapper.stdin.take().ok_or("no stdin")?;
    let mut stdout = BufReader::new(wrapper.stdout.take().ok_or("no stdout")?);

    let mut samples = Vec::with_capacity(calls);
    let mut line = String::new();
    for i in 0..calls {
        let path = format!("/tmp/bench-{i}");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"delete_file","arguments":{{"path":"{path}"}}}}}}"#
        )?;
        stdin.flush()?;
        let shown = Instant::now();
        while !tmux(&socket, &["capture-pane", "-p", "-t", "a"])?.contains(&path) {
            if shown.elapsed() > Duration::from_secs(10) {
                return Err(format!("the approver never showed call {i}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let pressed = Instant::now();
        tmux(&socket, &["send-keys", "-t", "a", "a"])?;
        line.clear();
        stdout.read_line(&mut line)?;
        samples.push(pressed.elapsed());
        if !line.contains(&format!("deleted {path}")) {
            return Err(format!("call {i} was not approved: {line}").into());
        }
    }
    drop(stdin);
    wrapper.wait()?;
    let _ = tmux(&socket, &["kill-server"]);

    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("keypress-to-forward latency over {calls} approvals (tmux send-keys → response at the client)");
    println!(
        "p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1])
    );
    Ok(())
}
