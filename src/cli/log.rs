//! `behavry log`: reads the audit store. A table on a terminal, JSON lines with `--json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use ratatui::crossterm::style::Stylize;

use super::LogArgs;
use serde_json::Value;

use crate::audit::store::Stats;
use crate::audit::{LogEntry, LogFilter, Store};
use crate::config::Paths;
use crate::display::{elide_middle, elide_start, escape, pad};

/// How often `--follow` looks for new rows.
pub(super) const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people (coloured on a terminal)
    Table,
    /// One JSON object per line
    Json,
    /// Comma-separated values with a header row
    Csv,
}

pub fn run(args: LogArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let db = paths.database();
    if !db.exists() {
        anyhow::bail!(
            "no audit log yet at {} (it is created when `behavry wrap` first runs)",
            db.display()
        );
    }
    let mut store = Store::open(&db)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.verify {
        return Ok(match store.verify()? {
            Ok(records) => {
                let decisions = store.stats(None)?.total;
                writeln!(
                    out,
                    "ok: {}, {}",
                    count(decisions, "decision"),
                    count(records, "record")
                )?;
                0
            }
            Err(problem) => {
                writeln!(out, "verification failed at {problem}")?;
                1
            }
        });
    }
    if args.head {
        match store.head()? {
            Some((seq, hash)) => writeln!(out, "{seq} {hash}")?,
            None => writeln!(out, "0 {}", crate::audit::chain::ZERO)?,
        }
        return Ok(0);
    }
    if let (true, Some(age)) = (args.prune, args.before) {
        let before = ago(age, "--before")?;
        let config = crate::config::Config::load(&paths.config_file())?;
        let sinks = crate::export::sinks(&config.decision_log);
        let names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
        let exported = if args.force {
            None
        } else {
            store.least_exported(&names)?
        };
        let removed = store.prune_keeping(&before, exported)?;
        writeln!(out, "pruned {removed} records older than {before}")?;
        if let Some(exported) = exported.filter(|e| store.head_seq().is_ok_and(|h| h > *e)) {
            writeln!(
                out,
                "kept the records after {exported}: a decision-log sink has not received them yet \
                 (`behavry export status`; --force prunes them anyway)"
            )?;
        }
        return Ok(0);
    }
    let since = args.since.map(|age| ago(age, "--since")).transpose()?;
    if args.stats {
        let stats = store.stats(since.as_deref())?;
        if args.json || args.format == Some(Format::Json) {
            serde_json::to_writer(&mut out, &stats)?;
            writeln!(out)?;
        } else {
            print_stats(&mut out, &stats)?;
        }
        return Ok(0);
    }
    let format = if args.json {
        Format::Json
    } else {
        args.format.unwrap_or(Format::Table)
    };
    if args.events {
        if format == Format::Csv {
            anyhow::bail!("--events prints a table or JSON (--json), not CSV");
        }
        let json = format == Format::Json;
        return super::events::run(args, &store, since, json);
    }
    let default_limit = (format == Format::Table).then_some(50);
    let monitored = args.would.is_some();
    let mut filter = LogFilter {
        decision: args.decision.or(args.would),
        server: args.server,
        tool: args.tool,
        session: args.session,
        since,
        after_id: None,
        limit: args.limit.or(default_limit).filter(|&l| l > 0),
        enforced: monitored.then_some(false),
    };
    let colour =
        format == Format::Table && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let rows = store.query(&filter)?;
    if format == Format::Table {
        if let Some(session) = &filter.session {
            writeln!(out, "{}", session_line(session, store.session(session)?))?;
        }
        if rows.is_empty() && !args.follow {
            writeln!(out, "no decisions match")?;
            return Ok(0);
        }
    }
    match format {
        Format::Table => writeln!(out, "{}", header())?,
        Format::Csv => writeln!(out, "{}", CSV_FIELDS.join(","))?,
        Format::Json => {}
    }
    let mut last = print_rows(&mut out, &rows, format, colour)?;
    if !args.follow {
        return Ok(0);
    }
    filter.limit = None;
    if last.is_none() {
        last = store.last_id()?;
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        filter.after_id = last;
        let rows = store.query(&filter)?;
        if let Some(id) = print_rows(&mut out, &rows, format, colour)? {
            last = Some(id);
        }
    }
}

/// The stored timestamp of `age` ago.
pub(super) fn ago(age: Duration, flag: &str) -> anyhow::Result<String> {
    let too_large = || anyhow::anyhow!("{flag} is too large");
    let age = time::Duration::try_from(age).map_err(|_| too_large())?;
    let then = time::OffsetDateTime::now_utc()
        .checked_sub(age)
        .ok_or_else(too_large)?;
    Ok(crate::audit::store::format_ts(then))
}

