//! `behavry approve`: the approver app, or with `--list` a plain listing of what is waiting.

use std::io::Write;

use super::ApproveArgs;
use crate::audit::Store;
use crate::config::{os_user, Paths};

pub fn run(args: ApproveArgs) -> anyhow::Result<i32> {
    let db = Paths::resolve()?.database();
    if args.list {
        return list(&db, args.json);
    }
    let by = format!(
        "{} via behavry approve (pid {})",
        os_user(),
        std::process::id()
    );
    crate::tui::run(&db, &by)?;
    Ok(0)
}

fn list(db: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    if !db.exists() {
        if !json {
            writeln!(out, "nothing is waiting for approval")?;
        }
        return Ok(0);
    }
    let pending = Store::open(db)?.pending()?;
    if json {
        for call in &pending {
            serde_json::to_writer(&mut out, call)?;
            writeln!(out)?;
        }
        return Ok(0);
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
        writeln!(
            out,
            "{:<6}  {:<19}  {:<28}  {:<7}  {:<30}  {}",
            call.id,
            call.ts.get(..19).unwrap_or(&call.ts).replace('T', " "),
            format!("{}/{}", call.server, call.tool),
            call.action_type,
            call.resource_path.as_deref().unwrap_or("-"),
            call.reasons.join("; ")
        )?;
    }
    writeln!(
        out,
        "\nrun `behavry approve` in a terminal to approve or deny them"
    )?;
    Ok(0)
}
