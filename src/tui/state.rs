//! What the approver shows and how keys change it. No terminal, no store: the run loop feeds
//! [`State::refresh`] and carries out the [`Action`]s [`State::handle_key`] returns.

use std::collections::HashSet;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use time::OffsetDateTime;

use crate::audit::store::{PendingCall, Resolution};
use crate::audit::LogEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// Typing the reason shown to the agent with a denial.
    DenyReason(String),
}

/// What the run loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Resolve escalation `id`, provided it is still the request with `hash` that was shown.
    Resolve {
        id: i64,
        hash: String,
        resolution: Resolution,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct State {
    pub pending: Vec<PendingCall>,
    pub recent: Vec<LogEntry>,
    /// Index into `pending`.
    pub selected: usize,
    pub mode: Mode,
    /// One line of feedback about the last action.
    pub status: Option<String>,
    pub now: OffsetDateTime,
    seen: HashSet<i64>,
    /// When the selection last moved to another call without a key press (the selected call
    /// went away): approving right then could approve a call nobody looked at.
    moved_at: Option<OffsetDateTime>,
    /// The call this approver last resolved: its disappearance is no surprise.
    resolved: Option<i64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            pending: Vec::new(),
            recent: Vec::new(),
            selected: 0,
            mode: Mode::Browse,
            status: None,
            now: OffsetDateTime::UNIX_EPOCH,
            seen: HashSet::new(),
            moved_at: None,
            resolved: None,
        }
    }
}

impl State {
    /// Replaces the lists, keeping the same call selected when it is still pending. Returns
    /// whether a call arrived that was not shown before (time to ring the bell).
    pub fn refresh(
        &mut self,
        pending: Vec<PendingCall>,
        recent: Vec<LogEntry>,
        now: OffsetDateTime,
    ) -> bool {
        let selected_id = self.selected_call().map(|c| c.id);
        let arrived = pending.iter().any(|c| !self.seen.contains(&c.id));
        self.seen.extend(pending.iter().map(|c| c.id));
        self.pending = pending;
        self.recent = recent;
        self.now = now;
        self.selected = selected_id
            .and_then(|id| self.pending.iter().position(|c| c.id == id))
            .unwrap_or_else(|| self.selected.min(self.pending.len().saturating_sub(1)));
        let now_selected = self.selected_call().map(|c| c.id);
        if selected_id.is_some() && now_selected != selected_id && self.resolved == selected_id {
            // Our own resolution took the call away: keep its status line, but still make the
            // next call under the cursor wait to be looked at.
            self.moved_at = now_selected.map(|_| now);
        } else if selected_id.is_some() && now_selected != selected_id {
            self.moved_at = now_selected.map(|_| now);
            // A denial being typed for a call that went away (timeout, cancel) has nothing to deny.
            self.status = Some(if matches!(self.mode, Mode::DenyReason(_)) {
                self.mode = Mode::Browse;
                "the call you were denying is no longer pending".into()
            } else {
                "the selected call is no longer pending; look at the new selection before acting"
                    .into()
            });
        }
        arrived
    }

    pub fn selected_call(&self) -> Option<&PendingCall> {
        self.pending.get(self.selected)
    }

    pub fn handle_key(&mut self, key: &KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match &mut self.mode {
            Mode::DenyReason(reason) => match key.code {
                KeyCode::Enter => {
                    let reason = reason.trim().to_owned();
                    self.mode = Mode::Browse;
                    self.resolve(Resolution::Denied, Some(reason).filter(|r| !r.is_empty()))
                }
                KeyCode::Esc => {
                    self.mode = Mode::Browse;
                    self.status = Some("denial cancelled".into());
                    Action::None
                }
                KeyCode::Backspace => {
                    reason.pop();
                    Action::None
                }
                KeyCode::Char(c) => {
                    reason.push(c);
                    Action::None
                }
                _ => Action::None,
            },
            Mode::Browse => match key.code {
                KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
                KeyCode::Char('a' | 's' | 'd') if self.just_moved() => {
                    self.status = Some(
                        "the selection just changed; look again, then press the key again".into(),
                    );
                    Action::None
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.moved_at = None;
                    self.selected = self.selected.saturating_sub(1);
                    Action::None
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.moved_at = None;
                    if self.selected + 1 < self.pending.len() {
                        self.selected += 1;
                    }
                    Action::None
                }
                KeyCode::Char('a') => self.resolve(Resolution::Approved, None),
                KeyCode::Char('s') => self.resolve(Resolution::ApprovedSession, None),
                KeyCode::Char('d') if self.selected_call().is_some() => {
                    self.mode = Mode::DenyReason(String::new());
                    Action::None
                }
                _ => Action::None,
            },
        }
    }

    /// Whether the selection moved by itself less than a second ago.
    fn just_moved(&self) -> bool {
        self.moved_at
            .is_some_and(|at| self.now - at < time::Duration::SECOND)
    }

