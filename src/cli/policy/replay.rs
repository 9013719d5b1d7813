//! `behavry policy replay`: evaluates a policy set against the calls recorded in the audit log
//! and shows what it would decide differently (see [`crate::policy::replay`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{dirs_or_default, eval_timeout, print_errors, require_dirs};
use crate::audit::Store;
use crate::config::Paths;
use crate::display::{elide_start, escape, pad};
use crate::policy::replay::{self, Report};
use crate::policy::PolicySet;

/// Replay recorded calls against a policy set and show which decisions would change
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry policy replay\n  \
    behavry policy replay --since 30d --server fs\n  \
    behavry policy replay --policies ./candidate --json\n\n\
    Every decision keeps the policy input it was made on (arguments redacted as in the log). Replay \
    evaluates the policies (default: the installed ones as they are on disk now) against those \
    inputs. Exit code 0 when no decision changes, 1 when some would: a policy change can be gated \
    in CI.")]
pub(super) struct ReplayArgs {
    /// Replay calls recorded within this age (30s, 15m, 1h, 7d)
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = crate::cli::log::parse_age)]
    since: Duration,
    /// Only calls to this server
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// Evaluate the policies in DIR instead of the policy directory (repeatable)
    #[arg(long = "policies", value_name = "DIR")]
    policies: Vec<PathBuf>,
    /// One JSON object per changed call
    #[arg(long)]
    json: bool,
}

pub(super) fn replay(args: ReplayArgs) -> anyhow::Result<i32> {
    let dirs = dirs_or_default(args.policies)?;
    if let Err(problem) = require_dirs(&dirs) {
        anyhow::bail!("{problem}");
    }
    let set = PolicySet::load(&dirs, eval_timeout()?);
    if !set.diagnostics().is_empty() {
        print_errors(set.diagnostics());
        anyhow::bail!("the policies do not compile, so there is nothing to replay against");
    }
    let Some(report) = run(&set, args.since, args.server.as_deref())? else {
        anyhow::bail!("no audit log yet (it is created when `behavry wrap` first runs)");
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        for c in &report.changed {
            serde_json::to_writer(&mut out, c)?;
            writeln!(out)?;
        }
    } else {
        print(&mut out, &report, 3)?;
    }
    Ok(if report.changed.is_empty() { 0 } else { 1 })
}

/// Replays the calls recorded within `since` (of `server`) against `set`; `None` when there is
/// no audit log.
pub(super) fn run(
    set: &PolicySet,
    since: Duration,
    server: Option<&str>,
) -> anyhow::Result<Option<Report>> {
    let db = Paths::resolve()?.database();
    if !db.exists() {
        return Ok(None);
    }
    let store = Store::open(&db)?;
    let since = crate::cli::log::ago(since, "--since")?;
    let recorded = crate::audit::inputs::recorded(&store, &since, server)?;
    Ok(Some(replay::replay(set, recorded)))
}

/// The summary, then each kind of change with up to `examples` calls.
pub(super) fn print(out: &mut impl Write, report: &Report, examples: usize) -> anyhow::Result<()> {
    writeln!(out, "{}", report.summary())?;
    for ((from, to), n) in report.counts() {
        writeln!(out, "\n  {from} → {to}: {n}")?;
        let shown = report
            .changed
            .iter()
            .filter(|c| c.recorded.decision == from && c.now == to)
            .take(examples);
        for c in shown {
            let r = &c.recorded;
            writeln!(
                out,
                "    #{:<6} {}  {}  {}",
                r.id,
                r.ts.get(..19).unwrap_or(&r.ts).replace('T', " "),
                pad(&elide_start(&format!("{}/{}", r.server, r.tool), 28), 28),
                escape(&c.reasons.join("; "))
            )?;
        }
    }
    Ok(())
}
