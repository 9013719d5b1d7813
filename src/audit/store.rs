//! The SQLite audit store. Several processes (one wrapper per MCP server, plus readers) share one
//! file: WAL, a busy timeout, and `BEGIN IMMEDIATE` for every write so a transaction never has to
//! upgrade from read to write (which fails with SQLITE_BUSY regardless of the timeout).

use std::path::Path;
use std::time::Duration;

mod events;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use serde_json::{json, Value};

use super::chain::{self, Kind};

pub use events::{request_id, EventEntry, EventFilter, RefusedFrame, SessionRecord};

/// Forward-only migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_decisions.sql"),
    include_str!("migrations/002_approvals.sql"),
    include_str!("migrations/003_journal.sql"),
    include_str!("migrations/004_paths.sql"),
    include_str!("migrations/005_rollout.sql"),
    include_str!("migrations/006_team.sql"),
    include_str!("migrations/007_bundles.sql"),
    include_str!("migrations/008_export.sql"),
];

/// How long one SQLite call waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening keeps retrying while other processes create or migrate the same file.
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("audit database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("audit database {path} was written by a newer behavry (schema {found}, this one knows {known}); upgrade behavry")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

impl StoreError {
    /// Whether another process holding the database explains it: worth trying again.
    pub fn is_contention(&self) -> bool {
        match self {
            StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

/// How hard each commit tries to reach the disk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// WAL with `synchronous = NORMAL`: a killed process loses nothing; a power cut can lose
    /// the last commits.
    #[default]
    Normal,
    /// `synchronous = FULL`: every decision is fsynced before the call moves on.
    Full,
}

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with a result.
    Ok,
    /// The server answered with a JSON-RPC error.
    Error,
    /// The server answered with a tool result flagged `isError`.
    IsError,
    /// The client cancelled the call (`notifications/cancelled`) before it was answered.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::IsError => "is_error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// How an escalation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Approved,
    /// Approved, and later identical escalations in the same session are allowed without asking.
    ApprovedSession,
    Denied,
    Timeout,
    Cancelled,
    /// The wrapper holding it exited before anyone resolved it.
    Abandoned,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Approved => "approved",
            Resolution::ApprovedSession => "approved_session",
            Resolution::Denied => "denied",
            Resolution::Timeout => "timeout",
            Resolution::Cancelled => "cancelled",
            Resolution::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Resolution> {
        Some(match s {
            "approved" => Resolution::Approved,
            "approved_session" => Resolution::ApprovedSession,
            "denied" => Resolution::Denied,
            "timeout" => Resolution::Timeout,
            "cancelled" => Resolution::Cancelled,
            "abandoned" => Resolution::Abandoned,
            _ => return None,
        })
    }
}

/// A resolved escalation, as the wrapper holding it learns of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub resolution: Resolution,
    /// The denial reason typed by the approver, if any.
    pub reason: Option<String>,
    pub by: String,
}

/// A process, identified so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start: i64,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether this process still runs (and is not a zombie).
    pub fn is_alive(&self) -> bool {
        if let Some(start) = process_start(self.pid) {
            return start == self.start || self.start == 0;
        }
        if Path::new("/proc/self/stat").exists() {
            return false;
        }
        // No /proc (macOS, or a restricted mount): the start time cannot be compared, so only ask
        // whether the pid exists. Treating a live wrapper as gone would abandon its held calls.
        // SAFETY: signal 0 performs the permission and existence checks only.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

/// A process's start time, or `None` if it is gone or a zombie.
fn process_start(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// What a wrapper records alongside an escalated decision.
#[derive(Debug, Clone)]
pub struct Hold {
    pub owner: Owner,
    pub request_hash: String,
    pub expires_at: String,
}

/// A pending escalation, as the approver lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingCall {
    pub id: i64,
    pub ts: String,
    pub session_id: String,
    pub server: String,
    pub tool: String,
    pub method: String,
    pub action_type: String,
    pub resource_path: Option<String>,
    pub reasons: Vec<String>,
    pub agent: String,
    pub requester: String,
    pub arguments: Value,
    pub request_hash: String,
    pub expires_at: String,
    #[serde(skip)]
    pub owner: Owner,
}

/// A decision about to be recorded.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub session_id: String,
    pub server: String,
    pub tool: String,
    pub method: String,
    pub action_type: String,
    pub resource_path: Option<String>,
    /// Every canonical path the call names (`resource.paths`, without repeats).
    pub paths: Vec<String>,
    pub decision: String,
    pub reasons: Vec<String>,
    /// Stored redacted (see [`redact`]): the store does it on write.
    pub arguments: Value,
    pub agent: String,
    pub requester: String,
    pub channel: String,
    pub policy_hash: String,
    pub request_id: String,
    /// Set when an escalation is resolved at the moment it is recorded (`approved_session`).
    pub resolution: Option<Resolution>,
    /// False in monitor mode: the call was forwarded whatever `decision` says.
    pub enforced: bool,
    /// The policy input the decision was made on (stored redacted), for `behavry policy replay`.
    pub input: Option<Value>,
    /// The team bundles active when the call was decided, as JSON
    /// (`{"NAME": {"revision": …, "sha256": …}}`); `None` without bundles.
    pub bundles: Option<String>,
}

/// A row as `behavry log` shows it. The JSON field names are a contract for other tools.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    #[serde(skip)]
    pub id: i64,
    pub ts: String,
    pub session_id: String,
    pub server: String,
    pub tool: String,
    pub method: String,
    pub action_type: String,
    pub resource_path: Option<String>,
    /// Every path the call names; for rows recorded before paths were stored, `resource_path`.
    pub paths: Vec<String>,
    pub decision: String,
    pub resolution: Option<String>,
    pub reasons: Vec<String>,
    pub arguments: Value,
    pub agent: String,
    pub requester: String,
    pub channel: String,
    /// The JSON-RPC id as JSON text: `2`, `"abc"` (see [`request_id`]).
    pub request_id: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<f64>,
    pub policy_hash: String,
    /// Who or what resolved an escalation, and when.
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    /// False for a call decided in monitor mode: it was forwarded, and `decision` is what
    /// enforcement would have done.
    pub enforced: bool,
    /// The team bundles that decided (`{"NAME": {"revision", "sha256"}}`); absent without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundles: Option<Value>,
}

