//! What the approver shows and how keys change it. No terminal, no store: the run loop feeds
//! [`State::refresh`] and carries out the [`Action`]s [`State::handle_key`] returns.
//!
//! Identical pending calls (same server, method, tool, action, agent and reasons, paths in one
//! directory, arguments the same apart from the path) form one [`Group`], so a flood of them is one
//! row and the odd call out stands on its own. A group can be expanded to its members; acting on
//! the group acts on every member shown.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::store::{PendingCall, Resolution};
use crate::audit::LogEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// The selected row's details fill the screen.
    Full,
    /// Typing the reason shown to the agent with a denial.
    DenyReason(String),
}

/// A call as it was shown: resolving it is refused by the store if the request changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub id: i64,
    pub hash: String,
}

/// What the run loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Resolve each of `calls` (one call, or every member of a group), each provided it is still
    /// the request that was shown.
    Resolve {
        calls: Vec<Shown>,
        resolution: Resolution,
        reason: Option<String>,
    },
}

/// Pending calls a person can judge as one.
#[derive(Debug, Clone)]
pub struct Group {
    /// Equal for calls that group together; identifies the row across refreshes.
    pub key: String,
    /// In arrival order; never empty.
    pub calls: Vec<PendingCall>,
    /// The directory every member's path is in (shown as "under …"), when members have paths.
    pub under: Option<String>,
}

impl Group {
    pub fn first(&self) -> &PendingCall {
        // Groups are built from at least one call.
        &self.calls[0]
    }
}

/// One line of the queue: a group, or (expanded) one of its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRow {
    pub group: usize,
    /// Index into the group's calls; `None` for the group's own line.
    pub member: Option<usize>,
}

/// What is under the cursor.
pub enum Selection<'a> {
    Group(&'a Group),
    Call(&'a PendingCall),
}

/// Which row is selected, by identity rather than position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    key: String,
    member: Option<i64>,
}

/// The details pane as last drawn: how far it can scroll, and by how much a page moves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Viewport {
    pub page: usize,
    pub max_scroll: usize,
}

/// What a refresh changed, for the run loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// A call arrived that was not shown before (time to ring the bell).
    pub arrived: bool,
    /// Something on screen changed (time to redraw).
    pub changed: bool,
}

#[derive(Debug, Clone)]
pub struct State {
    pub groups: Vec<Group>,
    pub recent: Vec<LogEntry>,
    /// Index into [`State::rows`].
    pub selected: usize,
    /// Keys of the groups shown with their members.
    pub expanded: HashSet<String>,
    pub mode: Mode,
    /// Lines the details (or full view) are scrolled down by.
    pub scroll: usize,
    /// Set by the run loop after each draw.
    pub viewport: Viewport,
    /// One line of feedback about the last action.
    pub status: Option<String>,
    pub now: OffsetDateTime,
    seen: HashSet<i64>,
    /// When the selection last changed under the cursor without a key press (the selected call
    /// went away, or a group grew): acting right then could act on a call nobody looked at.
    moved_at: Option<OffsetDateTime>,
    /// The calls this approver last resolved: their disappearance is no surprise.
    resolved: HashSet<i64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            groups: Vec::new(),
            recent: Vec::new(),
            selected: 0,
            expanded: HashSet::new(),
            mode: Mode::Browse,
            scroll: 0,
            viewport: Viewport::default(),
            status: None,
            now: OffsetDateTime::UNIX_EPOCH,
            seen: HashSet::new(),
            moved_at: None,
            resolved: HashSet::new(),
        }
    }
}

/// The directory `path` is in (`/` for `/` itself).
fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .map_or_else(|| path.to_owned(), |p| p.display().to_string())
}

