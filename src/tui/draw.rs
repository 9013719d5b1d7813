//! Renders the approver from its [`State`]; pure, so it is tested with ratatui's `TestBackend`.
//!
//! What a person must judge comes first: the tool, the full path(s), the reasons and the
//! arguments. On a small terminal the recent-decisions pane goes first, then queue columns; the
//! details pane scrolls and `Enter` gives it the whole screen. Every client-controlled string goes
//! through [`crate::display`] before it reaches a cell.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::state::{Group, Mode, QueueRow, Selection, State, Viewport};
use crate::approval::human;
use crate::audit::store::PendingCall;
use crate::display::{elide_end, elide_middle, elide_start, escape, pad, width, wrap};

/// Terminal heights at which the recent-decisions pane appears, and grows.
const FEED_SMALL: u16 = 30;
const FEED_FULL: u16 = 36;
/// Queue width from which the type, agent and age columns are shown.
const WIDE: u16 = 110;
/// Width of the labels in the details pane (`path `, `why `, …).
const LABEL: usize = 7;

/// Draws the whole screen; returns the details pane's extent, for scrolling.
pub fn draw(state: &State, frame: &mut Frame) -> Viewport {
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    let count = state.waiting();
    let mut heading = match count {
        0 => "behavry approve: nothing is waiting for approval".to_string(),
        1 => "behavry approve: 1 call is waiting for approval".to_string(),
        n => format!("behavry approve: {n} calls are waiting for approval"),
    };
    if state.groups.len() < count {
        heading.push_str(&format!(" (in {} groups)", state.groups.len()));
    }
    let monitored = crate::audit::monitor::monitored_servers(&state.recent);
    if let Some(banner) = crate::audit::monitor::banner(&monitored) {
        heading = format!("{banner} | {heading}");
    }
    frame.render_widget(Line::from(heading).bold(), title);
    draw_footer(state, frame, footer);
    if state.mode == Mode::Full {
        return draw_details(state, frame, body, true);
    }
    let height = frame.area().height;
    let feed = match height {
        h if h >= FEED_FULL => 8,
        h if h >= FEED_SMALL => 5,
        _ => 0,
    };
    let rest = body.height.saturating_sub(feed);
    let wanted = u16::try_from(state.rows().len().max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let queue_height = wanted.min((rest * 2 / 5).max(5));
    let [queue, details, recent] = Layout::vertical([
        Constraint::Length(queue_height),
        Constraint::Min(0),
        Constraint::Length(feed),
    ])
    .areas(body);
    draw_queue(state, frame, queue);
    let viewport = draw_details(state, frame, details, false);
    if feed > 0 {
        draw_feed(state, frame, recent);
    }
    viewport
}

/// Seconds between two stored timestamps (`ts` format); `None` if either does not parse.
fn seconds_between(from: &str, to: OffsetDateTime) -> Option<i64> {
    let from = OffsetDateTime::parse(from, &Rfc3339).ok()?;
    Some((to - from).whole_seconds())
}

fn secs(s: i64) -> std::time::Duration {
    std::time::Duration::from_secs(s.max(0).unsigned_abs())
}

/// How long the call has waited, and how long it has left.
fn age_and_left(call: &PendingCall, now: OffsetDateTime) -> (String, String) {
    let age = seconds_between(&call.ts, now).map_or_else(String::new, |s| human(secs(s)));
    let left = OffsetDateTime::parse(&call.expires_at, &Rfc3339)
        .map(|t| human(secs((t - now).whole_seconds())))
        .unwrap_or_default();
    (age, left)
}

/// `12 × fs/delete_file`, `fs/delete_file`, or for a member of an expanded group `└ call 41`.
fn tool_text(group: &Group, member: Option<usize>) -> String {
    let first = group.first();
    let tool = format!("{}/{}", first.server, first.tool);
    match member {
        Some(m) => format!("  └ call {}", group.calls.get(m).map_or(0, |c| c.id)),
        None if group.calls.len() > 1 => format!("{} × {}", group.calls.len(), tool),
        None => tool,
    }
}

fn path_text(group: &Group, member: Option<usize>) -> String {
    let call = member.and_then(|m| group.calls.get(m));
    match (call, &group.under) {
        (Some(call), _) => call.resource_path.clone().unwrap_or_else(|| "-".into()),
        (None, Some(dir)) if group.calls.len() > 1 => format!("under {dir}"),
        (None, _) => group
            .first()
            .resource_path
            .clone()
            .unwrap_or_else(|| "-".into()),
    }
}

fn draw_queue(state: &State, frame: &mut Frame, area: Rect) {
    let rows = state.rows();
    // Borders, the highlight symbol.
    let inner = usize::from(area.width.saturating_sub(4));
    let wide = area.width >= WIDE;
    let tool_width = rows
        .iter()
        .filter_map(|r| state.groups.get(r.group).map(|g| tool_text(g, r.member)))
        .map(|t| width(&escape(&t)))
        .max()
        .unwrap_or(0)
        .clamp(12, if wide { 36 } else { 26 });
    let mut fixed = vec![("TOOL", tool_width)];
    if wide {
        fixed.push(("TYPE", 8));
    }
    let mut tail = vec![("LEFT", 7)];
    if wide {
        tail.insert(0, ("AGE", 6));
        tail.insert(0, ("AGENT", 14));
    }
    let columns = fixed.len() + 2 + tail.len();
    let taken: usize = fixed.iter().chain(&tail).map(|(_, w)| w).sum::<usize>() + columns - 1;
    let shared = inner.saturating_sub(taken);
    let path_width = shared * 3 / 5;
    let reasons_width = shared - path_width;

    let cells = |row: &QueueRow| -> Vec<String> {
        let Some(group) = state.groups.get(row.group) else {
            return Vec::new();
        };
        let call = row
            .member
            .and_then(|m| group.calls.get(m))
            .unwrap_or_else(|| group.first());
        let (age, left) = age_and_left(call, state.now);
        let mut out = vec![elide_start(&tool_text(group, row.member), tool_width)];
        if wide {
            out.push(elide_end(&call.action_type, 8));
        }
        out.push(elide_middle(&path_text(group, row.member), path_width));
        out.push(elide_end(&call.reasons.join("; "), reasons_width));
        if wide {
            out.push(elide_end(&call.agent, 14));
            out.push(age);
        }
        out.push(left);
        out
    };
    let mut names: Vec<&str> = fixed.iter().map(|(n, _)| *n).collect();
    names.extend(["PATH", "REASONS"]);
    names.extend(tail.iter().map(|(n, _)| *n));
    let mut widths: Vec<usize> = fixed.iter().map(|(_, w)| *w).collect();
    widths.extend([path_width, reasons_width]);
    widths.extend(tail.iter().map(|(_, w)| *w));

    let table = Table::new(
        rows.iter().map(|r| Row::new(cells(r))),
        widths
            .iter()
            .map(|w| Constraint::Length(u16::try_from(*w).unwrap_or(u16::MAX))),
    )
    .header(Row::new(names).bold())
    .column_spacing(1)
    .block(Block::bordered().title(" Waiting for approval "))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ");
    let mut selection =
        TableState::default().with_selected((!rows.is_empty()).then_some(state.selected));
    frame.render_stateful_widget(table, area, &mut selection);
}

/// `label` and `text` wrapped to `columns`, continuation lines indented under the text.
fn field(label: &str, text: &str, columns: usize) -> Vec<Line<'static>> {
    let text_width = columns.saturating_sub(LABEL).max(8);
    wrap(text, text_width)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let label = if i == 0 { label } else { "" };
            Line::from(vec![Span::raw(pad(label, LABEL)).dim(), Span::raw(part)])
        })
        .collect()
}

