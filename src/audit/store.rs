//! The SQLite audit store. Several processes (one wrapper per MCP server, plus readers) share one
//! file: WAL, a busy timeout, and `BEGIN IMMEDIATE` for every write so a transaction never has to
//! upgrade from read to write (which fails with SQLITE_BUSY regardless of the timeout).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

/// Forward-only migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Keep this list in file-number order: each entry's position is its schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_decisions.sql"),
    // MERGE: 002_approvals.sql and 003_journal.sql live on main; when merged they go here,
    // before 004, so every entry's position is its number.
    include_str!("migrations/004_server_requests.sql"),
];

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

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with a result.
    Ok,
    /// The server answered with a JSON-RPC error.
    Error,
    /// The server answered with a tool result flagged `isError`.
    IsError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::IsError => "is_error",
        }
    }
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
    pub decision: String,
    pub reasons: Vec<String>,
    /// Redacted before it reaches the store (see [`redact`]).
    pub arguments: Value,
    pub agent: String,
    pub requester: String,
    pub channel: String,
    pub policy_hash: String,
    pub request_id: String,
}

/// A request the server sent the client, about to be recorded.
#[derive(Debug, Clone)]
pub struct ServerRequestRow {
    pub session_id: String,
    pub server: String,
    pub method: String,
    /// The server's request id, as JSON text.
    pub request_id: String,
    /// Redacted before it reaches the store (see [`redact`]).
    pub params: Value,
}

/// A recorded server-to-client request.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRequestEntry {
    #[serde(skip)]
    pub id: i64,
    pub ts: String,
    pub session_id: String,
    pub server: String,
    pub method: String,
    pub request_id: String,
    pub params: Value,
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
    pub decision: String,
    pub resolution: Option<String>,
    pub reasons: Vec<String>,
    pub arguments: Value,
    pub agent: String,
    pub requester: String,
    pub channel: String,
    pub request_id: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<f64>,
    pub policy_hash: String,
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
}

pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let sql = sqlite_err(&shown);
        let conn = Connection::open(path).map_err(&sql)?;
        // Several wrappers write at once; wait for each other's short transactions rather than fail.
        conn.busy_timeout(Duration::from_secs(5)).map_err(&sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&sql)?;
        // In WAL mode NORMAL survives a crashed process; only power loss can drop the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&sql)?;
        let mut store = Store {
            conn,
            path: shown.clone(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_err(&self.path)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let sql = sqlite_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sql)?;
        let known = MIGRATIONS.len() as i64;
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
        let ts = now_rfc3339();
        let reasons = serde_json::to_string(&row.reasons).unwrap_or_else(|_| "[]".into());
        let arguments = serde_json::to_string(&row.arguments).unwrap_or_else(|_| "null".into());
        let sql = sqlite_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        tx.execute(
            "INSERT INTO decisions (ts, session_id, server, tool, method, action_type, resource_path,
                decision, reasons, arguments, agent, requester, channel, policy_hash, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
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
                row.request_id
            ],
        )
        .map_err(&sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(&sql)?;
        Ok(id)
    }

    /// Fills in how a forwarded call ended.
    pub fn record_outcome(
        &mut self,
        id: i64,
        outcome: Outcome,
        duration_ms: f64,
    ) -> Result<(), StoreError> {
        let sql = sqlite_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        tx.execute(
            "UPDATE decisions SET outcome = ?1, duration_ms = ?2 WHERE id = ?3",
            params![outcome.as_str(), duration_ms, id],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
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
            push("decision = ?", Box::new(d.clone()));
        }
        if let Some(s) = &filter.server {
            push("server = ?", Box::new(s.clone()));
        }
        if let Some(t) = &filter.tool {
            match t.split_once('/').filter(|(s, _)| {
                filter.server.is_none()
                    && !t.starts_with("resources/")
                    && !t.starts_with("prompts/")
                    && !s.is_empty()
            }) {
                Some((server, tool)) => {
                    push("server = ?", Box::new(server.to_owned()));
                    push("tool = ?", Box::new(tool.to_owned()));
                }
                None => push("tool = ?", Box::new(t.clone())),
            }
        }
        if let Some(s) = &filter.session {
            push("session_id = ?", Box::new(s.clone()));
        }
        if let Some(s) = &filter.since {
            push("ts >= ?", Box::new(s.clone()));
        }
        if let Some(a) = filter.after_id {
            push("id > ?", Box::new(a));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let sql = format!(
            "SELECT * FROM (SELECT id, ts, session_id, server, tool, method, action_type, resource_path,
                decision, resolution, reasons, arguments, agent, requester, channel, request_id, outcome,
                duration_ms, policy_hash FROM decisions {where_sql} ORDER BY id DESC LIMIT {limit})
             ORDER BY id ASC"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                |r| {
                    let reasons: String = r.get(10)?;
                    let arguments: String = r.get(11)?;
                    Ok(LogEntry {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        session_id: r.get(2)?,
                        server: r.get(3)?,
                        tool: r.get(4)?,
                        method: r.get(5)?,
                        action_type: r.get(6)?,
                        resource_path: r.get(7)?,
                        decision: r.get(8)?,
                        resolution: r.get(9)?,
                        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                        arguments: serde_json::from_str(&arguments).unwrap_or(Value::Null),
                        agent: r.get(12)?,
                        requester: r.get(13)?,
                        channel: r.get(14)?,
                        request_id: r.get(15)?,
                        outcome: r.get(16)?,
                        duration_ms: r.get(17)?,
                        policy_hash: r.get(18)?,
                    })
                },
            )
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Records a request the server sent the client, and commits it.
    pub fn record_server_request(&mut self, row: &ServerRequestRow) -> Result<i64, StoreError> {
        let ts = now_rfc3339();
        let params = serde_json::to_string(&row.params).unwrap_or_else(|_| "null".into());
        let sql = sqlite_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        tx.execute(
            "INSERT INTO server_requests (ts, session_id, server, method, request_id, params)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ts,
                row.session_id,
                row.server,
                row.method,
                row.request_id,
                params
            ],
        )
        .map_err(&sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(&sql)?;
        Ok(id)
    }

    /// Recorded server-to-client requests, oldest first; one session's when `session` is given.
    pub fn server_requests(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<ServerRequestEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, ts, session_id, server, method, request_id, params FROM server_requests
                 WHERE ?1 IS NULL OR session_id = ?1 ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![session], |r| {
                let params: String = r.get(6)?;
                Ok(ServerRequestEntry {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    session_id: r.get(2)?,
                    server: r.get(3)?,
                    method: r.get(4)?,
                    request_id: r.get(5)?,
                    params: serde_json::from_str(&params).unwrap_or(Value::Null),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// The largest row id, for `--follow` to start after.
    pub fn last_id(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(id) FROM decisions", [], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }
}

fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
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
mod tests {
    use super::*;
    use serde_json::json;

    fn row(decision: &str, tool: &str) -> DecisionRow {
        DecisionRow {
            session_id: "s1".into(),
            server: "fs".into(),
            tool: tool.into(),
            method: "tools/call".into(),
            action_type: "read".into(),
            resource_path: Some("/tmp/x".into()),
            decision: decision.into(),
            reasons: vec!["because".into()],
            arguments: json!({"path": "/tmp/x"}),
            agent: "claude-code".into(),
            requester: "alice".into(),
            channel: "claude-code".into(),
            policy_hash: "abc".into(),
            request_id: "1".into(),
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

    #[test]
    fn records_server_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        let row = ServerRequestRow {
            session_id: "s1".into(),
            server: "fs".into(),
            method: "sampling/createMessage".into(),
            request_id: "0".into(),
            params: redact(&json!({"messages": [], "apiKey": "k"})),
        };
        store.record_server_request(&row).unwrap();
        store
            .record_server_request(&ServerRequestRow {
                session_id: "s2".into(),
                method: "roots/list".into(),
                ..row
            })
            .unwrap();
        let all = store.server_requests(None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].method, "sampling/createMessage");
        assert_eq!(all[0].params["apiKey"], "[redacted]");
        assert_eq!(
            store.server_requests(Some("s2")).unwrap()[0].method,
            "roots/list"
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