/// `arguments` with every string that names the call's path replaced, so calls that differ only
/// by their path compare equal (and calls that differ in anything else, such as the content of a
/// write, do not).
fn without_path(arguments: &Value, path: &str) -> Value {
    match arguments {
        Value::String(s)
            if s == path
                || path
                    .strip_suffix(s.as_str())
                    .is_some_and(|rest| !s.is_empty() && rest.ends_with('/')) =>
        {
            Value::String("\u{0}path".into())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| without_path(v, path)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_path(v, path)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn group_key(call: &PendingCall) -> String {
    let (dir, arguments) = match &call.resource_path {
        Some(path) => (Some(parent(path)), without_path(&call.arguments, path)),
        // Without a path only exact repeats group: `run_command` calls differ in what they run.
        None => (None, call.arguments.clone()),
    };
    serde_json::json!([
        call.server,
        call.method,
        call.tool,
        call.action_type,
        call.agent,
        call.reasons,
        dir,
        arguments
    ])
    .to_string()
}

/// Groups `pending`, keeping arrival order (a group sits where its first call arrived).
pub fn group(pending: Vec<PendingCall>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for call in pending {
        let key = group_key(&call);
        match index.get(&key).and_then(|&i| groups.get_mut(i)) {
            Some(g) => g.calls.push(call),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    key,
                    under: call.resource_path.as_deref().map(parent),
                    calls: vec![call],
                });
            }
        }
    }
    groups
}

impl State {
    /// Replaces the lists, keeping the same row selected when it is still there.
    pub fn refresh(
        &mut self,
        pending: Vec<PendingCall>,
        recent: Vec<LogEntry>,
        now: OffsetDateTime,
    ) -> Refreshed {
        let before = self.cursor();
        let before_calls = self.acting_on();
        let shown = |groups: &[Group]| -> Vec<(i64, String)> {
            groups
                .iter()
                .flat_map(|g| g.calls.iter().map(|c| (c.id, c.request_hash.clone())))
                .collect()
        };
        let recent_ids = |rows: &[LogEntry]| -> Vec<(i64, Option<String>, Option<String>)> {
            rows.iter()
                .map(|r| (r.id, r.resolution.clone(), r.outcome.clone()))
                .collect()
        };
        let old_pending = shown(&self.groups);
        let old_recent = recent_ids(&self.recent);
        let arrived = pending.iter().any(|c| !self.seen.contains(&c.id));
        self.seen.extend(pending.iter().map(|c| c.id));
        self.groups = group(pending);
        self.expanded
            .retain(|k| self.groups.iter().any(|g| &g.key == k));
        self.recent = recent;
        let changed =
            arrived || old_pending != shown(&self.groups) || old_recent != recent_ids(&self.recent);
        self.now = now;
        let rows = self.rows();
        self.selected = before
            .as_ref()
            .and_then(|c| rows.iter().position(|r| self.cursor_of(*r) == *c))
            .unwrap_or_else(|| self.selected.min(rows.len().saturating_sub(1)));
        let after = self.cursor();
        let after_calls = self.acting_on();
        let grew = after_calls.iter().any(|id| !before_calls.contains(id));
        if before.is_some() && (after != before || grew) {
            // Something else is under the cursor now: keys wait until it has been looked at.
            self.moved_at = after.as_ref().map(|_| now);
            self.scroll = 0;
            let ours = !before_calls.is_empty()
                && before_calls.iter().all(|id| self.resolved.contains(id));
            if after == before {
                self.status =
                    Some("the selected group grew; look at its calls again before acting".into());
            } else if !ours {
                // A denial being typed, or a call being viewed, that went away (timeout,
                // cancel) has nothing left to act on.
                self.status = Some(match self.mode {
                    Mode::DenyReason(_) => "the call you were denying is no longer pending".into(),
                    _ => "the selected call is no longer pending; look at the new selection before acting".into(),
                });
                self.mode = Mode::Browse;
            } else if self.mode == Mode::Full {
                self.mode = Mode::Browse;
            }
        }
        Refreshed { arrived, changed }
    }

