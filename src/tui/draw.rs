//! Renders the approver from its [`State`]; pure, so it is tested with ratatui's `TestBackend`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::state::{Mode, State};
use crate::approval::human;

pub fn draw(state: &State, frame: &mut Frame) {
    let [title, queue, details, feed, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Min(6),
        Constraint::Length(8),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    let count = state.pending.len();
    let heading = match count {
        0 => "behavry approve: nothing is waiting for approval".to_string(),
        1 => "behavry approve: 1 call is waiting for approval".to_string(),
        n => format!("behavry approve: {n} calls are waiting for approval"),
    };
    frame.render_widget(Line::from(heading).bold(), title);
    draw_queue(state, frame, queue);
    draw_details(state, frame, details);
    draw_feed(state, frame, feed);
    draw_footer(state, frame, footer);
}

/// Seconds between two stored timestamps (`ts` format); `None` if either does not parse.
fn seconds_between(from: &str, to: OffsetDateTime) -> Option<i64> {
    let from = OffsetDateTime::parse(from, &Rfc3339).ok()?;
    Some((to - from).whole_seconds())
}

fn draw_queue(state: &State, frame: &mut Frame, area: Rect) {
    let header = Row::new([
        "SERVER", "TOOL", "TYPE", "PATH", "REASONS", "AGENT", "AGE", "LEFT",
    ])
    .bold();
    let rows = state.pending.iter().map(|call| {
        let age = seconds_between(&call.ts, state.now).map_or_else(String::new, |s| human(secs(s)));
        let left = OffsetDateTime::parse(&call.expires_at, &Rfc3339)
            .map(|t| human(secs((t - state.now).whole_seconds())))
            .unwrap_or_default();
        Row::new([
            call.server.clone(),
            call.tool.clone(),
            call.action_type.clone(),
            call.resource_path.clone().unwrap_or_else(|| "-".into()),
            call.reasons.join("; "),
            call.agent.clone(),
            age,
            left,
        ])
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Waiting for approval "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut selection =
        TableState::default().with_selected((!state.pending.is_empty()).then_some(state.selected));
    frame.render_stateful_widget(table, area, &mut selection);
}

fn secs(s: i64) -> std::time::Duration {
    std::time::Duration::from_secs(s.max(0).unsigned_abs())
}

fn draw_details(state: &State, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(" Selected call ");
    let Some(call) = state.selected_call() else {
        let idle =
            Paragraph::new("Escalated calls from every wrapped server appear here.").block(block);
        frame.render_widget(idle, area);
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("{}/{}", call.server, call.tool)).bold(),
            Span::raw(format!(
                "  ({}, requested by {} for {})",
                call.method, call.agent, call.requester
            )),
        ]),
        Line::from(format!("why: {}", call.reasons.join("; "))),
        Line::from(format!(
            "request sha256 {}",
            &call.request_hash[..call.request_hash.len().min(16)]
        ))
        .dim(),
    ];
    let pretty = serde_json::to_string_pretty(&call.arguments).unwrap_or_default();
    lines.extend(pretty.lines().map(|l| Line::from(l.to_owned())));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_feed(state: &State, frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = state
        .recent
        .iter()
        .rev()
        .take(area.height.saturating_sub(2) as usize)
        .map(|row| {
            let colour = match row.decision.as_str() {
                "allow" => Color::Green,
                "deny" => Color::Red,
                _ => Color::Yellow,
            };
            let decision = match &row.resolution {
                Some(r) => format!("{}:{r}", row.decision),
                None => row.decision.clone(),
            };
            Line::from(vec![
                Span::raw(format!("{} ", row.ts.get(11..19).unwrap_or(""))).dim(),
                Span::styled(format!("{decision:<25}"), Style::new().fg(colour)),
                Span::raw(format!("{}/{} ", row.server, row.tool)),
                Span::raw(row.resource_path.clone().unwrap_or_default()).dim(),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Recent decisions ")),
        area,
    );
}

fn draw_footer(state: &State, frame: &mut Frame, area: Rect) {
    let keys = match &state.mode {
        Mode::Browse => Line::from(
            "↑/↓ j/k select · a approve once · s approve for this session · d deny · q quit",
        ),
        Mode::DenyReason(reason) => Line::from(vec![
            Span::raw("Reason shown to the agent (Enter denies, Esc cancels): ").bold(),
            Span::raw(format!("{reason}_")),
        ]),
    };
    let status = Line::from(state.status.clone().unwrap_or_default()).italic();
    frame.render_widget(Paragraph::new(vec![keys, status]), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::tests::call;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    use ratatui::Terminal;

    fn render(state: &State) -> String {
        let mut terminal = Terminal::new(TestBackend::new(110, 30)).expect("terminal");
        terminal.draw(|f| draw(state, f)).expect("draw");
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

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("time")
    }

    #[test]
    fn shows_the_queue_the_selected_arguments_and_the_keys() {
        let mut state = State::default();
        state.refresh(
            vec![call(1, "delete_file"), call(2, "run_command")],
            vec![],
            at("2026-11-25T10:00:30Z"),
        );
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
        assert!(screen.contains("a approve once · s approve for this session · d deny · q quit"));
    }

    #[test]
    fn deny_mode_shows_the_reason_being_typed() {
        let mut state = State::default();
        state.refresh(
            vec![call(1, "delete_file")],
            vec![],
            at("2026-11-25T10:00:00Z"),
        );
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
}
