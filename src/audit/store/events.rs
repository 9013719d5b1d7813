//! Journal records that are not decisions, as the wrapper writes them and `behavry log --events`
//! reads them: policy reloads applied and rejected (`policy_reload`, `policy_reload_failed`),
//! client frames refused before evaluation (`refused_frame`), and the client of each session
//! (`session`). They are in the same hash chain as the decisions. Body: `{session_id, server,
//! policy_hash, …}` where `policy_hash` (policy events only) is the set in force after the event,
//! and the rest is detail.

use serde::Serialize;
use serde_json::{json, Map, Value};

use rusqlite::OptionalExtension;

use super::{sqlite_err, Store, StoreError};
use crate::audit::chain::Kind;

/// The journal kinds `--events` shows.
const KINDS: [Kind; 11] = [
    Kind::PolicyReload,
    Kind::PolicyReloadFailed,
    Kind::RefusedFrame,
    Kind::Session,
    Kind::ToolChange,
    Kind::ToolTrust,
    Kind::ToolsHidden,
    Kind::ExportGap,
    Kind::ExportRejected,
    Kind::BundleActivated,
    Kind::BundleActivationFailed,
];

/// How many bytes of a refused line the journal keeps (its SHA-256 covers all of it).
pub const REFUSED_HEAD: usize = 256;

/// A client frame refused before it was evaluated.
#[derive(Debug, Clone)]
pub struct RefusedFrame<'a> {
    pub session_id: &'a str,
    pub server: &'a str,
    /// What kind of refusal: `parse_error`, `duplicate_key`, `bad_id`, …
    pub what: &'a str,
    /// Why, as the client was told.
    pub reason: &'a str,
    /// The request id, if it could be read.
    pub id: Option<&'a Value>,
    /// The line as received.
    pub line: &'a [u8],
}

impl RefusedFrame<'_> {
    pub(crate) fn body(&self) -> Value {
        use sha2::Digest;
        let sha256: String = sha2::Sha256::digest(self.line)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let head = &self.line[..self.line.len().min(REFUSED_HEAD)];
        json!({
            "session_id": self.session_id,
            "server": self.server,
            "what": self.what,
            "reason": self.reason,
            "request_id": self.id.map(request_id),
            "sha256": sha256,
            "bytes": self.line.len(),
            "head": String::from_utf8_lossy(head),
        })
    }
}

/// A client session, recorded once when it is initialised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub server: String,
    /// `clientInfo.name` and `clientInfo.version`, as the client sent them.
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    /// The protocol version the server answered with (or the client proposed, if no answer).
    pub protocol_version: Option<String>,
    /// The client's `capabilities`, as sent.
    pub capabilities: Value,
}

impl SessionRecord {
    /// The record of a session from the client's `initialize` params and the server's result
    /// (`None` if it never answered): `clientInfo`, capabilities, and the negotiated version
    /// (the server's answer, else what the client proposed). Text fields that are not strings are
    /// left out rather than guessed.
    pub fn from_initialize(
        session_id: &str,
        server: &str,
        params: &Value,
        result: Option<&Value>,
    ) -> SessionRecord {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        SessionRecord {
            session_id: session_id.to_owned(),
            server: server.to_owned(),
            client_name: text(params.pointer("/clientInfo/name")),
            client_version: text(params.pointer("/clientInfo/version")),
            protocol_version: text(result.and_then(|r| r.get("protocolVersion")))
                .or_else(|| text(params.get("protocolVersion"))),
            capabilities: params.get("capabilities").cloned().unwrap_or(Value::Null),
        }
    }
}

/// A request id as the audit stores it everywhere: its JSON text, so `2` and `"2"` stay apart
/// (`2`, `"abc"`).
pub fn request_id(id: &Value) -> String {
    id.to_string()
}

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
        let kinds: Vec<String> = KINDS.iter().map(|k| format!("'{}'", k.as_str())).collect();
        let mut clauses = vec![format!("kind IN ({})", kinds.join(", "))];
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

    /// The client of session `session_id`, if it was recorded.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM journal WHERE kind = ?1 AND json_extract(body, '$.session_id') = ?2
                 ORDER BY seq LIMIT 1",
                [Kind::Session.as_str(), session_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_err(&self.path))?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
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
        assert_eq!(all.len(), 2, "not server requests");
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

#[cfg(test)]
mod record_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_frames_and_sessions_are_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("behavry.db")).unwrap();
        let line = format!(
            "{{\"id\":\"three\",\"method\":\"tools/call\",{}",
            "x".repeat(1000)
        );
        store
            .record_refused_frame(&RefusedFrame {
                session_id: "s1",
                server: "fs",
                what: "parse_error",
                reason: "not JSON",
                id: Some(&json!("three")),
                line: line.as_bytes(),
            })
            .unwrap();
        let session = SessionRecord {
            session_id: "s1".into(),
            server: "fs".into(),
            client_name: Some("claude-code".into()),
            client_version: Some("2.1.197".into()),
            protocol_version: Some("2025-11-25".into()),
            capabilities: json!({"roots": {}, "elicitation": {}}),
        };
        store.record_session(&session).unwrap();
        let all = store.query_events(&EventFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "refused_frame");
        assert_eq!(all[0].detail["request_id"], "\"three\"");
        assert_eq!(all[0].detail["bytes"], line.len());
        assert_eq!(all[0].detail["head"].as_str().unwrap().len(), REFUSED_HEAD);
        assert_eq!(all[0].detail["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(all[1].kind, "session");
        assert_eq!(all[1].detail["client_name"], "claude-code");
        assert_eq!(store.session("s1").unwrap(), Some(session));
        assert_eq!(store.session("s2").unwrap(), None);
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn a_session_record_from_the_handshake() {
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
            "clientInfo": {"name": "claude-code", "title": "Claude Code", "version": "2.1.197"}});
        let answered = SessionRecord::from_initialize(
            "s",
            "fs",
            &params,
            Some(&json!({"protocolVersion": "2025-06-18"})),
        );
        assert_eq!(answered.client_name.as_deref(), Some("claude-code"));
        assert_eq!(answered.client_version.as_deref(), Some("2.1.197"));
        assert_eq!(answered.protocol_version.as_deref(), Some("2025-06-18"));
        assert_eq!(answered.capabilities, json!({"roots": {}}));
        let unanswered = SessionRecord::from_initialize("s", "fs", &params, None);
        assert_eq!(unanswered.protocol_version.as_deref(), Some("2025-11-25"));
        let odd =
            SessionRecord::from_initialize("s", "fs", &json!({"clientInfo": {"name": 7}}), None);
        assert_eq!(odd.client_name, None);
        assert_eq!(odd.capabilities, Value::Null);
    }
}