    fn resolve(&mut self, resolution: Resolution, reason: Option<String>) -> Action {
        match self.selected_call() {
            Some(call) => {
                let (id, hash) = (call.id, call.request_hash.clone());
                self.resolved = Some(id);
                Action::Resolve {
                    id,
                    hash,
                    resolution,
                    reason,
                }
            }
            None => {
                self.status = Some("nothing is waiting for approval".into());
                Action::None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::store::Owner;
    use ratatui::crossterm::event::KeyEvent;
    use serde_json::json;

    pub fn call(id: i64, tool: &str) -> PendingCall {
        PendingCall {
            id,
            ts: "2026-11-25T10:00:00.000Z".into(),
            session_id: "s".into(),
            server: "fs".into(),
            tool: tool.into(),
            method: "tools/call".into(),
            action_type: "delete".into(),
            resource_path: Some(format!("/tmp/{tool}")),
            reasons: vec!["deletes need a person".into()],
            agent: "claude-code".into(),
            requester: "alice".into(),
            arguments: json!({"path": format!("/tmp/{tool}")}),
            request_hash: format!("hash-{id}"),
            expires_at: "2026-11-25T10:05:00.000Z".into(),
            owner: Owner { pid: 1, start: 1 },
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    fn state(ids: &[i64]) -> State {
        let mut s = State::default();
        s.refresh(
            ids.iter().map(|&i| call(i, &format!("t{i}"))).collect(),
            vec![],
            OffsetDateTime::UNIX_EPOCH,
        );
        s
    }

    #[test]
    fn navigation_stays_in_bounds() {
        let mut s = state(&[1, 2, 3]);
        s.handle_key(&key(KeyCode::Up));
        assert_eq!(s.selected, 0);
        for _ in 0..5 {
            s.handle_key(&key(KeyCode::Char('j')));
        }
        assert_eq!(s.selected, 2);
        s.handle_key(&key(KeyCode::Char('k')));
        assert_eq!(s.selected, 1);
    }

    #[test]
    fn approve_and_session_approve_name_the_shown_request() {
        let mut s = state(&[1, 2]);
        s.handle_key(&key(KeyCode::Down));
        let want = |resolution| Action::Resolve {
            id: 2,
            hash: "hash-2".into(),
            resolution,
            reason: None,
        };
        assert_eq!(
            s.handle_key(&key(KeyCode::Char('a'))),
            want(Resolution::Approved)
        );
        assert_eq!(
            s.handle_key(&key(KeyCode::Char('s'))),
            want(Resolution::ApprovedSession)
        );
    }

    #[test]
    fn deny_with_a_typed_reason() {
        let mut s = state(&[7]);
        assert_eq!(s.handle_key(&key(KeyCode::Char('d'))), Action::None);
        for c in "no!x".chars() {
            s.handle_key(&key(KeyCode::Char(c)));
        }
        s.handle_key(&key(KeyCode::Backspace));
        // Keys that act in browse mode are text while typing.
        assert_eq!(s.mode, Mode::DenyReason("no!".into()));
        let got = s.handle_key(&key(KeyCode::Enter));
        assert_eq!(
            got,
            Action::Resolve {
                id: 7,
                hash: "hash-7".into(),
                resolution: Resolution::Denied,
                reason: Some("no!".into())
            }
        );
        assert_eq!(s.mode, Mode::Browse);
    }

    #[test]
    fn deny_without_reason_and_escape_cancels() {
        let mut s = state(&[7]);
        s.handle_key(&key(KeyCode::Char('d')));
        s.handle_key(&key(KeyCode::Esc));
        assert_eq!(s.mode, Mode::Browse);
        s.handle_key(&key(KeyCode::Char('d')));
        let got = s.handle_key(&key(KeyCode::Enter));
        assert!(matches!(
            got,
            Action::Resolve {
                reason: None,
                resolution: Resolution::Denied,
                ..
            }
        ));
    }

    #[test]
    fn nothing_pending_means_nothing_to_resolve() {
        let mut s = state(&[]);
        assert_eq!(s.handle_key(&key(KeyCode::Char('a'))), Action::None);
        assert_eq!(s.handle_key(&key(KeyCode::Char('d'))), Action::None);
        assert_eq!(s.mode, Mode::Browse);
        assert_eq!(s.handle_key(&key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn refresh_keeps_the_selection_and_reports_arrivals() {
        let mut s = state(&[1, 2, 3]);
        s.selected = 2;
        let now = OffsetDateTime::UNIX_EPOCH;
        // Call 1 resolved elsewhere: the selection follows call 3.
        assert!(!s.refresh(vec![call(2, "t2"), call(3, "t3")], vec![], now));
        assert_eq!(s.selected_call().map(|c| c.id), Some(3));
        assert!(s.refresh(
            vec![call(2, "t2"), call(3, "t3"), call(4, "t4")],
            vec![],
            now
        ));
        // The selected call going away clamps the selection and abandons a denial being typed.
        s.handle_key(&key(KeyCode::Char('d')));
        s.refresh(vec![call(2, "t2")], vec![], now);
        assert_eq!(s.selected, 0);
        assert_eq!(s.mode, Mode::Browse);
    }

    #[test]
    fn keys_do_not_act_on_a_call_that_slid_under_the_cursor() {
        let mut s = state(&[1, 2]);
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(1);
        s.refresh(vec![call(1, "t1"), call(2, "t2")], vec![], t0);
        // Call 1, selected, is resolved elsewhere: call 2 is now under the cursor.
        s.refresh(vec![call(2, "t2")], vec![], t0);
        assert_eq!(s.handle_key(&key(KeyCode::Char('a'))), Action::None);
        assert!(s.status.as_deref().unwrap_or("").contains("look again"));
        // A second later, or after moving the cursor, keys act again.
        s.refresh(vec![call(2, "t2")], vec![], t0 + time::Duration::SECOND);
        assert!(matches!(
            s.handle_key(&key(KeyCode::Char('a'))),
            Action::Resolve { id: 2, .. }
        ));
        s.refresh(vec![call(3, "t3")], vec![], t0 + time::Duration::SECOND);
        s.handle_key(&key(KeyCode::Up));
        assert!(matches!(
            s.handle_key(&key(KeyCode::Char('s'))),
            Action::Resolve { id: 3, .. }
        ));
    }

    #[test]
    fn ctrl_c_quits_even_while_typing() {
        let mut s = state(&[1]);
        s.handle_key(&key(KeyCode::Char('d')));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(s.handle_key(&ctrl_c), Action::Quit);
    }
}
