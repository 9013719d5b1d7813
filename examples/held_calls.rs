//! What held calls cost while nobody approves them, and how fast an approval releases one.
//!
//! ```text
//! cargo run --release --example held_calls -- per-call [N]   # every held call polls its own row
//! cargo run --release --example held_calls -- waiter [N]     # one `approval::Waiter` for all
//! ```
//!
//! Records N (default 2,000) escalations in a temporary store, holds each with `approval::wait`
//! the way a wrapper does, and reports the process's CPU use over 10 idle seconds (getrusage, as a
//! share of one core), then approves 20 of them one at a time from a second connection (as
//! `behavry approve` does) and reports the time from the commit to the held call's release.

// An example prints its report; only the library must keep stdout clean.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::{Duration, Instant};

use behavry::approval::{self, Released, Timing, Waiter};
use behavry::audit::store::{Durability, Hold, Owner, Resolution};
use behavry::audit::{AuditHandle, DecisionRow, Store};
use tokio::sync::{mpsc, oneshot};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn row(i: usize) -> DecisionRow {
    DecisionRow {
        session_id: "bench".into(),
        server: "fs".into(),
        tool: "delete_file".into(),
        method: "tools/call".into(),
        action_type: "delete".into(),
        resource_path: Some(format!("/tmp/{i}")),
        paths: vec![format!("/tmp/{i}")],
        decision: "escalate".into(),
        reasons: vec!["deletes need a person".into()],
        arguments: serde_json::json!({"path": format!("/tmp/{i}")}),
        agent: "claude-code".into(),
        requester: "bench".into(),
        channel: "claude-code".into(),
        policy_hash: "bench".into(),
        request_id: i.to_string(),
        resolution: None,
        enforced: true,
        bundles: None,
        input: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("waiter");
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("behavry.db");
    let (audit, thread) = AuditHandle::open(&db, Durability::Normal);
    let mut ids = Vec::new();
    for i in 0..n {
        let hold = Hold {
            owner: Owner::current(),
            request_hash: format!("h{i}"),
            expires_at: "2999-01-01T00:00:00.000Z".into(),
        };
        ids.push(audit.record_escalation(row(i), hold).await?);
    }
    let timing = Timing {
        timeout: Duration::from_secs(3600),
        keepalive: Duration::from_secs(15),
    };
    let (released_tx, mut released) = mpsc::unbounded_channel::<(i64, Instant)>();
    let waiter = Waiter::start(audit.clone(), n);
    let mut cancels = Vec::new();
    for &id in &ids {
        let (cancel, rx) = oneshot::channel();
        cancels.push(cancel);
        let tx = released_tx.clone();
        let (audit, waiter, per_call) = (audit.clone(), waiter.clone(), mode == "per-call");
        tokio::spawn(async move {
            let got = if per_call {
                approval::wait(&audit, id, timing, rx, |_| {}).await
            } else {
                approval::wait(&waiter, id, timing, rx, |_| {}).await
            };
            if matches!(got, Released::Approved { .. }) {
                let _ = tx.send((id, Instant::now()));
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64() * 100.0;
    println!("{mode}: {n} held calls, idle CPU {cpu:.1}% of a core");

    let mut approver = Store::open(&db)?;
    let mut latencies = Vec::new();
    for &id in ids.iter().step_by((n / 20).max(1)).take(20) {
        let committed = {
            approver.resolve(id, None, Resolution::Approved, None, "bench")?;
            Instant::now()
        };
        let (got, at) = released.recv().await.ok_or("a held call vanished")?;
        assert_eq!(got, id);
        latencies.push(at.duration_since(committed).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{mode}: approve → release over {} approvals: median {:.1} ms, max {:.1} ms",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop(cancels);
    thread.finish();
    Ok(())
}
