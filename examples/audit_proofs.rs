//! Proofs that the audit trail loses nothing, run against the real binary:
//!
//! ```text
//! cargo build --release --bins --examples
//! cargo run --release --example audit_proofs -- kill9 [--runs 100]
//! cargo run --release --example audit_proofs -- concurrency [--wrappers 8] [--calls 1250]
//! ```
//!
//! `kill9`: a wrapper under steady traffic is SIGKILLed at a random moment, again and again, on
//! one database. After every run, every call the server received must have a committed decision
//! row, and `behavry log --verify` must pass.
//!
//! `concurrency`: several wrappers write at once while an approver resolves their escalations.
//! Every decision must be recorded once, none refused for a busy database, and the chain must
//! verify (no forks, no gaps).

// The report on stdout is what this example is for.
#![allow(clippy::print_stdout)]

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use behavry::audit::store::Resolution;
use behavry::audit::{LogFilter, Store};
use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const POLICY: &str =
    "package behavry.authz\nimport rego.v1\nallow if input.action.name == \"echo\"\n\
                      escalate if input.action.name == \"delete_file\"\n";

fn wrapper(bin: &Path, home: &Path, name: &str, mock_log: &Path) -> Result<Child> {
    Ok(Command::new(bin)
        .args(["wrap", "--name", name, "--"])
        .arg(bin)
        .arg("mock-server")
        .env("BEHAVRY_HOME", home)
        .env("BEHAVRY_MOCK_LOG", mock_log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?)
}

fn call(id: u64, tool: &str, text: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"{text}","path":"/tmp/{text}"}}}}}}"#
    ) + "\n"
}

fn verify(bin: &Path, home: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["log", "--verify"])
        .env("BEHAVRY_HOME", home)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!("verify failed: {text}").into());
    }
    Ok(text)
}

