//! `behavry approve`: the terminal app where a person approves or denies held calls.
//!
//! [`state`] holds what is shown and maps keys to actions, [`draw`] renders it; this module runs
//! the loop: poll the store, draw, read keys, write resolutions. It talks only to the store, never
//! to a wrapper, so any number of wrappers (in other processes) can be served at once.

pub mod draw;
pub mod state;

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
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
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        terminal::enable_raw_mode()?;
        io::stdout().execute(EnterAlternateScreen)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(TerminalGuard)
    }
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = io::stdout().execute(LeaveAlternateScreen);
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Runs the approver against the store at `db` until the user quits.
pub fn run(db: &Path, by: &str) -> Result<(), ApproveError> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(ApproveError::NotATerminal);
    }
    let mut store = Store::open(db)?;
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut state = State::default();
    let mut refreshed: Option<Instant> = None;
    loop {
        if refreshed.is_none_or(|t| t.elapsed() >= REFRESH) {
            let pending = store.pending()?;
            let recent = store.query(&LogFilter {
                limit: Some(FEED),
                ..LogFilter::default()
            })?;
            if state.refresh(pending, recent, time::OffsetDateTime::now_utc()) {
                // The terminal bell: a new call needs a person.
                let mut out = io::stdout();
                out.write_all(b"\x07")?;
                out.flush()?;
            }
            refreshed = Some(Instant::now());
        }
        terminal.draw(|frame| draw::draw(&state, frame))?;
        if !event::poll(Duration::from_millis(25))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match state.handle_key(&key) {
            Action::None => {}
            Action::Quit => return Ok(()),
            Action::Resolve {
                id,
                hash,
                resolution,
                reason,
            } => {
                let done = store.resolve(id, Some(&hash), resolution, reason.as_deref(), by)?;
                state.status = Some(if done {
                    match resolution {
                        Resolution::ApprovedSession => format!(
                            "approved call {id}, and the same tool for the rest of its session"
                        ),
                        other => format!("{} call {id}", other.as_str()),
                    }
                } else {
                    format!("call {id} was already resolved (or changed) elsewhere; nothing done")
                });
                refreshed = None;
            }
        }
    }
}
