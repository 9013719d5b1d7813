//! `behavry log --events`: the journal records beside the decisions — policy reloads (applied and
//! rejected), client frames refused before evaluation, and each session's client. A table on a
//! terminal, JSON lines with `--json`; the decision log's JSON is untouched.

use std::io::Write;

use super::LogArgs;
use crate::audit::{EventEntry, EventFilter, Store};
use crate::display::{escape, pad};

pub fn run(args: LogArgs, store: &Store, since: Option<String>, json: bool) -> anyhow::Result<i32> {
    let default_limit = if json { None } else { Some(50) };
    let mut filter = EventFilter {
        server: args.server,
        session: args.session,
        since,
        after_seq: None,
        limit: args.limit.or(default_limit).filter(|&l| l > 0),
    };
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:<19}  {:<20}  {:<12}  {:<12}  DETAIL",
            "TIME (UTC)", "EVENT", "SERVER", "POLICY HASH"
        )?;
    }
    let rows = store.query_events(&filter)?;
    let mut last = print(&mut out, &rows, json)?;
    if !args.follow {
        return Ok(0);
    }
    filter.limit = None;
    if last.is_none() {
        last = store.last_seq()?;
    }
    loop {
        std::thread::sleep(super::log::FOLLOW_POLL);
        filter.after_seq = last;
        if let Some(id) = print(&mut out, &store.query_events(&filter)?, json)? {
            last = Some(id);
        }
    }
}

fn print(out: &mut impl Write, rows: &[EventEntry], json: bool) -> anyhow::Result<Option<i64>> {
    for row in rows {
        if json {
            serde_json::to_writer(&mut *out, row)?;
            writeln!(out)?;
        } else {
            let time = row.ts.get(..19).unwrap_or(&row.ts).replace('T', " ");
            let hash = row.policy_hash.as_deref().unwrap_or("-");
            // The server's name, a client's name and the reasons of refused frames are text
            // the agent or a server chose: escaped for the person's terminal (`--json` is exact).
            writeln!(
                out,
                "{time:<19}  {}  {}  {:<12}  {}",
                pad(&escape(&row.kind), 20),
                pad(&escape(&row.server), 12),
                hash.get(..12).unwrap_or(hash),
                escape(&summary(row))
            )?;
        }
    }
    out.flush()?;
    Ok(rows.last().map(|r| r.seq))
}

/// One line about the event: the errors of a rejected set, the file count of an applied one, why
/// a frame was refused, who a session's client was.
fn summary(row: &EventEntry) -> String {
    let text = |key: &str| {
        row.detail
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    match row.kind.as_str() {
        "refused_frame" => {
            let id = row
                .detail
                .get("request_id")
                .and_then(|v| v.as_str())
                .unwrap_or("none");
            let sha = text("sha256");
            return format!(
                "{}: {} (id {id}, {} bytes, sha256 {})",
                text("what"),
                text("reason"),
                row.detail.get("bytes").unwrap_or(&serde_json::Value::Null),
                sha.get(..12).unwrap_or(&sha)
            );
        }
        "tool_change" | "tool_trust" | "tools_hidden" => {
            // Tool names and descriptions are the server's text: inert before they are printed.
            let line = crate::pinning::event_summary(&row.kind, &row.detail);
            return crate::display::escape(&line).into_owned();
        }
        "bundle_activated" | "bundle_activation_failed" => {
            // The bundle's text (revision, errors) comes from the team's host: inert when printed.
            let errors = row
                .detail
                .get("errors")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let mut line = format!("bundle {} revision {}", text("bundle"), text("revision"));
            if let Some(signer) = row.detail.get("signer").and_then(|v| v.as_str()) {
                line.push_str(&format!(", signed by {signer}"));
            }
            if !errors.is_empty() {
                line.push_str(&format!(": {errors}"));
            }
            return crate::display::escape(&line).into_owned();
        }
        "session" => {
            return format!(
                "client {} {}, protocol {}",
                text("client_name"),
                text("client_version"),
                text("protocol_version")
            );
        }
        _ => {}
    }
    let list = |key: &str| {
        row.detail
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let errors = list("errors");
    if errors.is_empty() {
        match list("files").len() {
            1 => "1 file".to_owned(),
            n => format!("{n} files"),
        }
    } else {
        errors.join("; ")
    }
}