/// What `behavry log --stats` prints: (key, count) pairs, largest first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub total: u64,
    pub decision: Vec<(String, u64)>,
    pub resolution: Vec<(String, u64)>,
    pub server: Vec<(String, u64)>,
    pub tool: Vec<(String, u64)>,
}

/// Which rows `behavry log` wants. Empty fields don't filter.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub decision: Option<String>,
    pub server: Option<String>,
    /// A bare tool name, or `<server>/<tool>`.
    pub tool: Option<String>,
    pub session: Option<String>,
    /// RFC 3339 timestamp; rows at or after it.
    pub since: Option<String>,
    /// Rows with a larger id only (for `--follow`).
    pub after_id: Option<i64>,
    /// The newest N (still returned oldest first).
    pub limit: Option<u64>,
    /// Only rows decided in enforce mode (`Some(true)`) or in monitor mode (`Some(false)`).
    pub enforced: Option<bool>,
}

pub struct Store {
    conn: Connection,
    path: String,
    durability: Durability,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Durability::Normal)
    }

    /// Opens the store, waiting out other processes that are creating or migrating the same file.
    ///
    /// Several wrappers start in the same instant (a client launches every configured server at
    /// once), and on a new file one of them switches it to WAL and creates the schema while the
    /// others open it. Some of those steps report SQLITE_BUSY without consulting the busy timeout
    /// (changing the journal mode, reading a schema another connection is writing), so the whole
    /// set-up is retried with backoff until [`OPEN_PATIENCE`] runs out.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match Store::open_once(path, durability) {
                Err(e) if e.is_contention() && started.elapsed() < OPEN_PATIENCE => {
                    // Jitter by pid so processes that collided once do not collide again in step.
                    let jitter = Duration::from_millis(u64::from(std::process::id() % 7));
                    std::thread::sleep(pause + jitter);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            let create = |source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            };
            std::fs::create_dir_all(parent).map_err(create)?;
            // The log holds call arguments (file contents, commands): for this user's eyes only.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .map_err(create)?;
        }
        let sql = sqlite_err(&shown);
        let conn = Connection::open(path).map_err(&sql)?;
        // First, before anything touches the file: several wrappers write at once; wait for each
        // other's short transactions rather than fail.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&sql)?;
        // WAL is a property of the file: once one process switched it, the others only read it
        // (switching needs an exclusive lock, and contends with everyone opening the file).
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(&sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(&sql)?;
        }
        // In WAL mode NORMAL survives a crashed process; only power loss can drop the last commits.
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(&sql)?;
        let mut store = Store {
            conn,
            path: shown.clone(),
            durability,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies the migrations this file lacks, all in one IMMEDIATE transaction: a process that
    /// opens the file meanwhile waits, then sees the finished schema.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let sql = sqlite_err(&self.path);
        let known = MIGRATIONS.len() as i64;
        // Up to date (the usual case): no write lock, so readers never queue behind writers here.
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sql)?;
        if version == known {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sql)?;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.execute_batch(migration).map_err(&sql)?;
        }
        tx.pragma_update(None, "user_version", known)
            .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Records a decision and commits it; returns the row id.
    pub fn record_decision(&mut self, row: &DecisionRow) -> Result<i64, StoreError> {
        self.record_decision_with(row, None, &[])
    }

    /// Records an escalated decision together with its pending approval, in one transaction.
    pub fn record_escalation(&mut self, row: &DecisionRow, hold: &Hold) -> Result<i64, StoreError> {
        self.record_decision_with(row, Some(hold), &[])
    }

    /// Records a decision (with its pending approval when `hold` is given) and, in the same
    /// transaction, the outcomes of earlier calls that were waiting to be written: one commit
    /// instead of one per outcome.
    pub fn record_decision_with(
        &mut self,
        row: &DecisionRow,
        hold: Option<&Hold>,
        outcomes: &[OutcomeRow],
    ) -> Result<i64, StoreError> {
        let ids = self.record_decisions(&[(row, hold)], outcomes)?;
        ids.first().copied().ok_or_else(|| StoreError::Sqlite {
            path: self.path.clone(),
            source: rusqlite::Error::QueryReturnedNoRows,
        })
    }

    /// Records several decisions (each with its pending approval, if any) and the outcomes
    /// waiting to be written, in one transaction: one commit for every call decided meanwhile
    /// (group commit). All or none are written; the ids come back in order.
    pub fn record_decisions(
        &mut self,
        rows: &[(&DecisionRow, Option<&Hold>)],
        outcomes: &[OutcomeRow],
    ) -> Result<Vec<i64>, StoreError> {
        let sql = sqlite_err(&self.path);
        let tx = self.write_tx()?;
        append_outcomes(&tx, outcomes).map_err(&sql)?;
        let ids = rows
            .iter()
            .map(|(row, hold)| insert_decision(&tx, row, *hold))
            .collect::<rusqlite::Result<Vec<i64>>>()
            .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(ids)
    }

    /// Records how a forwarded call ended, as a journal record referring to its decision.
    pub fn record_outcome(
        &mut self,
        id: i64,
        outcome: Outcome,
        duration_ms: f64,
    ) -> Result<(), StoreError> {
        self.record_outcomes(&[OutcomeRow {
            id,
            outcome,
            duration_ms,
            ts: now_rfc3339(),
        }])
    }

    /// Records several outcomes in one transaction.
    pub fn record_outcomes(&mut self, outcomes: &[OutcomeRow]) -> Result<(), StoreError> {
        let sql = sqlite_err(&self.path);
        let tx = self.write_tx()?;
        append_outcomes(&tx, outcomes).map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Appends a record that is not about one decision (policy reloads, server requests).
    /// Secret-looking values are redacted here, where the data lands, whoever the caller.
    pub fn record_event(&mut self, kind: Kind, body: &Value) -> Result<i64, StoreError> {
        let sql = sqlite_err(&self.path);
        let body = redact(body);
        let tx = self.write_tx()?;
        let seq = chain::append(&tx, &now_rfc3339(), kind, None, &body).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(seq)
    }

    /// Records a client frame refused before evaluation.
    pub fn record_refused_frame(&mut self, frame: &RefusedFrame) -> Result<i64, StoreError> {
        self.record_event(Kind::RefusedFrame, &frame.body())
    }

    /// Records a session's client and what was negotiated.
    pub fn record_session(&mut self, session: &SessionRecord) -> Result<i64, StoreError> {
        let body = serde_json::to_value(session).unwrap_or(Value::Null);
        self.record_event(Kind::Session, &body)
    }

    /// Records a request the server sent the client; its params are redacted here.
    pub fn record_server_request(
        &mut self,
        session_id: &str,
        server: &str,
        method: &str,
        id: &Value,
        params: &Value,
    ) -> Result<i64, StoreError> {
        let body = json!({
            "session_id": session_id,
            "server": server,
            "method": method,
            "request_id": request_id(id),
            "params": params,
        });
        self.record_event(Kind::ServerRequest, &body)
    }

    /// Leaves WAL checkpoints to [`Store::checkpoint`], except as a safety net when the WAL
    /// grows large (about 40 MiB) without a pause.
    pub fn defer_checkpoints(&self) {
        let _ = self.conn.pragma_update(None, "wal_autocheckpoint", 10_000);
    }

    /// Copies what it can of the WAL into the database without waiting for readers.
    pub fn checkpoint(&self) {
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// Whether a write waits for another process's lock (up to the busy timeout) or fails at
    /// once with a contention error, so the caller can take a slower path instead.
    pub fn wait_for_locks(&self, wait: bool) {
        let timeout = if wait { BUSY_TIMEOUT } else { Duration::ZERO };
        let _ = self.conn.busy_timeout(timeout);
    }

    /// The durability commits are made with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// A write transaction, taken at once (BEGIN IMMEDIATE) so it never fails upgrading a read
    /// lock while another process writes.
    pub(super) fn write_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_err(&self.path))
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError {
        sqlite_err(&self.path)
    }

    /// Rows matching `filter`, oldest first.
    pub fn query(&self, filter: &LogFilter) -> Result<Vec<LogEntry>, StoreError> {
        let mut clauses = Vec::new();
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn rusqlite::ToSql>| {
            args.push(value);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(d) = &filter.decision {
            push("d.decision = ?", Box::new(d.clone()));
        }
        if let Some(s) = &filter.server {
            push("d.server = ?", Box::new(s.clone()));
        }
        if let Some(t) = &filter.tool {
            match t.split_once('/').filter(|(s, _)| {
                filter.server.is_none()
                    && !t.starts_with("resources/")
                    && !t.starts_with("prompts/")
                    && !s.is_empty()
            }) {
                Some((server, tool)) => {
                    push("d.server = ?", Box::new(server.to_owned()));
                    push("d.tool = ?", Box::new(tool.to_owned()));
                }
                None => push("d.tool = ?", Box::new(t.clone())),
            }
        }
        if let Some(s) = &filter.session {
            push("d.session_id = ?", Box::new(s.clone()));
        }
        if let Some(s) = &filter.since {
            push("d.ts >= ?", Box::new(s.clone()));
        }
        if let Some(a) = filter.after_id {
            push("d.id > ?", Box::new(a));
        }
        if let Some(e) = filter.enforced {
            push("d.enforced = ?", Box::new(e));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let sql = format!(
            "SELECT * FROM (SELECT d.id, d.ts, d.session_id, d.server, d.tool, d.method, d.action_type,
                d.resource_path, d.decision, json_extract(r.body, '$.resolution'), d.reasons, d.arguments,
                d.agent, d.requester, d.channel, d.request_id, json_extract(o.body, '$.outcome'),
                json_extract(o.body, '$.duration_ms'), d.policy_hash, json_extract(r.body, '$.by'), r.ts,
                json_extract(r.body, '$.reason'),
                CAST(round((julianday(a.expires_at) - julianday(a.created_at)) * 86400) AS INTEGER),
                d.paths, d.enforced, d.bundles
             FROM decisions d
             LEFT JOIN journal o ON o.ref_seq = d.id AND o.kind = 'outcome'
             LEFT JOIN journal r ON r.ref_seq = d.id AND r.kind = 'resolution'
             LEFT JOIN approvals a ON a.decision_id = d.id
             {where_sql} ORDER BY d.id DESC LIMIT {limit})
             ORDER BY 1 ASC"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.sqlite())?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                |r| {
                    let reasons: String = r.get(10)?;
                    let arguments: String = r.get(11)?;
                    let resource_path: Option<String> = r.get(7)?;
                    let paths: Option<String> = r.get(23)?;
                    let paths = match paths {
                        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
                        None => resource_path.iter().cloned().collect(),
                    };
                    let resolution: Option<String> = r.get(9)?;
                    let resolved_by: Option<String> = r.get(19)?;
                    let denied_because: Option<String> = r.get(21)?;
                    let held_for: Option<i64> = r.get(22)?;
                    // The reasons the agent was given: the policy's, then how the wait ended.
                    let mut reasons: Vec<String> =
                        serde_json::from_str(&reasons).unwrap_or_default();
                    reasons.extend(resolution_reason(
                        resolution.as_deref().and_then(Resolution::parse),
                        denied_because.as_deref(),
                        resolved_by.as_deref().unwrap_or(""),
                        held_for.map(|s| Duration::from_secs(s.max(0) as u64)),
                    ));
                    // A held call the client cancelled never reached the server: that is its
                    // outcome, as for a forwarded call the client cancelled.
                    let outcome: Option<String> = r.get::<_, Option<String>>(16)?.or_else(|| {
                        (resolution.as_deref() == Some(Resolution::Cancelled.as_str()))
                            .then(|| Outcome::Cancelled.as_str().to_owned())
                    });
                    Ok(LogEntry {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        session_id: r.get(2)?,
                        server: r.get(3)?,
                        tool: r.get(4)?,
                        method: r.get(5)?,
                        action_type: r.get(6)?,
                        resource_path,
                        paths,
                        decision: r.get(8)?,
                        resolution,
                        reasons,
                        arguments: serde_json::from_str(&arguments).unwrap_or(Value::Null),
                        agent: r.get(12)?,
                        requester: r.get(13)?,
                        channel: r.get(14)?,
                        request_id: r.get(15)?,
                        outcome,
                        duration_ms: r.get(17)?,
                        policy_hash: r.get(18)?,
                        resolved_by,
                        resolved_at: r.get(20)?,
                        enforced: r.get(24)?,
                        bundles: r
                            .get::<_, Option<String>>(25)?
                            .and_then(|b| serde_json::from_str(&b).ok()),
                    })
                },
            )
            .map_err(self.sqlite())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sqlite())
    }

    /// Resolves a pending escalation, if it is still pending (and, when `hash` is given, if it is
    /// still the request the caller was shown). Returns whether this call resolved it: the first
    /// resolution wins, so an approval racing a timeout or a cancellation cannot both take effect.
    pub fn resolve(
        &mut self,
        id: i64,
        hash: Option<&str>,
        resolution: Resolution,
        reason: Option<&str>,
        by: &str,
    ) -> Result<bool, StoreError> {
        let sql = sqlite_err(&self.path);
        let tx = self.write_tx()?;
        let changed = tx
            .execute(
                "UPDATE approvals SET state = ?1, deny_reason = ?2, resolved_by = ?3, resolved_at = ?4
                 WHERE decision_id = ?5 AND state = 'pending' AND (?6 IS NULL OR request_hash = ?6)",
                params![resolution.as_str(), reason, by, now_rfc3339(), id, hash],
            )
            .map_err(&sql)?;
        if changed == 1 {
            let body = json!({"resolution": resolution.as_str(), "reason": reason, "by": by});
            chain::append(&tx, &now_rfc3339(), Kind::Resolution, Some(id), &body).map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        Ok(changed == 1)
    }

    /// How an escalation was resolved; `None` while it is pending (or unknown).
    pub fn resolution(&self, id: i64) -> Result<Option<Resolved>, StoreError> {
        let row: Option<(String, Option<String>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT state, deny_reason, resolved_by FROM approvals WHERE decision_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sqlite())?;
        Ok(row.and_then(|(state, reason, by)| {
            Resolution::parse(&state).map(|resolution| Resolved {
                resolution,
                reason,
                by: by.unwrap_or_default(),
            })
        }))
    }

    /// The resolved ones among escalations `ids` (pending and unknown ones are left out): one
    /// query however many calls a wrapper holds.
    pub fn resolutions(&self, ids: &[i64]) -> Result<Vec<(i64, Resolved)>, StoreError> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT decision_id, state, deny_reason, resolved_by FROM approvals
                 WHERE state != 'pending' AND decision_id IN (SELECT value FROM json_each(?1))",
            )
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([ids], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(self.sqlite())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sqlite())?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, state, reason, by)| {
                Resolution::parse(&state).map(|resolution| {
                    let by = by.unwrap_or_default();
                    (
                        id,
                        Resolved {
                            resolution,
                            reason,
                            by,
                        },
                    )
                })
            })
            .collect())
    }

    /// A number that changes whenever another connection (another process) commits: a cheap
    /// way to learn that nothing was resolved since the last look (`PRAGMA data_version`).
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.sqlite())
    }

    /// Pending escalations whose wrapper is still alive, oldest first. Escalations whose wrapper is
    /// gone are resolved `abandoned` on the way.
    pub fn pending(&mut self) -> Result<Vec<PendingCall>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.id, d.ts, d.session_id, d.server, d.tool, d.method, d.action_type, d.resource_path,
                        d.reasons, d.agent, d.requester, a.summary, a.request_hash, a.expires_at,
                        a.owner_pid, a.owner_start
                 FROM approvals a JOIN decisions d ON d.id = a.decision_id
                 WHERE a.state = 'pending' ORDER BY d.id",
            )
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([], |r| {
                let reasons: String = r.get(8)?;
                let summary: String = r.get(11)?;
                Ok(PendingCall {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    session_id: r.get(2)?,
                    server: r.get(3)?,
                    tool: r.get(4)?,
                    method: r.get(5)?,
                    action_type: r.get(6)?,
                    resource_path: r.get(7)?,
                    reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                    agent: r.get(9)?,
                    requester: r.get(10)?,
                    arguments: serde_json::from_str(&summary).unwrap_or(Value::Null),
                    request_hash: r.get(12)?,
                    expires_at: r.get(13)?,
                    owner: Owner {
                        pid: r.get(14)?,
                        start: r.get(15)?,
                    },
                })
            })
            .map_err(self.sqlite())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sqlite())?;
        drop(stmt);
        let (live, gone): (Vec<_>, Vec<_>) = rows.into_iter().partition(|p| p.owner.is_alive());
        for call in gone {
            self.resolve(
                call.id,
                None,
                Resolution::Abandoned,
                None,
                "behavry (the wrapper holding it exited)",
            )?;
        }
        Ok(live)
    }

    /// Resolves `abandoned` every escalation `owner` still holds (a wrapper on its way out).
    pub fn abandon_held(&mut self, owner: Owner) -> Result<usize, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT decision_id FROM approvals WHERE state = 'pending' AND owner_pid = ?1 AND owner_start = ?2")
                .map_err(self.sqlite())?;
            let ids = stmt
                .query_map(params![owner.pid, owner.start], |r| r.get(0))
                .map_err(self.sqlite())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sqlite())?;
            ids
        };
        let mut count = 0;
        for id in ids {
            count += usize::from(self.resolve(
                id,
                None,
                Resolution::Abandoned,
                None,
                "behavry (the wrapper exited)",
            )?);
        }
        Ok(count)
    }

    /// Counts of decisions (since `since`, if given) by decision, resolution, server and tool.
    pub fn stats(&self, since: Option<&str>) -> Result<Stats, StoreError> {
        let since = since.unwrap_or("");
        let count = |column: &str| -> Result<Vec<(String, u64)>, StoreError> {
            let sql = format!(
                "SELECT coalesce({column}, '-'), count(*) FROM decisions d
                 LEFT JOIN journal r ON r.ref_seq = d.id AND r.kind = 'resolution'
                 WHERE d.ts >= ?1 GROUP BY 1 ORDER BY 2 DESC, 1"
            );
            let mut stmt = self.conn.prepare(&sql).map_err(self.sqlite())?;
            let rows = stmt
                .query_map([since], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .map_err(self.sqlite())?;
            rows.collect::<Result<_, _>>().map_err(self.sqlite())
        };
        let decision = count("d.decision")?;
        Ok(Stats {
            total: decision.iter().map(|(_, n)| n).sum(),
            resolution: count("json_extract(r.body, '$.resolution')")?
                .into_iter()
                .filter(|(k, _)| k != "-")
                .collect(),
            server: count("d.server")?,
            tool: count("d.server || '/' || d.tool")?,
            decision,
        })
    }

    /// The largest row id, for `--follow` to start after.
    pub fn last_id(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(id) FROM decisions", [], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.sqlite())
    }
}

