//! Policy events — hot reloads applied and rejected — as `behavry log --events` reads them. They
//! are journal records (kinds `policy_reload`, `policy_reload_failed`) in the same hash chain as
//! the decisions; the wrapper appends them with [`crate::audit::AuditHandle::event`] and this
//! module only reads. Body: `{session_id, server, policy_hash, …}` where `policy_hash` is the set
//! in force after the event, and the rest (`files`, or `errors` and `rejected_hash`) is detail.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{sqlite_err, Store, StoreError};
use crate::audit::chain::Kind;

/// The journal kinds that are policy events.
const KINDS: [Kind; 2] = [Kind::PolicyReload, Kind::PolicyReloadFailed];

/// An event as `behavry log --events` shows it. The JSON field names are a contract.
#[derive(Debug, Clone, Serialize)]
pub struct EventEntry {
    /// The journal sequence number.
    #[serde(skip)]
    pub seq: i64,
    pub ts: String,
    pub kind: String,
    pub session_id: String,
    pub server: String,
    pub policy_hash: Option<String>,
    /// Everything else the record says: the files loaded, or the errors that stopped the set.
    pub detail: Value,
}

/// Which events to read. Empty fields don't filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub server: Option<String>,
    pub session: Option<String>,
    /// RFC 3339 timestamp; events at or after it.
    pub since: Option<String>,
    /// Events after this journal sequence number only (for `--follow`).
    pub after_seq: Option<i64>,
    /// The newest N (still returned oldest first).
    pub limit: Option<u64>,
}

impl Store {
    /// Policy events matching `filter`, oldest first.
    pub fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventEntry>, StoreError> {
        let mut clauses = vec![format!(
            "kind IN ('{}', '{}')",
            KINDS[0].as_str(),
            KINDS[1].as_str()
        )];
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn rusqlite::ToSql>| {
            args.push(value);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &filter.server {
            push("json_extract(body, '$.server') = ?", Box::new(s.clone()));
        }
        if let Some(s) = &filter.session {
            push(
                "json_extract(body, '$.session_id') = ?",
                Box::new(s.clone()),
            );
        }
        if let Some(s) = &filter.since {
            push("ts >= ?", Box::new(s.clone()));
        }
        if let Some(a) = filter.after_seq {
            push("seq > ?", Box::new(a));
        }
        let limit = filter.limit.map_or(-1, |l| l as i64);
        let sql = format!(
            "SELECT * FROM (SELECT seq, ts, kind, body FROM journal WHERE {}
                ORDER BY seq DESC LIMIT {limit})
             ORDER BY seq ASC",
            clauses.join(" AND ")
        );
        let err = sqlite_err(&self.path);
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                |r| {
                    let body: String = r.get(3)?;
                    Ok(entry(r.get(0)?, r.get(1)?, r.get(2)?, &body))
                },
            )
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// The journal's last sequence number, for `--follow` to start after.
    pub fn last_seq(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(seq) FROM journal", [], |r| r.get(0))
            .map_err(sqlite_err(&self.path))
    }
}

fn entry(seq: i64, ts: String, kind: String, body: &str) -> EventEntry {
    let mut body: Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
    let mut take = |key: &str| match body.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let session_id = take("session_id").unwrap_or_default();
    let server = take("server").unwrap_or_default();
    let policy_hash = take("policy_hash");
    EventEntry {
        seq,
        ts,
        kind,
        session_id,
        server,
        policy_hash,
        detail: Value::Object(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_policy_events_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        store
            .record_event(
                Kind::PolicyReload,
                &json!({"session_id": "s1", "server": "fs", "policy_hash": "abc", "files": ["p.rego"]}),
            )
            .unwrap();
        store
            .record_event(Kind::ServerRequest, &json!({"server": "fs"}))
            .unwrap();
        store
            .record_event(
                Kind::PolicyReloadFailed,
                &json!({"session_id": "s2", "server": "gh", "policy_hash": null,
                        "errors": ["p.rego:3:1: expecting expression"], "rejected_hash": "def"}),
            )
            .unwrap();
        let all = store.query_events(&EventFilter::default()).unwrap();
        assert_eq!(all.len(), 2, "only policy events");
        assert_eq!(all[0].kind, "policy_reload");
        assert_eq!(all[0].policy_hash.as_deref(), Some("abc"));
        assert_eq!(all[0].detail, json!({"files": ["p.rego"]}));
        assert_eq!(all[1].server, "gh");
        assert_eq!(all[1].policy_hash, None);
        assert_eq!(all[1].detail["rejected_hash"], "def");
        let only = |f: EventFilter| store.query_events(&f).unwrap().len();
        assert_eq!(
            only(EventFilter {
                server: Some("fs".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(EventFilter {
                session: Some("s2".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            only(EventFilter {
                after_seq: Some(all[0].seq),
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
        assert!(store.last_seq().unwrap() >= Some(all[1].seq));
    }
}