fn print_stats(out: &mut impl Write, stats: &Stats) -> anyhow::Result<()> {
    writeln!(out, "{} decisions", stats.total)?;
    for (title, counts) in [
        ("decision", &stats.decision),
        ("resolution", &stats.resolution),
        ("server", &stats.server),
        ("tool", &stats.tool),
    ] {
        // No escalation was resolved (or nothing matched): no heading over nothing.
        if counts.is_empty() {
            continue;
        }
        writeln!(out, "\nby {title}:")?;
        for (key, count) in counts {
            writeln!(out, "  {count:>8}  {key}")?;
        }
    }
    Ok(())
}

/// `2 decisions`, `1 record`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Who the client of a session was, above its decisions.
fn session_line(id: &str, session: Option<crate::audit::SessionRecord>) -> String {
    let Some(s) = session else {
        return format!("session {id}: no session record (client unknown)");
    };
    // The client chose every one of these: escaped for the person's terminal.
    let opt = |v: &Option<String>| escape(v.as_deref().unwrap_or("?")).into_owned();
    format!(
        "session {}: client {} {}, protocol {}, capabilities {}",
        escape(id),
        opt(&s.client_name),
        opt(&s.client_version),
        opt(&s.protocol_version),
        escape(&s.capabilities.to_string())
    )
}

/// The columns of `--format csv`: the JSON fields, in this order.
const CSV_FIELDS: &[&str] = &[
    "ts",
    "session_id",
    "server",
    "tool",
    "method",
    "action_type",
    "resource_path",
    "decision",
    "resolution",
    "reasons",
    "outcome",
    "duration_ms",
    "policy_hash",
    "agent",
    "requester",
    "channel",
    "request_id",
    "resolved_by",
    "resolved_at",
    "enforced",
    "paths",
    "arguments",
];

