//! `behavry export`: where the decision-log sinks stand (`status`) and sending what they lack
//! now (`flush`). The exporting itself is [`crate::export`]'s; the wrappers run it.

use std::io::Write;

use crate::audit::Store;
use crate::config::{Config, Paths};
use crate::policy::PolicySet;

/// Decision logs sent to the team's collector ([decision_log] in config.toml)
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    behavry export status\n  \
    behavry export status --json\n  \
    behavry export flush\n\n\
    Every wrapper sharing the database can export; one at a time holds the lease and sends the \
    journal records past each sink's cursor, at least once.")]
pub struct ExportArgs {
    #[command(subcommand)]
    command: ExportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ExportCommand {
    /// Per sink: its cursor, the records not sent yet, the last success and error; and which
    /// process holds the exporter lease
    Status {
        /// One JSON object per sink
        #[arg(long)]
        json: bool,
    },
    /// Send every record the sinks lack now, without waiting out a backoff; exits 1 if a sink
    /// did not take everything
    Flush,
}

pub fn run(args: ExportArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let config = Config::load(&paths.config_file())?;
    let log = &config.decision_log;
    if crate::export::sinks(log).is_empty() {
        anyhow::bail!(
            "no decision-log sink is configured; add [decision_log.otlp] endpoint = \"…\" or \
             [decision_log.opa] url = \"…\" to {}",
            paths.config_file().display()
        );
    }
    let db = paths.database();
    if !db.exists() {
        anyhow::bail!(
            "no audit database yet at {} (it is created when `behavry wrap` first runs)",
            db.display()
        );
    }
    let mut store = Store::open(&db)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ExportCommand::Status { json } => {
            let lease = store.export_lease()?;
            for sink in crate::export::status(&store, log)? {
                if json {
                    let mut value = serde_json::to_value(&sink)?;
                    let holder = lease.filter(|l| l.owner.is_alive()).map(|l| l.owner.pid);
                    value["lease_holder"] = serde_json::json!(holder);
                    serde_json::to_writer(&mut out, &value)?;
                    writeln!(out)?;
                    continue;
                }
                let never = || "never".to_owned();
                writeln!(out, "{} → {}", sink.sink, sink.url)?;
                writeln!(out, "  cursor:       {}", sink.cursor.last_acked_seq)?;
                writeln!(out, "  backlog:      {} records", sink.backlog)?;
                writeln!(out, "  sent:         {} records", sink.cursor.sent)?;
                let success = sink.cursor.last_success.clone().unwrap_or_else(never);
                writeln!(out, "  last success: {success}")?;
                if let (Some(error), Some(at)) =
                    (&sink.cursor.last_error, &sink.cursor.last_error_at)
                {
                    writeln!(
                        out,
                        "  last error:   {at}: {}",
                        crate::display::escape(error)
                    )?;
                }
            }
            if !json {
                match lease {
                    Some(l) if l.owner.is_alive() => {
                        writeln!(out, "exporting: behavry process {}", l.owner.pid)?
                    }
                    _ => writeln!(
                        out,
                        "exporting: no wrapper is running (the next `behavry wrap` sends the backlog)"
                    )?,
                }
            }
            Ok(0)
        }
        ExportCommand::Flush => {
            // The mask rule is the policy's: evaluate it with the set the wrappers enforce, the
            // team's bundles first (the local files alone would drop the team's mask).
            let dirs = [paths.policy_dir()];
            let eval_timeout = std::time::Duration::from_millis(config.wrap.eval_timeout_ms);
            let policy = match crate::pull::activate::Bundles::load(&config, &db) {
                None => PolicySet::load(&dirs, eval_timeout),
                Some(team) => team.compose(
                    crate::policy::source::scan(&dirs, crate::policy::source::Scan::ENFORCE),
                    eval_timeout,
                ),
            };
            let mut failed = false;
            for flushed in crate::export::flush(&mut store, log, Some(&policy))? {
                let sink = flushed.sink;
                match flushed.result {
                    Ok(sent) => writeln!(out, "{sink}: sent {sent} records")?,
                    Err(e) => {
                        failed = true;
                        writeln!(out, "{sink}: failed: {}", crate::display::escape(&e))?;
                    }
                }
            }
            Ok(i32::from(failed))
        }
    }
}