    /// The queue's lines: every group, and the members of expanded groups of more than one.
    pub fn rows(&self) -> Vec<QueueRow> {
        let mut rows = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            rows.push(QueueRow {
                group: i,
                member: None,
            });
            if g.calls.len() > 1 && self.expanded.contains(&g.key) {
                rows.extend((0..g.calls.len()).map(|m| QueueRow {
                    group: i,
                    member: Some(m),
                }));
            }
        }
        rows
    }

    /// How many calls are waiting, over all groups.
    pub fn waiting(&self) -> usize {
        self.groups.iter().map(|g| g.calls.len()).sum()
    }

    pub fn selection(&self) -> Option<Selection<'_>> {
        let row = *self.rows().get(self.selected)?;
        let group = self.groups.get(row.group)?;
        Some(match row.member {
            Some(m) => Selection::Call(group.calls.get(m)?),
            None if group.calls.len() == 1 => Selection::Call(group.first()),
            None => Selection::Group(group),
        })
    }

    /// The calls a key would act on now.
    fn acting_on(&self) -> Vec<i64> {
        match self.selection() {
            Some(Selection::Group(g)) => g.calls.iter().map(|c| c.id).collect(),
            Some(Selection::Call(c)) => vec![c.id],
            None => Vec::new(),
        }
    }

    fn cursor_of(&self, row: QueueRow) -> Cursor {
        let group = &self.groups[row.group];
        Cursor {
            key: group.key.clone(),
            member: row.member.and_then(|m| group.calls.get(m)).map(|c| c.id),
        }
    }

    fn cursor(&self) -> Option<Cursor> {
        self.rows().get(self.selected).map(|r| self.cursor_of(*r))
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
            Mode::Full => match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => {
                    self.mode = Mode::Browse;
                    self.scroll = 0;
                    Action::None
                }
                KeyCode::Up | KeyCode::Char('k') => self.scroll_by(-1),
                KeyCode::Down | KeyCode::Char('j') => self.scroll_by(1),
                _ => self.common_key(key.code),
            },
            Mode::Browse => match key.code {
                KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
                KeyCode::Up | KeyCode::Char('k') => {
                    self.select(self.selected.saturating_sub(1));
                    Action::None
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.select(self.selected + 1);
                    Action::None
                }
                KeyCode::Home | KeyCode::Char('g') => {
                    self.select(0);
                    Action::None
                }
                KeyCode::End | KeyCode::Char('G') => {
                    self.select(usize::MAX);
                    Action::None
                }
                KeyCode::Right | KeyCode::Char('l' | ' ') => {
                    self.expand(true);
                    Action::None
                }
                KeyCode::Left | KeyCode::Char('h') => {
                    self.expand(false);
                    Action::None
                }
                KeyCode::Enter if self.selection().is_some() => {
                    self.mode = Mode::Full;
                    self.scroll = 0;
                    Action::None
                }
                _ => self.common_key(key.code),
            },
        }
    }

    /// Keys that work the same in the queue and in the full view.
    fn common_key(&mut self, code: KeyCode) -> Action {
        let page = self.viewport.page.max(1) as isize;
        match code {
            KeyCode::PageDown => self.scroll_by(page),
            KeyCode::PageUp => self.scroll_by(-page),
            KeyCode::Char('a' | 's' | 'd') if self.just_moved() => {
                self.status =
                    Some("the selection just changed; look again, then press the key again".into());
                Action::None
            }
            KeyCode::Char('a') => self.resolve(Resolution::Approved, None),
            KeyCode::Char('s') => self.resolve(Resolution::ApprovedSession, None),
            KeyCode::Char('d') if self.selection().is_some() => {
                self.mode = Mode::DenyReason(String::new());
                Action::None
            }
            _ => Action::None,
        }
    }

    fn scroll_by(&mut self, lines: isize) -> Action {
        self.scroll = self
            .scroll
            .saturating_add_signed(lines)
            .min(self.viewport.max_scroll);
        Action::None
    }

    fn select(&mut self, index: usize) {
        let last = self.rows().len().saturating_sub(1);
        let index = index.min(last);
        if index != self.selected {
            self.scroll = 0;
        }
        self.selected = index;
        self.moved_at = None;
    }

    /// Shows (or hides) the members of the selected group; hiding them selects the group.
    fn expand(&mut self, open: bool) {
        let Some(row) = self.rows().get(self.selected).copied() else {
            return;
        };
        let key = self.groups[row.group].key.clone();
        if open {
            if self.groups[row.group].calls.len() > 1 {
                self.expanded.insert(key);
            }
        } else if self.expanded.remove(&key) {
            let index = self
                .rows()
                .iter()
                .position(|r| r.group == row.group)
                .unwrap_or(0);
            self.select(index);
        }
    }

    /// Whether the selection changed by itself less than a second ago.
    fn just_moved(&self) -> bool {
        self.moved_at
            .is_some_and(|at| self.now - at < time::Duration::SECOND)
    }

    fn resolve(&mut self, resolution: Resolution, reason: Option<String>) -> Action {
        let calls: Vec<Shown> = match self.selection() {
            Some(Selection::Group(g)) => g
                .calls
                .iter()
                .map(|c| Shown {
                    id: c.id,
                    hash: c.request_hash.clone(),
                })
                .collect(),
            Some(Selection::Call(c)) => vec![Shown {
                id: c.id,
                hash: c.request_hash.clone(),
            }],
            None => {
                self.status = Some("nothing is waiting for approval".into());
                return Action::None;
            }
        };
        self.resolved = calls.iter().map(|c| c.id).collect();
        Action::Resolve {
            calls,
            resolution,
            reason,
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

    /// A `delete_file` of `path`, as the filesystem server's client sends it.
    pub fn delete(id: i64, path: &str) -> PendingCall {
        PendingCall {
            tool: "delete_file".into(),
            resource_path: Some(path.into()),
            arguments: json!({"path": path}),
            ..call(id, "delete_file")
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::from(code)
    }

    fn state(ids: &[i64]) -> State {
        with(ids.iter().map(|&i| call(i, &format!("t{i}"))).collect())
    }

    fn with(pending: Vec<PendingCall>) -> State {
        let mut s = State::default();
        s.refresh(pending, vec![], OffsetDateTime::UNIX_EPOCH);
        s
    }

    fn selected_ids(s: &State) -> Vec<i64> {
        s.acting_on()
    }

    fn resolved_ids(action: &Action) -> Vec<i64> {
        match action {
            Action::Resolve { calls, .. } => calls.iter().map(|c| c.id).collect(),
            _ => Vec::new(),
        }
    }

    fn shown(id: i64) -> Vec<Shown> {
        vec![Shown {
            id,
            hash: format!("hash-{id}"),
        }]
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
        s.handle_key(&key(KeyCode::Home));
        assert_eq!(s.selected, 0);
        s.handle_key(&key(KeyCode::End));
        assert_eq!(s.selected, 2);
    }

    #[test]
    fn approve_and_session_approve_name_the_shown_request() {
        let mut s = state(&[1, 2]);
        s.handle_key(&key(KeyCode::Down));
        let want = |resolution| Action::Resolve {
            calls: shown(2),
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
                calls: shown(7),
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
        assert_eq!(s.handle_key(&key(KeyCode::Enter)), Action::None);
        assert_eq!(s.mode, Mode::Browse);
        assert_eq!(s.handle_key(&key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn refresh_keeps_the_selection_and_reports_arrivals() {
        let mut s = state(&[1, 2, 3]);
        s.selected = 2;
        let now = OffsetDateTime::UNIX_EPOCH;
        // Call 1 resolved elsewhere: the selection follows call 3.
        let got = s.refresh(vec![call(2, "t2"), call(3, "t3")], vec![], now);
        assert_eq!(
            got,
            Refreshed {
                arrived: false,
                changed: true
            }
        );
        assert_eq!(selected_ids(&s), [3]);
        let got = s.refresh(
            vec![call(2, "t2"), call(3, "t3"), call(4, "t4")],
            vec![],
            now,
        );
        assert!(got.arrived && got.changed);
        // Nothing new: nothing to redraw.
        let same = s.refresh(
            vec![call(2, "t2"), call(3, "t3"), call(4, "t4")],
            vec![],
            now,
        );
        assert_eq!(same, Refreshed::default());
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
        assert_eq!(resolved_ids(&s.handle_key(&key(KeyCode::Char('a')))), [2]);
        s.refresh(vec![call(3, "t3")], vec![], t0 + time::Duration::SECOND);
        s.handle_key(&key(KeyCode::Up));
        assert_eq!(resolved_ids(&s.handle_key(&key(KeyCode::Char('s')))), [3]);
    }

    #[test]
    fn ctrl_c_quits_even_while_typing() {
        let mut s = state(&[1]);
        s.handle_key(&key(KeyCode::Char('d')));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(s.handle_key(&ctrl_c), Action::Quit);
    }

    /// Twelve deletes under /tmp/build and one of /prod/db, interleaved.
    fn flood() -> Vec<PendingCall> {
        let mut calls: Vec<PendingCall> = (1..=12)
            .map(|i| delete(i, &format!("/tmp/build/obj{i}.o")))
            .collect();
        calls.insert(5, delete(99, "/prod/db"));
        calls
    }

    #[test]
    fn a_flood_is_one_row_and_the_odd_call_out_its_own() {
        let s = with(flood());
        assert_eq!(s.waiting(), 13);
        assert_eq!(s.rows().len(), 2);
        let group = &s.groups[0];
        assert_eq!(group.calls.len(), 12);
        assert_eq!(group.under.as_deref(), Some("/tmp/build"));
        assert_eq!(s.groups[1].calls[0].id, 99);
    }

    #[test]
    fn calls_group_only_when_identical_apart_from_the_path() {
        let write = |id, path: &str, content: &str| PendingCall {
            tool: "write_file".into(),
            action_type: "write".into(),
            resource_path: Some(path.into()),
            arguments: json!({"path": path, "content": content}),
            ..call(id, "write_file")
        };
        let shell = |id, command: &str| PendingCall {
            tool: "run".into(),
            resource_path: None,
            arguments: json!({"command": command}),
            ..call(id, "run")
        };
        let relative = |id, path: &str| PendingCall {
            arguments: json!({"path": path.rsplit('/').next()}),
            ..delete(id, path)
        };
        let cases: Vec<(&str, Vec<PendingCall>, usize)> = vec![
            ("same dir", vec![delete(1, "/a/x"), delete(2, "/a/y")], 1),
            ("other dir", vec![delete(1, "/a/x"), delete(2, "/b/x")], 2),
            ("subdir", vec![delete(1, "/a/x"), delete(2, "/a/b/x")], 2),
            (
                "relative arguments",
                vec![relative(1, "/a/x"), relative(2, "/a/y")],
                1,
            ),
            (
                "other content",
                vec![write(1, "/a/x", "one"), write(2, "/a/y", "two")],
                2,
            ),
            // A value that ends like the path but is not a path component stays significant.
            (
                "content like the name",
                vec![write(1, "/a/foo", "oo"), write(2, "/a/bar", "ar")],
                2,
            ),
            (
                "same content",
                vec![write(1, "/a/x", "same"), write(2, "/a/y", "same")],
                1,
            ),
            ("same command", vec![shell(1, "ls"), shell(2, "ls")], 1),
            (
                "other command",
                vec![shell(1, "ls"), shell(2, "rm -rf /")],
                2,
            ),
            (
                "other reasons",
                vec![
                    delete(1, "/a/x"),
                    PendingCall {
                        reasons: vec!["other".into()],
                        ..delete(2, "/a/y")
                    },
                ],
                2,
            ),
            (
                "other server",
                vec![
                    delete(1, "/a/x"),
                    PendingCall {
                        server: "fs2".into(),
                        ..delete(2, "/a/y")
                    },
                ],
                2,
            ),
        ];
        for (name, calls, rows) in cases {
            assert_eq!(group(calls).len(), rows, "{name}");
        }
    }

    #[test]
    fn acting_on_a_group_acts_on_each_member_and_a_member_alone() {
        let mut s = with(flood());
        let all = resolved_ids(&s.handle_key(&key(KeyCode::Char('a'))));
        assert_eq!(all, (1..=12).collect::<Vec<_>>());
        // Expanded, the members are rows of their own.
        s.handle_key(&key(KeyCode::Right));
        assert_eq!(s.rows().len(), 2 + 12);
        s.handle_key(&key(KeyCode::Down));
        s.handle_key(&key(KeyCode::Down));
        assert_eq!(selected_ids(&s), [2]);
        s.handle_key(&key(KeyCode::Char('d')));
        for c in "not this one".chars() {
            s.handle_key(&key(KeyCode::Char(c)));
        }
        assert_eq!(
            s.handle_key(&key(KeyCode::Enter)),
            Action::Resolve {
                calls: shown(2),
                resolution: Resolution::Denied,
                reason: Some("not this one".into())
            }
        );
        // Collapsing from a member selects its group.
        s.handle_key(&key(KeyCode::Left));
        assert_eq!(s.rows().len(), 2);
        assert_eq!(s.selected, 0);
        // The odd call out is acted on alone.
        s.handle_key(&key(KeyCode::Down));
        assert_eq!(resolved_ids(&s.handle_key(&key(KeyCode::Char('s')))), [99]);
    }

    #[test]
    fn a_group_that_grows_under_the_cursor_waits_to_be_looked_at() {
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(1);
        let mut s = with(vec![delete(1, "/tmp/b/1"), delete(2, "/tmp/b/2")]);
        s.refresh(
            vec![delete(1, "/tmp/b/1"), delete(2, "/tmp/b/2")],
            vec![],
            t0,
        );
        let grown = vec![
            delete(1, "/tmp/b/1"),
            delete(2, "/tmp/b/2"),
            delete(3, "/tmp/b/3"),
        ];
        s.refresh(grown.clone(), vec![], t0);
        assert!(
            s.status.as_deref().unwrap_or("").contains("grew"),
            "{:?}",
            s.status
        );
        assert_eq!(s.handle_key(&key(KeyCode::Char('a'))), Action::None);
        s.refresh(grown, vec![], t0 + time::Duration::SECOND);
        assert_eq!(
            resolved_ids(&s.handle_key(&key(KeyCode::Char('a')))),
            [1, 2, 3]
        );
        // Shrinking (members resolved elsewhere) acts on what is left, without a pause.
        s.refresh(
            vec![delete(1, "/tmp/b/1"), delete(3, "/tmp/b/3")],
            vec![],
            t0 + time::Duration::SECOND,
        );
        assert_eq!(
            resolved_ids(&s.handle_key(&key(KeyCode::Char('a')))),
            [1, 3]
        );
        // A single call that gains a twin becomes a group: a new row, so keys wait again.
        let mut s = with(vec![delete(1, "/tmp/b/1")]);
        s.refresh(vec![delete(1, "/tmp/b/1")], vec![], t0);
        s.refresh(
            vec![delete(1, "/tmp/b/1"), delete(2, "/tmp/b/2")],
            vec![],
            t0,
        );
        assert_eq!(s.handle_key(&key(KeyCode::Char('a'))), Action::None);
    }

    #[test]
    fn details_scroll_by_page_within_what_was_drawn() {
        let mut s = state(&[1]);
        s.viewport = Viewport {
            page: 5,
            max_scroll: 7,
        };
        s.handle_key(&key(KeyCode::PageDown));
        assert_eq!(s.scroll, 5);
        s.handle_key(&key(KeyCode::PageDown));
        assert_eq!(s.scroll, 7);
        s.handle_key(&key(KeyCode::PageUp));
        assert_eq!(s.scroll, 2);
        s.handle_key(&key(KeyCode::PageUp));
        assert_eq!(s.scroll, 0);
    }

    #[test]
    fn enter_opens_the_full_view_where_keys_still_act() {
        let mut s = state(&[1, 2]);
        s.viewport = Viewport {
            page: 20,
            max_scroll: 3,
        };
        s.handle_key(&key(KeyCode::Enter));
        assert_eq!(s.mode, Mode::Full);
        // Arrows scroll the call rather than move the selection; q goes back rather than quits.
        s.handle_key(&key(KeyCode::Down));
        assert_eq!((s.selected, s.scroll), (0, 1));
        assert_eq!(s.handle_key(&key(KeyCode::Char('q'))), Action::None);
        assert_eq!((s.mode.clone(), s.scroll), (Mode::Browse, 0));
        s.handle_key(&key(KeyCode::Enter));
        assert_eq!(resolved_ids(&s.handle_key(&key(KeyCode::Char('a')))), [1]);
        s.handle_key(&key(KeyCode::Char('d')));
        assert_eq!(s.mode, Mode::DenyReason(String::new()));
    }

    #[test]
    fn a_call_viewed_in_full_that_goes_away_returns_to_the_queue() {
        let mut s = state(&[1, 2]);
        s.handle_key(&key(KeyCode::Enter));
        s.refresh(vec![call(2, "t2")], vec![], OffsetDateTime::UNIX_EPOCH);
        assert_eq!(s.mode, Mode::Browse);
        assert!(s
            .status
            .as_deref()
            .unwrap_or("")
            .contains("no longer pending"));
    }
}