/// One CSV row (RFC 4180: fields with commas, quotes or newlines are quoted).
fn csv_row(row: &LogEntry) -> String {
    let json = serde_json::to_value(row).unwrap_or_default();
    CSV_FIELDS
        .iter()
        .map(|field| {
            let cell = match &json[*field] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Array(items) if *field == "reasons" => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            if cell.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints rows; returns the last id printed.
fn print_rows(
    out: &mut impl Write,
    rows: &[LogEntry],
    format: Format,
    colour: bool,
) -> anyhow::Result<Option<i64>> {
    for row in rows {
        match format {
            Format::Json => {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
            Format::Csv => writeln!(out, "{}", csv_row(row))?,
            Format::Table => writeln!(out, "{}", table_row(row, colour))?,
        }
    }
    out.flush()?;
    Ok(rows.last().map(|r| r.id))
}

fn header() -> String {
    format!(
        "{:<19}  {:<8}  {:<16}  {:<24}  {:<7}  {:<30}  {:<8}  {:>7}  REASONS",
        "TIME (UTC)", "DECISION", "RESOLUTION", "TOOL", "TYPE", "PATH", "OUTCOME", "MS"
    )
}

fn table_row(row: &LogEntry, colour: bool) -> String {
    let time = row.ts.get(..19).unwrap_or(&row.ts).replace('T', " ");
    let decision_cell = pad(&escape(&row.decision), 8);
    let decision_cell = if !colour {
        decision_cell
    } else {
        match row.decision.as_str() {
            "allow" => decision_cell.green().to_string(),
            "deny" => decision_cell.red().bold().to_string(),
            _ => decision_cell.yellow().bold().to_string(),
        }
    };
    let tool = format!("{}/{}", row.server, row.tool);
    let ms = row
        .duration_ms
        .map(|d| format!("{d:.1}"))
        .unwrap_or_default();
    // A monitor-mode row was forwarded whatever its decision says: it must not read as enforced.
    let resolution = if row.enforced {
        escape(row.resolution.as_deref().unwrap_or("-"))
    } else {
        "MONITOR (fwd)".into()
    };
    // Every stored string is escaped (the client chose most of them) and padded by display width.
    format!(
        "{time:<19}  {decision_cell}  {}  {}  {}  {}  {}  {ms:>7}  {}",
        pad(&resolution, 16),
        pad(&clip(&tool, 24), 24),
        pad(&escape(&row.action_type), 7),
        pad(&path_cell(row, 30), 30),
        pad(&escape(row.outcome.as_deref().unwrap_or("-")), 8),
        escape(&row.reasons.join("; "))
    )
    .trim_end()
    .to_owned()
}

/// The first path (escaped, middle-elided) and how many more the call names:
/// `/srv/…/config.yaml +2 more`.
fn path_cell(row: &LogEntry, width: usize) -> String {
    let first = row
        .paths
        .first()
        .or(row.resource_path.as_ref())
        .map_or("-", String::as_str);
    match row.paths.len() {
        0 | 1 => elide_middle(first, width),
        n => {
            let more = format!(" +{} more", n - 1);
            let room = width.saturating_sub(more.chars().count()).max(2);
            format!("{}{more}", elide_middle(first, room))
        }
    }
}

/// Shortens `s` to `width` columns, keeping its end (the tool name is the useful part).
fn clip(s: &str, width: usize) -> String {
    elide_start(s, width)
}

/// Parses `30s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not an age like 30s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}; use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ages() {
        assert_eq!(parse_age("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_age("5"), Ok(Duration::from_secs(5)));
        assert!(parse_age("1y").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let row = LogEntry {
            id: 1,
            ts: "t".into(),
            session_id: "s".into(),
            server: "fs".into(),
            tool: "write_file".into(),
            method: "tools/call".into(),
            action_type: "write".into(),
            resource_path: Some("/a,b".into()),
            paths: vec!["/a,b".into(), "/c".into()],
            decision: "deny".into(),
            resolution: None,
            reasons: vec!["say \"no\"".into(), "twice".into()],
            arguments: serde_json::json!({"k": 1}),
            agent: "a".into(),
            requester: "r".into(),
            channel: "c".into(),
            request_id: "7".into(),
            outcome: None,
            duration_ms: Some(1.5),
            policy_hash: "h".into(),
            resolved_by: None,
            resolved_at: None,
            enforced: true,
            bundles: None,
        };
        assert_eq!(
            csv_row(&row),
            "t,s,fs,write_file,tools/call,write,\"/a,b\",deny,,\"say \"\"no\"\"; twice\",,1.5,h,a,r,c,7,,,true,\"[\"\"/a,b\"\",\"\"/c\"\"]\",\"{\"\"k\"\":1}\""
        );
    }

    #[test]
    fn table_rows_escape_client_text_and_keep_their_columns() {
        let mut row = LogEntry {
            id: 1,
            ts: "2026-11-25T10:00:00.000Z".into(),
            session_id: "s".into(),
            server: "fs".into(),
            tool: "\u{1b}[1A\u{1b}[2Kx".into(),
            method: "tools/call".into(),
            action_type: "delete".into(),
            resource_path: Some("/tmp/\u{202e}bd.gol".into()),
            paths: vec![],
            decision: "deny".into(),
            resolution: None,
            reasons: vec!["no\rway".into()],
            arguments: serde_json::json!({}),
            agent: "a".into(),
            requester: "r".into(),
            channel: "c".into(),
            request_id: "7".into(),
            outcome: None,
            duration_ms: None,
            policy_hash: "h".into(),
            resolved_by: None,
            resolved_at: None,
            enforced: true,
            bundles: None,
        };
        let line = table_row(&row, false);
        assert!(!line.chars().any(crate::display::is_unsafe), "{line:?}");
        assert!(line.contains("fs/\\u{1b}[1A\\u{1b}[2Kx"), "{line}");
        assert!(line.contains("/tmp/\\u{202e}bd.gol"), "{line}");
        assert!(line.ends_with("no\\u{d}way"), "{line}");
        // The reasons column starts where the header says, whatever the tool name held.
        row.tool = "日本語".into();
        let wide = table_row(&row, false);
        let at = |s: &str| crate::display::width(s.split("no\\u{d}way").next().unwrap_or(""));
        assert_eq!(at(&wide), at(&line));
        assert_eq!(
            at(&line),
            crate::display::width(header().split("REASONS").next().unwrap_or(""))
        );
        // A monitor-mode row says so where an enforced one shows how an escalation ended.
        row.enforced = false;
        let monitored = table_row(&row, false);
        assert!(monitored.contains("MONITOR (fwd)"), "{monitored}");
        assert_eq!(at(&monitored), at(&line));
    }

    #[test]
    fn clips_from_the_left() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("/very/long/path/file.txt", 10), "…/file.txt");
    }

    #[test]
    fn path_cell_counts_the_other_paths() {
        let mut row = LogEntry {
            id: 1,
            ts: "t".into(),
            session_id: "s".into(),
            server: "fs".into(),
            tool: "t".into(),
            method: "tools/call".into(),
            action_type: "write".into(),
            resource_path: None,
            paths: Vec::new(),
            decision: "deny".into(),
            resolution: None,
            reasons: Vec::new(),
            arguments: serde_json::json!({}),
            agent: "a".into(),
            requester: "r".into(),
            channel: "c".into(),
            request_id: "7".into(),
            outcome: None,
            duration_ms: None,
            policy_hash: "h".into(),
            resolved_by: None,
            resolved_at: None,
            enforced: true,
            bundles: None,
        };
        assert_eq!(path_cell(&row, 30), "-");
        row.paths = vec!["/prod/app/config.yaml".into()];
        assert_eq!(path_cell(&row, 30), "/prod/app/config.yaml");
        row.paths.push("/srv/config.yaml".into());
        row.paths.push("/x".into());
        assert_eq!(path_cell(&row, 30), "/prod/app/config.yaml +2 more");
        let short = path_cell(&row, 20);
        assert!(
            short.starts_with("/pr") && short.ends_with("yaml +2 more"),
            "middle-elided: {short}"
        );
        assert_eq!(crate::display::width(&short), 20);
    }
}