/// What the agent is told when a held call is denied by a person or times out; `None` for
/// resolutions that release the call or send nothing. `held_for`: how long the call could wait.
/// The log appends it to the decision's reasons, so the wrapper's reply and the log say the same.
pub fn resolution_reason(
    resolution: Option<Resolution>,
    reason: Option<&str>,
    by: &str,
    held_for: Option<Duration>,
) -> Option<String> {
    match resolution? {
        Resolution::Denied => Some(match reason {
            Some(reason) => format!("a person denied this call ({by}): {reason}"),
            None => format!("a person denied this call ({by})"),
        }),
        Resolution::Timeout => Some(match held_for {
            Some(d) => format!(
                "this call needs a person's approval and was not approved within {}",
                crate::approval::human(d)
            ),
            None => "this call needs a person's approval and was not approved in time".to_owned(),
        }),
        _ => None,
    }
}

/// The outcome of a forwarded call, waiting to be written (see [`Store::record_decision_with`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    /// The decision it is the outcome of.
    pub id: i64,
    pub outcome: Outcome,
    pub duration_ms: f64,
    /// When the answer came (not when it is written).
    pub ts: String,
}

/// Inserts one decision (its journal record, its row, its pending approval, and the resolution an
/// earlier session approval gives it) inside `tx`.
fn insert_decision(
    tx: &Transaction<'_>,
    row: &DecisionRow,
    hold: Option<&Hold>,
) -> rusqlite::Result<i64> {
    let ts = now_rfc3339();
    let reasons = serde_json::to_string(&row.reasons).unwrap_or_else(|_| "[]".into());
    // Redacted here, where the data lands, so no caller can forget it.
    let arguments = chain::canonical(&redact(&row.arguments));
    let paths = serde_json::to_string(&row.paths).unwrap_or_else(|_| "[]".into());
    let decision_id = uuid::Uuid::new_v4().to_string();
    let body = decision_body(&DecisionFields {
        ts: &ts,
        session_id: &row.session_id,
        server: &row.server,
        tool: &row.tool,
        method: &row.method,
        action_type: &row.action_type,
        resource_path: row.resource_path.as_deref(),
        paths: Some(&paths),
        decision: &row.decision,
        reasons: &reasons,
        arguments: &arguments,
        agent: &row.agent,
        requester: &row.requester,
        channel: &row.channel,
        policy_hash: &row.policy_hash,
        request_id: &row.request_id,
        request_hash: hold.map(|h| h.request_hash.as_str()),
        enforced: row.enforced,
        decision_id: Some(&decision_id),
        bundles: row.bundles.as_deref(),
    });
    let id = chain::append(tx, &ts, Kind::Decision, None, &body)?;
    tx.prepare_cached(
        "INSERT INTO decisions (id, ts, session_id, server, tool, method, action_type, resource_path,
            decision, reasons, arguments, agent, requester, channel, policy_hash, request_id, paths,
            enforced, decision_id, bundles)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            ts,
            row.session_id,
            row.server,
            row.tool,
            row.method,
            row.action_type,
            row.resource_path,
            row.decision,
            reasons,
            arguments,
            row.agent,
            row.requester,
            row.channel,
            row.policy_hash,
            row.request_id,
            paths,
            row.enforced,
            decision_id,
            row.bundles
        ])
    })?;
    if let Some(input) = &row.input {
        // Kept for `behavry policy replay`, redacted like the arguments.
        tx.prepare_cached("INSERT INTO decision_inputs (decision_id, input) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(params![id, chain::canonical(&redact(input))]))?;
    }
    if let Some(hold) = hold {
        tx.execute(
            "INSERT INTO approvals (decision_id, owner_pid, owner_start, request_hash, summary, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, hold.owner.pid, hold.owner.start, hold.request_hash, arguments, ts, hold.expires_at],
        )
        ?;
    }
    if let Some(resolution) = row.resolution {
        let body = json!({"resolution": resolution.as_str(), "reason": null, "by": BY_SESSION});
        chain::append(tx, &ts, Kind::Resolution, Some(id), &body)?;
    }
    Ok(id)
}

