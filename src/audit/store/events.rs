//! Policy events (reloads and rejected reloads) in the `events` table, written by the wrappers'
//! audit threads and read by `behavry log --events`. Same store, same rules: `BEGIN IMMEDIATE`
//! for writes, oldest first when read.

use rusqlite::{params, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use super::{now_rfc3339, sqlite_err, Store, StoreError};

/// `kind` of a reload that put a new policy set in force.
pub const POLICY_RELOAD: &str = "policy_reload";
/// `kind` of a reload whose new set did not compile (the previous set stayed in force).
pub const POLICY_RELOAD_FAILED: &str = "policy_reload_failed";

/// An event about to be recorded.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub kind: String,
    pub session_id: String,
    pub server: String,
    /// The hash of the policy set in force after the event.
    pub policy_hash: Option<String>,
    /// A JSON object with the details (files, errors).
    pub detail: Value,
}

/// An event as `behavry log --events` shows it. The JSON field names are a contract.
#[derive(Debug, Clone, Serialize)]
pub struct EventEntry {
    #[serde(skip)]
    pub id: i64,
    pub ts: String,
    pub kind: String,
    pub session_id: String,
    pub server: String,
    pub policy_hash: Option<String>,
    pub detail: Value,
}

/// Which events to read. Empty fields don't filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub server: Option<String>,
    pub session: Option<String>,
    /// RFC 3339 timestamp; events at or after it.
    pub since: Option<String>,
    /// Events with a larger id only (for `--follow`).
    pub after_id: Option<i64>,
    /// The newest N (still returned oldest first).
    pub limit: Option<u64>,
}

impl Store {
    /// Records an event and commits it; returns its id.
    pub fn record_event(&mut self, row: &EventRow) -> Result<i64, StoreError> {
        let detail = serde_json::to_string(&row.detail).unwrap_or_else(|_| "{}".into());
        let sql = sqlite_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        tx.execute(
            "INSERT INTO events (ts, kind, session_id, server, policy_hash, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                now_rfc3339(),
                row.kind,
                row.session_id,
                row.server,
                row.policy_hash,
                detail
            ],
        )
        .map_err(&sql)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(&sql)?;
        Ok(id)
    }

    /// Events matching `filter`, oldest first.
    pub fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventEntry>, StoreError> {
        let mut clauses = Vec::new();
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn rusqlite::ToSql>| {
            args.push(value);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(k) = &filter.kind {
            push("kind = ?", Box::new(k.clone()));
        }
        if let Some(s) = &filter.server {
            push("server = ?", Box::new(s.clone()));
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
            "SELECT * FROM (SELECT id, ts, kind, session_id, server, policy_hash, detail FROM events
                {where_sql} ORDER BY id DESC LIMIT {limit})
             ORDER BY id ASC"
        );
        let err = sqlite_err(&self.path);
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                |r| {
                    let detail: String = r.get(6)?;
                    Ok(EventEntry {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        kind: r.get(2)?,
                        session_id: r.get(3)?,
                        server: r.get(4)?,
                        policy_hash: r.get(5)?,
                        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                    })
                },
            )
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// The largest event id, for `--follow` to start after.
    pub fn last_event_id(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
            .map_err(sqlite_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, server: &str) -> EventRow {
        EventRow {
            kind: kind.into(),
            session_id: "s1".into(),
            server: server.into(),
            policy_hash: Some("abc".into()),
            detail: json!({"files": ["p.rego"]}),
        }
    }

    #[test]
    fn records_and_queries_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        assert_eq!(store.last_event_id().unwrap(), None);
        let a = store.record_event(&event(POLICY_RELOAD, "fs")).unwrap();
        store
            .record_event(&event(POLICY_RELOAD_FAILED, "gh"))
            .unwrap();
        let all = store.query_events(&EventFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "policy_reload");
        assert_eq!(all[0].detail, json!({"files": ["p.rego"]}));
        assert_eq!(all[1].server, "gh");
        let only = |f: EventFilter| store.query_events(&f).unwrap().len();
        assert_eq!(
            only(EventFilter {
                kind: Some(POLICY_RELOAD_FAILED.into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(EventFilter {
                server: Some("fs".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(EventFilter {
                after_id: Some(a),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(EventFilter {
                limit: Some(1),
                ..Default::default()
            }),
            1
        );
        assert_eq!(store.last_event_id().unwrap(), Some(a + 1));
        // Decisions are untouched by events.
        assert!(store
            .query(&super::super::LogFilter::default())
            .unwrap()
            .is_empty());
    }
}