/// A small xorshift generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn kill9(runs: usize) -> Result<()> {
    let bin = support::behavry_binary()?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("policies"))?;
    std::fs::write(home.path().join("policies/p.rego"), POLICY)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let (mut received_total, mut torn) = (0usize, 0usize);
    for run in 0..runs {
        let log = home.path().join(format!("mock-{run}.log"));
        let mut child = wrapper(&bin, home.path(), "kill9", &log)?;
        let mut stdin = child.stdin.take().ok_or("stdin")?;
        let stdout = child.stdout.take().ok_or("stdout")?;
        // Read answers so the pipes never fill; the answers themselves do not matter here.
        let reader = std::thread::spawn(move || BufReader::new(stdout).lines().count());
        let deadline = Instant::now() + Duration::from_millis(20 + rng.below(400));
        let mut id = 0u64;
        while Instant::now() < deadline {
            if stdin
                .write_all(call(id, "echo", &format!("r{run}c{id}")).as_bytes())
                .is_err()
            {
                break;
            }
            id += 1;
            if id % 8 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        child.kill()?;
        child.wait()?;
        drop(stdin);
        let _ = reader.join();
        // The server is killed with its wrapper (PR_SET_PDEATHSIG); wait until it has stopped
        // writing its log.
        std::thread::sleep(Duration::from_millis(20));

        let recorded: HashSet<String> = Store::open(&home.path().join("behavry.db"))?
            .query(&LogFilter {
                server: Some("kill9".into()),
                ..LogFilter::default()
            })?
            .into_iter()
            .filter_map(|row| {
                row.arguments
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            let Ok(msg) = serde_json::from_str::<Value>(line) else {
                torn += 1;
                continue;
            };
            if msg["method"] != "tools/call" {
                continue;
            }
            received_total += 1;
            let tag = msg
                .pointer("/params/arguments/text")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !recorded.contains(tag) {
                return Err(format!(
                    "run {run}: the server received {tag} but no decision row was committed"
                )
                .into());
            }
        }
        let verified = verify(&bin, home.path())?;
        if (run + 1) % 10 == 0 || run + 1 == runs {
            println!(
                "run {:>3}: sent {id:>5}, server received {received_total} in total, {verified}",
                run + 1
            );
        }
    }
    println!(
        "kill -9 proof: {runs} runs, {received_total} calls received by the server, every one with a committed decision row; \
         --verify passed after every run ({torn} torn server-log lines ignored)"
    );
    Ok(())
}

fn concurrency(wrappers: usize, calls: u64) -> Result<()> {
    let bin = support::behavry_binary()?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join("policies"))?;
    std::fs::write(home.path().join("policies/p.rego"), POLICY)?;
    let db = home.path().join("behavry.db");
    drop(Store::open(&db)?);
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The approver: resolves every escalation it sees, as `behavry approve` would.
    let approver = {
        let db = db.clone();
        let done = done.clone();
        std::thread::spawn(move || -> std::result::Result<usize, String> {
            let mut store = Store::open(&db).map_err(|e| e.to_string())?;
            let mut approved = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for call in store.pending().map_err(|e| e.to_string())? {
                    if store
                        .resolve(
                            call.id,
                            Some(&call.request_hash),
                            Resolution::Approved,
                            None,
                            "proof approver",
                        )
                        .map_err(|e| e.to_string())?
                    {
                        approved += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(approved)
        })
    };
    let mut threads = Vec::new();
    for w in 0..wrappers {
        let (bin, home_path) = (bin.clone(), home.path().to_path_buf());
        threads.push(std::thread::spawn(
            move || -> std::result::Result<(usize, usize), String> {
                let log = home_path.join(format!("mock-{w}.log"));
                let mut child =
                    wrapper(&bin, &home_path, &format!("w{w}"), &log).map_err(|e| e.to_string())?;
                let mut stdin = child.stdin.take().ok_or("stdin")?;
                let stdout = child.stdout.take().ok_or("stdout")?;
                let writer = std::thread::spawn(move || {
                    for id in 0..calls {
                        let tool = if id % 50 == 49 { "delete_file" } else { "echo" };
                        if stdin
                            .write_all(call(id, tool, &format!("w{w}c{id}")).as_bytes())
                            .is_err()
                        {
                            return;
                        }
                    }
                    // Keep stdin open until every answer is in; dropping it would start shutdown.
                    std::thread::sleep(Duration::from_secs(3600));
                });
                let (mut answered, mut busy) = (0usize, 0usize);
                for line in BufReader::new(stdout).lines() {
                    let line = line.map_err(|e| e.to_string())?;
                    if line.contains("could not record") {
                        busy += 1;
                    }
                    answered += 1;
                    if answered as u64 == calls {
                        break;
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                drop(writer);
                Ok((answered, busy))
            },
        ));
    }
    let (mut answered, mut refused) = (0, 0);
    for t in threads {
        let (a, b) = t.join().map_err(|_| "a wrapper thread panicked")??;
        answered += a;
        refused += b;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let approved = approver.join().map_err(|_| "the approver panicked")??;
    let elapsed = started.elapsed();
    let rows = Store::open(&db)?.query(&LogFilter::default())?;
    let distinct: HashSet<String> = rows
        .iter()
        .filter_map(|r| {
            r.arguments
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    let expected = wrappers * calls as usize;
    let verified = verify(&bin, home.path())?;
    println!(
        "concurrency proof: {wrappers} wrappers + 1 approver, {expected} calls in {:.1} s: {answered} answered, \
         {} decision rows ({} distinct), {approved} escalations approved, {refused} refused for a busy database; {verified}",
        elapsed.as_secs_f64(),
        rows.len(),
        distinct.len()
    );
    if rows.len() != expected || distinct.len() != expected || refused != 0 || answered != expected
    {
        return Err("lost, duplicated or refused decisions".into());
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let flag = |name: &str, default: u64| -> Result<u64> {
        match rest.iter().position(|a| a == name) {
            Some(i) => Ok(rest
                .get(i + 1)
                .ok_or(format!("{name} needs a number"))?
                .parse()?),
            None => Ok(default),
        }
    };
    match mode.as_str() {
        "kill9" => kill9(flag("--runs", 100)? as usize),
        "concurrency" => concurrency(flag("--wrappers", 8)? as usize, flag("--calls", 1250)?),
        _ => Err(
            "usage: audit_proofs kill9 [--runs N] | concurrency [--wrappers N] [--calls N]".into(),
        ),
    }
}