/// The arguments, pretty-printed and wrapped; each line escaped (JSON escapes C0 controls but
/// leaves DEL, C1 and format characters as they are).
fn argument_lines(call: &PendingCall, columns: usize) -> Vec<Line<'static>> {
    let pretty = serde_json::to_string_pretty(&call.arguments).unwrap_or_default();
    let text_width = columns.saturating_sub(LABEL).max(8);
    let mut lines = Vec::new();
    for (i, line) in pretty.lines().enumerate() {
        for (j, part) in wrap(line, text_width).into_iter().enumerate() {
            let label = if i == 0 && j == 0 { "args" } else { "" };
            lines.push(Line::from(vec![
                Span::raw(pad(label, LABEL)).dim(),
                Span::raw(part),
            ]));
        }
    }
    lines
}

/// Everything about the selected row, wrapped to `columns`.
pub fn detail_lines(state: &State, columns: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match state.selection() {
        None => {}
        Some(Selection::Call(call)) => {
            let (age, left) = age_and_left(call, state.now);
            let what = format!(
                "{}/{}  ({}, {})",
                call.server, call.tool, call.action_type, call.method
            );
            lines.extend(field("call", &what, columns).into_iter().map(Stylize::bold));
            lines.extend(field(
                "path",
                call.resource_path.as_deref().unwrap_or("-"),
                columns,
            ));
            lines.extend(field("why", &call.reasons.join("; "), columns));
            lines.extend(argument_lines(call, columns));
            let from = format!(
                "{} for {}, waiting {age}, {left} left",
                call.agent, call.requester
            );
            lines.extend(field("from", &from, columns));
            let hash = call.request_hash.get(..16).unwrap_or(&call.request_hash);
            lines.extend(field("sha256", hash, columns).into_iter().map(Stylize::dim));
        }
        Some(Selection::Group(group)) => {
            let first = group.first();
            let (age, left) = age_and_left(first, state.now);
            let what = format!(
                "{} × {}/{}  ({}, {}); a, s and d act on all of them",
                group.calls.len(),
                first.server,
                first.tool,
                first.action_type,
                first.method
            );
            lines.extend(
                field("calls", &what, columns)
                    .into_iter()
                    .map(Stylize::bold),
            );
            if let Some(dir) = &group.under {
                lines.extend(field("under", dir, columns));
            }
            lines.extend(field("why", &first.reasons.join("; "), columns));
            for (i, call) in group.calls.iter().enumerate() {
                let label = if i == 0 { "paths" } else { "" };
                let path = call.resource_path.as_deref().unwrap_or("-");
                lines.extend(field(label, path, columns));
            }
            lines.extend(field(
                "",
                "arguments of the first; the others differ only in the path:",
                columns,
            ));
            lines.extend(argument_lines(first, columns));
            let from = format!(
                "{} for {}, oldest waiting {age}, {left} left",
                first.agent, first.requester
            );
            lines.extend(field("from", &from, columns));
        }
    }
    lines
}

