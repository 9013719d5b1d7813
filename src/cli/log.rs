//! `behavry log`: reads the audit store. A table on a terminal, JSON lines with `--json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crossterm::style::Stylize;

use super::LogArgs;
use crate::audit::{LogEntry, LogFilter, Store};
use crate::config::Paths;

/// How often `--follow` looks for new rows.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub fn run(args: LogArgs) -> anyhow::Result<i32> {
    let paths = Paths::resolve()?;
    let db = paths.database();
    if !db.exists() {
        anyhow::bail!(
            "no audit log yet at {} (it is created when `behavry wrap` first runs)",
            db.display()
        );
    }
    let store = Store::open(&db)?;
    let since = match args.since {
        Some(age) => {
            let age = time::Duration::try_from(age)
                .map_err(|_| anyhow::anyhow!("--since is too large"))?;
            let then = time::OffsetDateTime::now_utc()
                .checked_sub(age)
                .ok_or_else(|| anyhow::anyhow!("--since is too large"))?;
            Some(crate::audit::store::format_ts(then))
        }
        None => None,
    };
    let default_limit = if args.json { None } else { Some(50) };
    let mut filter = LogFilter {
        decision: args.decision,
        server: args.server,
        tool: args.tool,
        session: args.session,
        since,
        after_id: None,
        limit: args.limit.or(default_limit).filter(|&l| l > 0),
    };
    let stdout = std::io::stdout();
    let colour = !args.json && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = stdout.lock();
    let rows = store.query(&filter)?;
    if !args.json {
        writeln!(out, "{}", header())?;
    }
    let mut last = print_rows(&mut out, &rows, args.json, colour)?;
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
        if let Some(id) = print_rows(&mut out, &rows, args.json, colour)? {
            last = Some(id);
        }
    }
}

/// Prints rows; returns the last id printed.
fn print_rows(
    out: &mut impl Write,
    rows: &[LogEntry],
    json: bool,
    colour: bool,
) -> anyhow::Result<Option<i64>> {
    for row in rows {
        if json {
            serde_json::to_writer(&mut *out, row)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", table_row(row, colour))?;
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
    let decision_cell = format!("{:<8}", row.decision);
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
    format!(
        "{time:<19}  {decision_cell}  {:<16}  {:<24}  {:<7}  {:<30}  {:<8}  {ms:>7}  {}",
        row.resolution.as_deref().unwrap_or("-"),
        clip(&tool, 24),
        row.action_type,
        clip(row.resource_path.as_deref().unwrap_or("-"), 30),
        row.outcome.as_deref().unwrap_or("-"),
        row.reasons.join("; ")
    )
}

/// Shortens `s` to `width` characters, keeping its end (the file name is the useful part).
fn clip(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        return s.to_owned();
    }
    let tail: String = s.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
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
    fn clips_from_the_left() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("/very/long/path/file.txt", 10), "…/file.txt");
    }
}