fn append_outcomes(tx: &Transaction<'_>, outcomes: &[OutcomeRow]) -> rusqlite::Result<()> {
    for o in outcomes {
        // Microseconds are all the precision a duration has; more digits are float noise.
        let duration_ms = (o.duration_ms * 1000.0).round() / 1000.0;
        let body = json!({"outcome": o.outcome.as_str(), "duration_ms": duration_ms});
        chain::append(tx, &o.ts, Kind::Outcome, Some(o.id), &body)?;
    }
    Ok(())
}

/// Who resolved an escalation that an earlier "approve for this session" covered.
pub const BY_SESSION: &str = "behavry (approved for this session earlier)";

/// The columns of a decision row, as text, exactly as stored.
pub(super) struct DecisionFields<'a> {
    pub ts: &'a str,
    pub session_id: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub method: &'a str,
    pub action_type: &'a str,
    pub resource_path: Option<&'a str>,
    /// JSON text; `None` for rows recorded before paths were stored (their body has no `paths`).
    pub paths: Option<&'a str>,
    pub decision: &'a str,
    /// JSON text.
    pub reasons: &'a str,
    /// Canonical JSON text.
    pub arguments: &'a str,
    pub agent: &'a str,
    pub requester: &'a str,
    pub channel: &'a str,
    pub policy_hash: &'a str,
    pub request_id: &'a str,
    /// For escalations: the hash of the held request.
    pub request_hash: Option<&'a str>,
    pub enforced: bool,
    /// `None` for rows recorded before decisions had ids (their body has no `decision_id`).
    pub decision_id: Option<&'a str>,
    /// JSON text; `None` when no bundle was active.
    pub bundles: Option<&'a str>,
}