fn draw_details(state: &State, frame: &mut Frame, area: Rect, full: bool) -> Viewport {
    let mut title = match state.selection() {
        Some(Selection::Group(g)) => format!(" Selected group of {} calls ", g.calls.len()),
        _ => " Selected call ".to_string(),
    };
    let inner_width = usize::from(area.width.saturating_sub(2));
    let page = usize::from(area.height.saturating_sub(2));
    let lines = detail_lines(state, inner_width);
    if lines.is_empty() {
        let idle = Paragraph::new("Escalated calls from every wrapped server appear here.")
            .block(Block::bordered().title(title));
        frame.render_widget(idle, area);
        return Viewport::default();
    }
    let max_scroll = lines.len().saturating_sub(page);
    let scroll = state.scroll.min(max_scroll);
    if max_scroll > 0 {
        let last = (scroll + page).min(lines.len());
        title.push_str(&format!(
            "· lines {}–{last} of {}, PgUp/PgDn{} ",
            scroll + 1,
            lines.len(),
            if full { "" } else { ", Enter: full view" }
        ));
    }
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(page).collect();
    frame.render_widget(
        Paragraph::new(shown).block(Block::bordered().title(title)),
        area,
    );
    Viewport { page, max_scroll }
}

fn draw_feed(state: &State, frame: &mut Frame, area: Rect) {
    let inner = usize::from(area.width.saturating_sub(2));
    let lines: Vec<Line> = state
        .recent
        .iter()
        .rev()
        .take(usize::from(area.height.saturating_sub(2)))
        .map(|row| {
            let colour = match row.decision.as_str() {
                "allow" => Color::Green,
                "deny" => Color::Red,
                _ => Color::Yellow,
            };
            let decision = pad(&elide_end(&row.decision, 8), 8);
            let resolution = pad(&elide_end(row.resolution.as_deref().unwrap_or(""), 16), 16);
            let tool = pad(
                &elide_start(&format!("{}/{}", row.server, row.tool), 26),
                26,
            );
            // Time, decision, resolution and tool, each followed by two spaces.
            let path_width = inner.saturating_sub(8 + 8 + 16 + 26 + 8);
            let path = elide_middle(row.resource_path.as_deref().unwrap_or(""), path_width);
            Line::from(vec![
                Span::raw(format!("{}  ", row.ts.get(11..19).unwrap_or(""))).dim(),
                Span::styled(
                    format!("{decision}  {resolution}  "),
                    Style::new().fg(colour),
                ),
                Span::raw(format!("{tool}  ")),
                Span::raw(path).dim(),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Recent decisions ")),
        area,
    );
}

fn draw_footer(state: &State, frame: &mut Frame, area: Rect) {
    let wide = area.width >= 120;
    let keys = match (&state.mode, wide) {
        (Mode::Browse, true) => Line::from(
            "↑/↓ select · a approve once · s approve for this session · d deny · Enter full view · PgUp/PgDn scroll · →/← group · q quit",
        ),
        (Mode::Browse, false) => Line::from(
            "↑↓ select · a approve · s session · d deny · Enter view · → group · q quit",
        ),
        (Mode::Full, true) => Line::from(
            "Esc back · ↑/↓ PgUp/PgDn scroll · a approve once · s approve for this session · d deny",
        ),
        (Mode::Full, false) => {
            Line::from("Esc back · ↑↓ PgUp/PgDn scroll · a approve · s session · d deny")
        }
        (Mode::DenyReason(reason), _) => Line::from(vec![
            Span::raw("Reason shown to the agent (Enter denies, Esc cancels): ").bold(),
            Span::raw(format!("{}_", escape(reason))),
        ]),
    };
    let status = Line::from(escape(state.status.as_deref().unwrap_or("")).into_owned()).italic();
    frame.render_widget(Paragraph::new(vec![keys, status]), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::tests::{call, delete};
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    use ratatui::Terminal;
    use serde_json::json;

    fn render_at(state: &State, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        terminal
            .draw(|f| {
                draw(state, f);
            })
            .expect("draw");
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn render(state: &State) -> String {
        render_at(state, 110, 30)
    }

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("time")
    }

    fn with(pending: Vec<PendingCall>) -> State {
        let mut state = State::default();
        state.refresh(pending, vec![], at("2026-11-25T10:00:30Z"));
        state
    }

    #[test]
    fn shows_the_queue_the_selected_arguments_and_the_keys() {
        let mut state = with(vec![call(1, "delete_file"), call(2, "run_command")]);
        state.handle_key(&KeyEvent::from(KeyCode::Down));
        let screen = render(&state);
        assert!(
            screen.contains("2 calls are waiting for approval"),
            "{screen}"
        );
        assert!(
            screen.contains("delete_file") && screen.contains("run_command"),
            "{screen}"
        );
        assert!(screen.contains("> fs"), "{screen}");
        assert!(
            screen.contains("30s") && screen.contains("4m30s"),
            "age and time left: {screen}"
        );
        assert!(
            screen.contains("\"path\": \"/tmp/run_command\""),
            "{screen}"
        );
        assert!(screen.contains("deletes need a person"));
        assert!(
            screen.contains("a approve · s session · d deny"),
            "{screen}"
        );
    }

    #[test]
    fn deny_mode_shows_the_reason_being_typed() {
        let mut state = with(vec![call(1, "delete_file")]);
        state.handle_key(&KeyEvent::from(KeyCode::Char('d')));
        for c in "too risky".chars() {
            state.handle_key(&KeyEvent::from(KeyCode::Char(c)));
        }
        let screen = render(&state);
        assert!(screen.contains("Reason shown to the agent"), "{screen}");
        assert!(screen.contains("too risky_"), "{screen}");
    }

    #[test]
    fn empty_queue() {
        let screen = render(&State::default());
        assert!(
            screen.contains("nothing is waiting for approval"),
            "{screen}"
        );
    }

    /// A write with a long path and arguments, the kind a person must read in full.
    fn long_write() -> PendingCall {
        let path = "/home/alice/projects/payments-service/config/production/database.toml";
        PendingCall {
            tool: "write_file".into(),
            action_type: "write".into(),
            resource_path: Some(path.into()),
            reasons: vec!["writes outside the project need a person".into()],
            arguments: json!({"path": path, "content": "url = \"postgres://prod\""}),
            ..call(1, "write_file")
        }
    }

    #[test]
    fn what_a_person_judges_is_on_screen_at_80x24_and_200x50() {
        for (w, h) in [(80, 24), (200, 50)] {
            let state = with(vec![long_write(), call(2, "delete_file")]);
            let screen = render_at(&state, w, h);
            let all = screen.replace('\n', "");
            assert!(screen.contains("fs/write_file"), "{w}x{h}\n{screen}");
            // The full path, in the details (wrapped at 80 columns).
            let flat: String = screen
                .lines()
                .map(|l| l.trim_start_matches('│').trim_end_matches('│').trim())
                .collect();
            assert!(
                flat.contains(
                    "/home/alice/projects/payments-service/config/production/database.toml"
                ),
                "{w}x{h}\n{screen}"
            );
            assert!(
                flat.contains("writes outside the project need a person"),
                "{w}x{h}\n{screen}"
            );
            assert!(all.contains("postgres://prod"), "{w}x{h}\n{screen}");
            // The queue's path is elided in the middle, never cut to a stub.
            assert!(screen.contains("/home/"), "{w}x{h}\n{screen}");
            assert!(screen.contains("database.toml"), "{w}x{h}\n{screen}");
            // Recent decisions only where there is room.
            assert_eq!(
                screen.contains("Recent decisions"),
                h >= FEED_SMALL,
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn client_text_is_shown_escaped_never_raw() {
        let hostile = PendingCall {
            tool: "\u{1b}]0;pwn\u{7}\u{1b}[1G\u{1b}[2Kx".into(),
            agent: "evil\u{202e}gnp.exe".into(),
            resource_path: Some("/prod/db\r/tmp/old.log".into()),
            reasons: vec!["because\u{200b}\u{9b}2J".into()],
            arguments: json!({"path": "/prod/db\u{7f}\u{2066}"}),
            ..call(1, "x")
        };
        let mut state = with(vec![hostile]);
        state.handle_key(&KeyEvent::from(KeyCode::Enter));
        let screen = render_at(&state, 120, 40);
        assert!(
            !screen
                .lines()
                .any(|l| l.chars().any(crate::display::is_unsafe)),
            "{screen:?}"
        );
        let flat: String = screen
            .lines()
            .map(|l| l.trim_start_matches('│').trim_end_matches('│').trim())
            .collect();
        for shown in [
            "\\u{1b}]0;pwn\\u{7}\\u{1b}[1G\\u{1b}[2Kx",
            "/prod/db\\u{d}/tmp/old.log",
            "because\\u{200b}\\u{9b}2J",
            "evil\\u{202e}gnp.exe",
            "\\u{7f}\\u{2066}",
        ] {
            assert!(flat.contains(shown), "{shown} in {flat}");
        }
    }

    #[test]
    fn a_group_is_one_row_with_every_path_in_its_details() {
        let mut calls: Vec<PendingCall> = (1..=12)
            .map(|i| delete(i, &format!("/tmp/build/obj{i}.o")))
            .collect();
        calls.push(delete(99, "/prod/db"));
        let state = with(calls);
        let screen = render_at(&state, 80, 24);
        assert!(screen.contains("12 × fs/delete_file"), "{screen}");
        assert!(screen.contains("under /tmp/build"), "{screen}");
        assert!(screen.contains("/prod/db"), "{screen}");
        assert!(
            screen.contains("13 calls are waiting for approval (in 2 groups)"),
            "{screen}"
        );
        assert!(screen.contains("/tmp/build/obj1.o"), "{screen}");
        // More lines than fit: the pane says how to see the rest.
        assert!(screen.contains("PgUp/PgDn"), "{screen}");
    }

    #[test]
    fn the_details_scroll_and_report_their_extent() {
        let calls: Vec<PendingCall> = (1..=30)
            .map(|i| delete(i, &format!("/tmp/build/obj{i}.o")))
            .collect();
        let mut state = with(calls);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        let mut viewport = Viewport::default();
        terminal.draw(|f| viewport = draw(&state, f)).expect("draw");
        assert!(viewport.max_scroll > 0 && viewport.page > 0, "{viewport:?}");
        state.viewport = viewport;
        for _ in 0..10 {
            state.handle_key(&KeyEvent::from(KeyCode::PageDown));
        }
        let screen = render_at(&state, 80, 24);
        assert!(screen.contains("/tmp/build/obj30.o"), "{screen}");
        assert!(!screen.contains("/tmp/build/obj1.o "), "{screen}");
    }

    #[test]
    fn recent_decisions_keep_their_columns_apart() {
        let mut state = State::default();
        let row = crate::audit::LogEntry {
            id: 1,
            ts: "2026-11-25T10:00:00.000Z".into(),
            session_id: "s".into(),
            server: "fs".into(),
            tool: "write_file".into(),
            method: "tools/call".into(),
            action_type: "write".into(),
            resource_path: Some("/tmp/a".into()),
            paths: vec![],
            decision: "escalate".into(),
            resolution: Some("approved_session".into()),
            reasons: vec![],
            arguments: json!({}),
            agent: "a".into(),
            requester: "r".into(),
            channel: "c".into(),
            request_id: "1".into(),
            outcome: None,
            duration_ms: None,
            policy_hash: "h".into(),
            resolved_by: None,
            resolved_at: None,
            enforced: true,
            bundles: None,
        };
        state.refresh(vec![], vec![row.clone()], at("2026-11-25T10:00:30Z"));
        let screen = render_at(&state, 120, 40);
        assert!(
            screen.contains("escalate  approved_session  fs/write_file"),
            "{screen}"
        );
        assert!(!screen.contains("MONITOR"), "{screen}");
        // A server in monitor mode is named in the header: its calls never come here.
        let monitored = crate::audit::LogEntry {
            id: 2,
            enforced: false,
            bundles: None,
            ..row
        };
        state.refresh(vec![], vec![monitored], at("2026-11-25T10:00:31Z"));
        let screen = render_at(&state, 120, 40);
        let header = screen.lines().next().unwrap_or("");
        assert!(header.starts_with("MONITOR mode (fs)"), "{screen}");
    }
}
