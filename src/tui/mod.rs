//! `behavry approve`: the terminal app where a person approves or denies held calls.
//!
//! [`state`] holds what is shown and maps keys to actions, [`draw`] renders it; this module runs
//! the loop: poll the store, redraw only when something changed, read keys, write resolutions. It
//! talks only to the store, never to a wrapper, so any number of wrappers (in other processes) can
//! be served at once.

pub mod draw;
pub mod state;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen, SetTitle};
use ratatui::crossterm::ExecutableCommand;
use ratatui::Terminal;

use crate::audit::store::Resolution;
use crate::audit::{LogFilter, Store};
use state::{Action, State};

/// How often the queue is re-read from the store.
const REFRESH: Duration = Duration::from_millis(100);
/// How many recent decisions the feed shows.
const FEED: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("behavry approve needs an interactive terminal; run it in a terminal window, or use `behavry approve --list` to print what is waiting")]
    NotATerminal,
    #[error(transparent)]
    Store(#[from] crate::audit::StoreError),
    #[error("terminal: {0}")]
    Io(#[from] io::Error),
}

/// Restores the terminal when dropped, including while unwinding from a panic.
struct TerminalGuard {
    title: bool,
}

/// XTWINOPS: save the window title on the terminal's stack, and restore it (terminals that do not
/// support these ignore them).
const PUSH_TITLE: &[u8] = b"\x1b[22;0t";
const POP_TITLE: &[u8] = b"\x1b[23;0t";

impl TerminalGuard {
    fn enter(title: bool) -> io::Result<TerminalGuard> {
        terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        out.execute(EnterAlternateScreen)?;
        if title {
            out.write_all(PUSH_TITLE)?;
            out.flush()?;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore(title);
            previous(info);
        }));
        Ok(TerminalGuard { title })
    }
}

fn restore(title: bool) {
    let _ = terminal::disable_raw_mode();
    let mut out = io::stdout();
    let _ = out.execute(LeaveAlternateScreen);
    if title {
        let _ = out.write_all(POP_TITLE);
        let _ = out.flush();
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore(self.title);
    }
}

/// How the approver gets attention when a call arrives (`[approve]` in `config.toml`).
#[derive(Debug, Clone, Copy)]
pub struct Alerts {
    /// Ring the terminal bell.
    pub bell: bool,
    /// Keep the window title at "behavry: N waiting".
    pub title: bool,
}

/// Runs the approver against the store at `db` until the user quits.
pub fn run(db: &Path, by: &str, alerts: Alerts) -> Result<(), ApproveError> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(ApproveError::NotATerminal);
    }
    let mut store = Store::open(db)?;
    let _guard = TerminalGuard::enter(alerts.title)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut state = State::default();
    let mut refreshed: Option<Instant> = None;
    // Redraw only on change: new store contents, a key, a resize, or a new second on the clocks.
    let mut dirty = true;
    let mut drawn_second = None;
    let mut titled = None;
    loop {
        if refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            let pending = store.pending()?;
            let recent = store.query(&LogFilter {
                limit: Some(FEED),
                ..LogFilter::default()
            })?;
            let now = time::OffsetDateTime::now_utc();
            let change = state.refresh(pending, recent, now);
            dirty |= change.changed;
            // The ages and time left on screen tick once a second while anything is waiting.
            let second = (state.waiting() > 0).then(|| now.unix_timestamp());
            dirty |= second != drawn_second;
            drawn_second = second;
            let mut out = io::stdout();
            if change.arrived && alerts.bell {
                // The terminal bell: a new call needs a person.
                out.write_all(b"\x07")?;
            }
            let waiting = state.waiting();
            if alerts.title && titled != Some(waiting) {
                out.execute(SetTitle(format!("behavry: {waiting} waiting")))?;
                titled = Some(waiting);
            }
            out.flush()?;
            refreshed = Some(Instant::now());
        }
        if dirty {
            let mut viewport = state.viewport;
            terminal.draw(|frame| viewport = draw::draw(&state, frame))?;
            state.viewport = viewport;
            dirty = false;
        }
        let next = refreshed.map_or(Duration::ZERO, |t| REFRESH.saturating_sub(t.elapsed()));
        if !event::poll(next)? {
            continue;
        }
        let key = match event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => key,
            Event::Resize(..) => {
                dirty = true;
                continue;
            }
            _ => continue,
        };
        dirty = true;
        match state.handle_key(&key) {
            Action::None => {}
            Action::Quit => return Ok(()),
            Action::Resolve {
                calls,
                resolution,
                reason,
            } => {
                let mut done = 0;
                for call in &calls {
                    if store.resolve(
                        call.id,
                        Some(&call.hash),
                        resolution,
                        reason.as_deref(),
                        by,
                    )? {
                        done += 1;
                    }
                }
                state.status = Some(status(&calls, done, resolution));
                refreshed = None;
            }
        }
    }
}

/// The status line after resolving `calls`, `done` of which this approver resolved.
fn status(calls: &[state::Shown], done: usize, resolution: Resolution) -> String {
    let what = match calls {
        [one] => format!("call {}", one.id),
        many => format!("{} calls", many.len()),
    };
    let verb = resolution.as_str();
    match (calls.len() - done, resolution) {
        (0, Resolution::ApprovedSession) => {
            format!("approved {what}, and the same tool for the rest of its session")
        }
        (0, _) => format!("{verb} {what}"),
        (_, _) if done == 0 => {
            format!("{what}: already resolved (or changed) elsewhere; nothing done")
        }
        (missed, _) => format!(
            "{verb} {done} of {what}; {missed} had already been resolved (or changed) elsewhere"
        ),
    }
}