/// A decision's journal body. Built from the same text that goes into (and is read back from)
/// the decisions table, so `--verify` can rebuild it from the row and compare.
pub(super) fn decision_body(f: &DecisionFields) -> Value {
    let mut body = json!({
        "ts": f.ts, "session_id": f.session_id, "server": f.server, "tool": f.tool, "method": f.method,
        "action_type": f.action_type, "resource_path": f.resource_path, "decision": f.decision,
        "reasons": f.reasons, "arguments": f.arguments, "agent": f.agent, "requester": f.requester,
        "channel": f.channel, "policy_hash": f.policy_hash, "request_id": f.request_id,
        "request_hash": f.request_hash,
    });
    if let Some(paths) = f.paths {
        body["paths"] = json!(paths);
    }
    // Only monitor-mode records say so: every earlier record stays as it was hashed.
    if !f.enforced {
        body["enforced"] = json!(false);
    }
    if let Some(id) = f.decision_id {
        body["decision_id"] = json!(id);
    }
    if let Some(bundles) = f.bundles {
        body["bundles"] = json!(bundles);
    }
    body
}

/// Rebuilds the journal body of decision `id` from its row, or `None` if the row is gone.
pub(super) fn decision_body_from_table(
    conn: &Connection,
    id: i64,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT d.ts, d.session_id, d.server, d.tool, d.method, d.action_type, d.resource_path, d.decision,
                d.reasons, d.arguments, d.agent, d.requester, d.channel, d.policy_hash, d.request_id,
                a.request_hash, d.paths, d.enforced, d.decision_id, d.bundles
         FROM decisions d LEFT JOIN approvals a ON a.decision_id = d.id WHERE d.id = ?1",
    )?
    .query_row([id], |r| {
        let text: Vec<Option<String>> = (0..17).map(|i| r.get(i)).collect::<Result<_, _>>()?;
        let enforced: bool = r.get(17)?;
        let decision_id: Option<String> = r.get(18)?;
        let bundles: Option<String> = r.get(19)?;
        let t = |i: usize| text[i].as_deref().unwrap_or("");
        Ok(chain::canonical(&decision_body(&DecisionFields {
            ts: t(0),
            session_id: t(1),
            server: t(2),
            tool: t(3),
            method: t(4),
            action_type: t(5),
            resource_path: text[6].as_deref(),
            paths: text[16].as_deref(),
            decision: t(7),
            reasons: t(8),
            arguments: t(9),
            agent: t(10),
            requester: t(11),
            channel: t(12),
            policy_hash: t(13),
            request_id: t(14),
            request_hash: text[15].as_deref(),
            enforced,
            decision_id: decision_id.as_deref(),
            bundles: bundles.as_deref(),
        })))
    })
    .optional()
}

fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

/// Key fragments that mark an argument as secret; its value is never stored.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "credential",
    "private_key",
    "cookie",
];

/// Replaces the values of secret-looking keys (at any depth) with `"[redacted]"`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                        (k.clone(), Value::String("[redacted]".into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

const TS_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// Now, as stored in `ts`.
pub fn now_rfc3339() -> String {
    format_ts(time::OffsetDateTime::now_utc())
}

/// Formats a UTC time the way `ts` is stored, so string comparison orders by time.
pub fn format_ts(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TS_FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A decision row for store and chain tests; the float argument exercises canonical JSON.
    pub(crate) fn row(decision: &str, tool: &str) -> DecisionRow {
        DecisionRow {
            session_id: "s1".into(),
            server: "fs".into(),
            tool: tool.into(),
            method: "tools/call".into(),
            action_type: "write".into(),
            resource_path: Some("/tmp/x".into()),
            paths: vec!["/tmp/x".into()],
            decision: decision.into(),
            reasons: vec!["because".into()],
            arguments: json!({"path": "/tmp/x", "n": 1.5}),
            agent: "claude-code".into(),
            requester: "alice".into(),
            channel: "claude-code".into(),
            policy_hash: "abc".into(),
            request_id: "1".into(),
            resolution: None,
            enforced: true,
            input: None,
            bundles: None,
        }
    }

    #[test]
    fn records_queries_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("sub/behavry.db")).unwrap();
        let a = store.record_decision(&row("allow", "read_file")).unwrap();
        store.record_decision(&row("deny", "write_file")).unwrap();
        store.record_outcome(a, Outcome::IsError, 1.5).unwrap();

        let all = store.query(&LogFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].outcome.as_deref(), Some("is_error"));
        assert_eq!(all[0].duration_ms, Some(1.5));
        assert_eq!(all[1].decision, "deny");
        assert_eq!(all[1].reasons, ["because"]);

        let f = |f: LogFilter| store.query(&f).unwrap().len();
        assert_eq!(
            f(LogFilter {
                decision: Some("deny".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            f(LogFilter {
                tool: Some("fs/write_file".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            f(LogFilter {
                tool: Some("other/write_file".into()),
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            f(LogFilter {
                server: Some("nope".into()),
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            f(LogFilter {
                since: Some("2999-01-01T00:00:00.000Z".into()),
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            f(LogFilter {
                after_id: Some(a),
                ..Default::default()
            }),
            1
        );
        let newest = store
            .query(&LogFilter {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(newest[0].tool, "write_file");
        assert_eq!(store.last_id().unwrap(), Some(a + 1));
    }

    fn held(store: &mut Store) -> i64 {
        let hold = Hold {
            owner: Owner::current(),
            request_hash: "h".into(),
            expires_at: format_ts(time::OffsetDateTime::now_utc() + time::Duration::minutes(5)),
        };
        store
            .record_escalation(&row("escalate", "delete_file"), &hold)
            .unwrap()
    }

    #[test]
    fn the_log_gives_the_reasons_the_agent_was_given_and_how_the_call_ended() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        let denied = held(&mut store);
        store
            .resolve(
                denied,
                None,
                Resolution::Denied,
                Some("not on a Friday"),
                "alice",
            )
            .unwrap();
        let timed_out = held(&mut store);
        store
            .resolve(
                timed_out,
                None,
                Resolution::Timeout,
                None,
                "behavry (approval timeout)",
            )
            .unwrap();
        let cancelled = held(&mut store);
        store
            .resolve(cancelled, None, Resolution::Cancelled, None, "behavry")
            .unwrap();
        let forwarded = store.record_decision(&row("allow", "slow")).unwrap();
        store
            .record_outcome(forwarded, Outcome::Cancelled, 12.0)
            .unwrap();

        let rows = store.query(&LogFilter::default()).unwrap();
        assert_eq!(
            rows[0].reasons,
            [
                "because",
                "a person denied this call (alice): not on a Friday"
            ]
        );
        assert_eq!(
            rows[1].reasons,
            [
                "because",
                "this call needs a person's approval and was not approved within 5m"
            ]
        );
        assert_eq!(rows[2].reasons, ["because"]);
        assert_eq!(rows[2].outcome.as_deref(), Some("cancelled"));
        assert_eq!(rows[3].outcome.as_deref(), Some("cancelled"));
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn the_store_redacts_whatever_the_caller_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        let mut secret = row("allow", "login");
        secret.arguments = json!({"user": "a", "password": "hunter2"});
        store.record_decision(&secret).unwrap();
        store
            .record_server_request(
                "s1",
                "fs",
                "sampling/createMessage",
                &json!("x"),
                &json!({"api_key": "k"}),
            )
            .unwrap();
        let raw: Vec<String> = store
            .conn
            .prepare("SELECT body FROM journal")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let all = raw.join("\n");
        assert!(!all.contains("hunter2") && !all.contains("\"k\""), "{all}");
        assert_eq!(
            store.query(&LogFilter::default()).unwrap()[0].arguments["password"],
            "[redacted]"
        );
        assert!(
            all.contains(r#"\"x\""#),
            "string ids are stored as JSON text: {all}"
        );
    }

    #[test]
    fn several_processes_opening_a_new_file_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    Store::open(&path).and_then(|mut s| s.record_decision(&row("allow", "t")))
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(
            Store::open(&path)
                .unwrap()
                .query(&LogFilter::default())
                .unwrap()
                .len(),
            8
        );
    }

    #[test]
    fn reopening_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        Store::open(&path)
            .unwrap()
            .record_decision(&row("allow", "t"))
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.query(&LogFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn redacts_secret_keys_at_any_depth() {
        let v = json!({"path": "/x", "API_KEY": "k", "headers": {"Authorization": "Bearer t", "n": [{"token": 1}]}});
        assert_eq!(
            redact(&v),
            json!({"path": "/x", "API_KEY": "[redacted]", "headers": {"Authorization": "[redacted]", "n": [{"token": "[redacted]"}]}})
        );
    }
}
