//! `behavry approve`: the approver app, or with `--list` a plain listing of what is waiting.

use std::io::Write;

use super::ApproveArgs;
use crate::audit::Store;
use crate::config::{os_user, Config, Paths};
use crate::display::{elide_middle, elide_start, escape, pad};

pub fn run(args: ApproveArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let db = paths.database();
    if args.list {
        return list(&db, args.json);
    }
    // Without a terminal the app refuses anyway (and says so); with one, whose is it?
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        refuse_if_driven_by_an_agent(&paths)?;
    }
    let by = format!(
        "{} via behavry approve (pid {})",
        os_user(),
        std::process::id()
    );
    let config = Config::load(&paths.config_file())?.approve;
    let alerts = crate::tui::Alerts {
        bell: config.bell,
        title: config.title,
    };
    crate::tui::run(&db, &by, alerts)?;
    Ok(0)
}

/// Refuses to start when the approver's terminal is driven by an agent behavry knows (an agent
/// approving its own calls through `script` or a pseudo-terminal of its own); see
/// [`crate::hook::agents`] for what counts and the README for what this does not stop.
fn refuse_if_driven_by_an_agent(paths: &Paths) -> anyhow::Result<()> {
    use crate::hook::agents;
    let mut known = agents::registered(&agents::registry(&paths.data_dir));
    let db = paths.database();
    if db.exists() {
        // The clients of the wrappers holding calls: the agents those calls come from.
        let owners: Vec<_> = Store::open(&db)?
            .pending()?
            .into_iter()
            .map(|call| call.owner)
            .collect();
        known.extend(agents::clients_of(&owners));
    }
    match agents::driven_by_agent(std::process::id(), &known) {
        Some(driven) => anyhow::bail!(
            "behavry approve will not run here: {driven}. An agent must not approve its own calls; \
             run `behavry approve` in a terminal you opened yourself"
        ),
        None => Ok(()),
    }
}

fn list(db: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    if !db.exists() {
        if !json {
            writeln!(out, "nothing is waiting for approval")?;
        }
        return Ok(0);
    }
    let mut store = Store::open(db)?;
    let pending = store.pending()?;
    let recent = store.query(&crate::audit::LogFilter {
        limit: Some(200),
        ..Default::default()
    })?;
    let monitored = crate::audit::monitor::monitored_servers(&recent);
    if json {
        for call in &pending {
            serde_json::to_writer(&mut out, call)?;
            writeln!(out)?;
        }
        return Ok(0);
    }
    if let Some(banner) = crate::audit::monitor::banner(&monitored) {
        writeln!(out, "{banner}")?;
    }
    if pending.is_empty() {
        writeln!(out, "nothing is waiting for approval")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<6}  {:<19}  {:<28}  {:<7}  {:<30}  REASONS",
        "ID", "SINCE (UTC)", "TOOL", "TYPE", "PATH"
    )?;
    for call in &pending {
        // Client-controlled text, escaped so it cannot drive the terminal, padded by display width.
        writeln!(
            out,
            "{:<6}  {:<19}  {}  {}  {}  {}",
            call.id,
            call.ts.get(..19).unwrap_or(&call.ts).replace('T', " "),
            pad(
                &elide_start(&format!("{}/{}", call.server, call.tool), 28),
                28
            ),
            pad(&escape(&call.action_type), 7),
            pad(
                &elide_middle(call.resource_path.as_deref().unwrap_or("-"), 30),
                30
            ),
            escape(&call.reasons.join("; "))
        )?;
    }
    writeln!(
        out,
        "\nrun `behavry approve` in a terminal to approve or deny them"
    )?;
    Ok(0)
}
