//! `behavry tools`: the tool definitions behavry pinned per server (see [`crate::pinning`]), what
//! changed in them, and trusting the new ones.

use std::io::{IsTerminal, Write};

use crate::audit::pins::{self, Listed};
use crate::audit::Store;
use crate::config::{os_user, Paths};
use crate::display::{elide_start, escape, pad};
use crate::pinning::{self, State};

/// List the tool definitions pinned per server, and whether they changed since they were trusted
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        behavry tools\n  \
        behavry tools fs\n  \
        behavry tools diff fs read_file\n  \
        behavry tools trust fs read_file\n\n\
        behavry pins every tool a wrapped server lists (by hash, per --name and command line). A tool \
        whose description, schema or annotations changed since it was trusted is `changed`, and the \
        base policy holds calls to it for approval until you trust it."
)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: Option<ToolsCommand>,
    /// Only this server's tools (its --name)
    server: Option<String>,
    /// One JSON object per tool
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum ToolsCommand {
    /// Show what changed in a tool since it was trusted (description and schema, line by line)
    Diff { server: String, tool: String },
    /// Accept a tool's current definition (or every changed, new or removed tool of SERVER);
    /// needs a terminal: an agent must not trust tools for you
    Trust {
        server: String,
        tool: Option<String>,
    },
}

pub fn run(args: ToolsArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let db = paths.database();
    if !db.exists() {
        anyhow::bail!(
            "no audit database yet at {} (tools are pinned when `behavry wrap` first lists them)",
            db.display()
        );
    }
    let mut store = Store::open(&db)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        None => list(&store, args.server.as_deref(), args.json, &mut out),
        Some(ToolsCommand::Diff { server, tool }) => diff(&store, &server, &tool, &mut out),
        Some(ToolsCommand::Trust { server, tool }) => {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "`behavry tools trust` must be run by a person in a terminal (stdin is not one)"
                );
            }
            let by = format!("{} via behavry tools trust", os_user());
            let trusted = pins::trust(&mut store, &server, tool.as_deref(), &by)?;
            if trusted.is_empty() {
                writeln!(
                    out,
                    "nothing to trust: every pinned tool of {} is trusted as listed",
                    escape(&server)
                )?;
                return Ok(if pins::list(&store, Some(&server))?.is_empty() {
                    1
                } else {
                    0
                });
            }
            for t in &trusted {
                let what = match t.state {
                    State::Removed => "forgotten (the server no longer lists it)",
                    _ => "trusted as it is listed now",
                };
                writeln!(out, "{}/{}: {what}", escape(&t.server), escape(&t.pin.tool))?;
            }
            Ok(0)
        }
    }
}

fn list(
    store: &Store,
    server: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let pinned = pins::list(store, server)?;
    if json {
        for p in &pinned {
            serde_json::to_writer(&mut *out, p)?;
            writeln!(out)?;
        }
        return Ok(0);
    }
    if pinned.is_empty() {
        writeln!(out, "no tools pinned yet")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<28}  {:<8}  {:<24}  {:<19}  COMMAND",
        "TOOL", "STATE", "CHANGED", "FIRST SEEN (UTC)"
    )?;
    for p in &pinned {
        writeln!(out, "{}", row(p))?;
    }
    let untrusted = pinned.iter().filter(|p| p.state != State::Trusted).count();
    if untrusted > 0 {
        writeln!(
            out,
            "\n{untrusted} not trusted: `behavry tools diff SERVER TOOL` shows what changed, \
             `behavry tools trust SERVER [TOOL]` accepts it"
        )?;
    }
    Ok(0)
}

fn row(p: &Listed) -> String {
    let changed = match p.state {
        State::Changed => p.changes.join(", "),
        _ => "-".into(),
    };
    format!(
        "{}  {}  {}  {:<19}  {}",
        pad(
            &elide_start(&format!("{}/{}", p.server, p.pin.tool), 28),
            28
        ),
        pad(p.state.as_str(), 8),
        pad(&changed, 24),
        p.pin
            .first_seen
            .get(..19)
            .unwrap_or(&p.pin.first_seen)
            .replace('T', " "),
        escape(&p.command.join(" "))
    )
}

fn diff(store: &Store, server: &str, tool: &str, out: &mut impl Write) -> anyhow::Result<i32> {
    let pinned: Vec<Listed> = pins::list(store, Some(server))?
        .into_iter()
        .filter(|p| p.pin.tool == tool)
        .collect();
    if pinned.is_empty() {
        anyhow::bail!(
            "no pinned tool {tool:?} of server {server:?}; `behavry tools {server}` lists them"
        );
    }
    for p in &pinned {
        writeln!(
            out,
            "{}/{} ({}), command: {}",
            escape(server),
            escape(tool),
            p.state.as_str(),
            escape(&p.command.join(" "))
        )?;
        writeln!(
            out,
            "- trusted {} by {} (hash {})",
            p.pin.trusted_at,
            escape(&p.pin.trusted_by),
            p.pin.trusted_hash.get(..12).unwrap_or("")
        )?;
        match &p.pin.current_definition {
            Some(current) => {
                writeln!(
                    out,
                    "+ listed since {} (hash {})\n",
                    p.pin.seen_at,
                    p.pin
                        .current_hash
                        .as_deref()
                        .and_then(|h| h.get(..12))
                        .unwrap_or("")
                )?;
                // The server wrote these texts: escaped line by line, so none can drive the terminal.
                for line in pinning::diff(&p.pin.trusted_definition, current).lines() {
                    writeln!(out, "{}", escape(line))?;
                }
            }
            None => writeln!(out, "+ no longer listed (since {})", p.pin.seen_at)?,
        }
    }
    Ok(0)
}
