//! The hash chain over the journal: appending records, and proving (`behavry log --verify`) that
//! no record was edited, removed, reordered or cut from the end since it was written.
//!
//! What it cannot prove: behavry runs as the user, so a process of that user can rewrite the
//! whole chain consistently. Keep the head (`behavry log --head`) somewhere else to detect that.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::store::{now_rfc3339, Store, StoreError};

/// The `prev_hash` of the first record.
pub const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Separates these hashes from any other SHA-256 use, and versions the record format.
const DOMAIN: &[u8] = b"behavry-audit-chain-v1";

/// What a journal record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Genesis,
    Decision,
    Outcome,
    Resolution,
    PolicyReload,
    PolicyReloadFailed,
    ServerRequest,
    Checkpoint,
    /// A client frame refused before evaluation (unparseable, ambiguous keys, a bad id).
    RefusedFrame,
    /// A client session: who the client said it was, and what was negotiated.
    Session,
    /// A pinned tool was added, changed, removed or restored by the server (see `pinning`).
    ToolChange,
    /// A person trusted a tool's current definition (`behavry tools trust`).
    ToolTrust,
    /// Tools removed from a `tools/list` answer because the policies deny every call to them.
    ToolsHidden,
    /// The exporter skipped records a sink could not take in time (`max_backlog_*`), or that
    /// were pruned before it sent them.
    ExportGap,
    /// A sink refused a batch for good (a 4xx other than 429); the batch was set aside.
    ExportRejected,
    /// A team policy bundle's revision was put in force (see `pull`).
    BundleActivated,
    /// A team policy bundle was refused (download, signature, layout or compile); the previous
    /// set stays in force.
    BundleActivationFailed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Genesis => "genesis",
            Kind::Decision => "decision",
            Kind::Outcome => "outcome",
            Kind::Resolution => "resolution",
            Kind::PolicyReload => "policy_reload",
            Kind::PolicyReloadFailed => "policy_reload_failed",
            Kind::ServerRequest => "server_request",
            Kind::Checkpoint => "checkpoint",
            Kind::RefusedFrame => "refused_frame",
            Kind::Session => "session",
            Kind::ToolChange => "tool_change",
            Kind::ToolTrust => "tool_trust",
            Kind::ToolsHidden => "tools_hidden",
            Kind::ExportGap => "export_gap",
            Kind::ExportRejected => "export_rejected",
            Kind::BundleActivated => "bundle_activated",
            Kind::BundleActivationFailed => "bundle_activation_failed",
        }
    }
}

/// The hash of one record.
pub fn record_hash(
    seq: i64,
    ts: &str,
    kind: &str,
    ref_seq: Option<i64>,
    body: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    let seq = seq.to_string();
    let ref_seq = ref_seq.map(|r| r.to_string()).unwrap_or_default();
    for field in [seq.as_str(), ts, kind, ref_seq.as_str(), body, prev] {
        // Length prefixes keep field boundaries unambiguous.
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical JSON: serde_json writes object keys in sorted order (no `preserve_order`).
pub fn canonical(v: &Value) -> String {
    v.to_string()
}

/// Appends a record; returns its sequence number. Call inside a write (IMMEDIATE) transaction.
pub fn append(
    conn: &Connection,
    ts: &str,
    kind: Kind,
    ref_seq: Option<i64>,
    body: &Value,
) -> rusqlite::Result<i64> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM chain_head WHERE one = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (prev_seq, prev_hash) = match head {
        Some(head) => head,
        None => {
            let genesis = canonical(&json!({"chain": "behavry audit journal", "version": 1}));
            let hash = record_hash(1, ts, Kind::Genesis.as_str(), None, &genesis, ZERO);
            insert(conn, 1, ts, Kind::Genesis, None, &genesis, ZERO, &hash)?;
            (1, hash)
        }
    };
    let seq = prev_seq + 1;
    let body = canonical(body);
    let hash = record_hash(seq, ts, kind.as_str(), ref_seq, &body, &prev_hash);
    insert(conn, seq, ts, kind, ref_seq, &body, &prev_hash, &hash)?;
    Ok(seq)
}

#[allow(clippy::too_many_arguments)]
fn insert(
    conn: &Connection,
    seq: i64,
    ts: &str,
    kind: Kind,
    ref_seq: Option<i64>,
    body: &str,
    prev: &str,
    hash: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO journal (seq, ts, kind, ref_seq, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![seq, ts, kind.as_str(), ref_seq, body, prev, hash])?;
    conn.prepare_cached(
        "INSERT INTO chain_head (one, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![seq, hash])?;
    Ok(())
}

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The journal sequence number (or decision id) where it shows, when there is one.
    pub seq: Option<i64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

fn problem(seq: impl Into<Option<i64>>, what: impl Into<String>) -> Result<u64, Problem> {
    Err(Problem {
        seq: seq.into(),
        what: what.into(),
    })
}

/// A journal row as stored.
struct Record {
    seq: i64,
    ts: String,
    kind: String,
    ref_seq: Option<i64>,
    body: String,
    prev: String,
    hash: String,
}

impl Store {
    /// Checks the database and the chain; `Ok(Ok(records))` when everything holds.
    pub fn verify(&mut self) -> Result<Result<u64, Problem>, StoreError> {
        let integrity: String = self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.sqlite())?;
        if integrity != "ok" {
            return Ok(problem(
                None,
                format!("SQLite integrity check failed: {integrity}"),
            ));
        }
        // Escalations whose wrapper died are resolved `abandoned` first (as any reader does), so
        // "still pending" below means "still held by a live wrapper".
        self.pending()?;
        let conn = self.conn();
        let sql = self.sqlite();
        let mut stmt = conn
            .prepare(
                "SELECT seq, ts, kind, ref_seq, body, prev_hash, hash FROM journal ORDER BY seq",
            )
            .map_err(&sql)?;
        let mut rows = stmt
            .query_map([], |r| {
                Ok(Record {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    kind: r.get(2)?,
                    ref_seq: r.get(3)?,
                    body: r.get(4)?,
                    prev: r.get(5)?,
                    hash: r.get(6)?,
                })
            })
            .map_err(&sql)?;
        let mut count = 0u64;
        let mut last: Option<(i64, String)> = None;
        let mut first_seq = 0;
        for record in &mut rows {
            let record = record.map_err(&sql)?;
            let expected_prev = match &last {
                Some((seq, hash)) => {
                    if record.seq != seq + 1 {
                        return Ok(problem(
                            seq + 1,
                            format!("missing: the next record is seq {}", record.seq),
                        ));
                    }
                    hash.clone()
                }
                None => {
                    first_seq = record.seq;
                    match start_of_chain(conn, &record).map_err(&sql)? {
                        Ok(prev) => prev,
                        Err(what) => return Ok(problem(record.seq, what)),
                    }
                }
            };
            if record.prev != expected_prev {
                return Ok(problem(
                    record.seq,
                    "does not link to the record before it (removed, reordered or rewritten)",
                ));
            }
            let hash = record_hash(
                record.seq,
                &record.ts,
                &record.kind,
                record.ref_seq,
                &record.body,
                &record.prev,
            );
            if hash != record.hash {
                return Ok(problem(
                    record.seq,
                    format!(
                        "{} record was altered (its hash does not match)",
                        record.kind
                    ),
                ));
            }
            if let Err(what) = check_record(conn, &record, first_seq).map_err(&sql)? {
                return Ok(problem(record.seq, what));
            }
            count += 1;
            last = Some((record.seq, record.hash));
        }
        drop(rows);
        drop(stmt);
        let head: Option<(i64, String)> = conn
            .query_row("SELECT seq, hash FROM chain_head WHERE one = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(&sql)?;
        match (&head, &last) {
            (None, None) => return Ok(Ok(0)),
            (Some((seq, hash)), Some((last_seq, last_hash))) if seq == last_seq && hash == last_hash => {}
            (Some((seq, _)), Some((last_seq, _))) => {
                return Ok(problem(
                    *last_seq,
                    format!("the journal ends here but its head says seq {seq} (records were cut from the end)"),
                ))
            }
            (Some((seq, _)), None) => return Ok(problem(*seq, "the journal is empty but its head says it was not")),
            (None, Some((seq, _))) => return Ok(problem(*seq, "the journal's head record is missing")),
        }
        // Every decision row must be backed by its journal record (checked above for those that
        // are); this finds rows inserted around the journal.
        let orphan: Option<i64> = conn
            .query_row(
                "SELECT id FROM decisions WHERE id NOT IN (SELECT seq FROM journal WHERE kind = 'decision') LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        if let Some(id) = orphan {
            return Ok(problem(id, "a decision row has no journal record"));
        }
        let unresolved: Option<i64> = conn
            .query_row(
                "SELECT d.id FROM decisions d
                 LEFT JOIN approvals a ON a.decision_id = d.id
                 WHERE d.decision = 'escalate' AND d.enforced = 1
                   AND NOT EXISTS (SELECT 1 FROM journal r WHERE r.ref_seq = d.id AND r.kind = 'resolution')
                   AND (a.state IS NULL OR a.state != 'pending')
                 LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        if let Some(id) = unresolved {
            return Ok(problem(
                id,
                "an escalation has no resolution and is not waiting for approval",
            ));
        }
        Ok(Ok(count))
    }

    /// The last record's sequence number and hash.
    pub fn head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.conn()
            .query_row("SELECT seq, hash FROM chain_head WHERE one = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.sqlite())
    }

    /// Deletes records older than `before` (RFC 3339), keeping calls still waiting for approval,
    /// and appends a checkpoint carrying the last pruned hash so the rest still verifies.
    /// Returns how many journal records were removed.
    pub fn prune(&mut self, before: &str) -> Result<u64, StoreError> {
        self.prune_keeping(before, None)
    }

    /// As [`Store::prune`], also keeping every record past `exported` (the smallest cursor of the
    /// decision-log sinks): records no sink has yet are not pruned.
    pub fn prune_keeping(
        &mut self,
        before: &str,
        exported: Option<i64>,
    ) -> Result<u64, StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        let mut through: Option<i64> = tx
            .query_row(
                "SELECT max(seq) FROM journal WHERE ts < ?1 AND kind != 'checkpoint'",
                [before],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        let first_pending: Option<i64> = tx
            .query_row(
                "SELECT min(decision_id) FROM approvals WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        if let (Some(t), Some(p)) = (through, first_pending) {
            through = Some(t.min(p - 1));
        }
        if let (Some(t), Some(e)) = (through, exported) {
            through = Some(t.min(e));
        }
        let Some(through) = through.filter(|t| *t >= 1) else {
            return Ok(0);
        };
        let last_hash: String = tx
            .query_row("SELECT hash FROM journal WHERE seq = ?1", [through], |r| {
                r.get(0)
            })
            .map_err(&sql)?;
        tx.execute("DELETE FROM approvals WHERE decision_id <= ?1", [through])
            .map_err(&sql)?;
        tx.execute(
            "DELETE FROM decision_inputs WHERE decision_id <= ?1",
            [through],
        )
        .map_err(&sql)?;
        tx.execute("DELETE FROM decisions WHERE id <= ?1", [through])
            .map_err(&sql)?;
        let removed = tx
            .execute("DELETE FROM journal WHERE seq <= ?1", [through])
            .map_err(&sql)?;
        let body = json!({"pruned_through": through, "last_hash": last_hash, "before": before, "records": removed});
        append(&tx, &now_rfc3339(), Kind::Checkpoint, None, &body).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(removed as u64)
    }
}

/// The `prev_hash` the first remaining record must carry: zero for a genesis record, or the
/// hash a prune checkpoint recorded for the record just before it.
fn start_of_chain(conn: &Connection, first: &Record) -> rusqlite::Result<Result<String, String>> {
    if first.seq == 1 {
        return Ok(if first.kind == Kind::Genesis.as_str() {
            Ok(ZERO.to_string())
        } else {
            Err("the first record is not the genesis record".to_string())
        });
    }
    let checkpoint: Option<String> = conn
        .query_row(
            "SELECT json_extract(body, '$.last_hash') FROM journal
             WHERE kind = 'checkpoint' AND json_extract(body, '$.pruned_through') = ?1",
            [first.seq - 1],
            |r| r.get(0),
        )
        .optional()?;
    Ok(checkpoint.ok_or_else(|| {
        format!(
            "records 1..{} are missing and no prune checkpoint accounts for them",
            first.seq - 1
        )
    }))
}

/// Checks a record against the tables that index it.
fn check_record(
    conn: &Connection,
    record: &Record,
    first_seq: i64,
) -> rusqlite::Result<Result<(), String>> {
    match record.kind.as_str() {
        "decision" => {
            let body = super::store::decision_body_from_table(conn, record.seq)?;
            Ok(match body {
                None => Err("the decision row for this record was deleted".into()),
                Some(body) if body != record.body => {
                    Err("the decision row was altered (it no longer matches its record)".into())
                }
                Some(_) => Ok(()),
            })
        }
        "outcome" | "resolution" => {
            let Some(target) = record.ref_seq else {
                return Ok(Err(format!("{} record refers to no decision", record.kind)));
            };
            if target >= record.seq {
                return Ok(Err(format!(
                    "{} record refers to a later record",
                    record.kind
                )));
            }
            // A decision older than a prune is gone; its late outcome may remain.
            if target < first_seq {
                return Ok(Ok(()));
            }
            let kind: Option<String> = conn
                .query_row("SELECT kind FROM journal WHERE seq = ?1", [target], |r| {
                    r.get(0)
                })
                .optional()?;
            if kind.as_deref() != Some("decision") {
                return Ok(Err(format!(
                    "{} record refers to seq {target}, which is not a decision",
                    record.kind
                )));
            }
            if record.kind == "resolution" {
                let state: Option<String> = conn
                    .query_row(
                        "SELECT state FROM approvals WHERE decision_id = ?1",
                        [target],
                        |r| r.get(0),
                    )
                    .optional()?;
                let body: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
                if let Some(state) = state
                    .filter(|s| body.get("resolution").and_then(Value::as_str) != Some(s.as_str()))
                {
                    return Ok(Err(format!(
                        "the approval queue says {state}, the journal does not"
                    )));
                }
            }
            Ok(Ok(()))
        }
        _ => Ok(Ok(())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::tests::row;
    use crate::audit::store::{Hold, Outcome, Owner, Resolution};

    /// A store with decisions, an outcome, a resolved escalation and an event: 8 records.
    fn filled() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        let mut store = Store::open(&path).unwrap();
        let a = store.record_decision(&row("allow", "read_file")).unwrap();
        store.record_decision(&row("deny", "write_file")).unwrap();
        store.record_outcome(a, Outcome::Ok, 2.0).unwrap();
        let hold = Hold {
            owner: Owner::current(),
            request_hash: "h".into(),
            expires_at: "2999-01-01T00:00:00.000Z".into(),
        };
        let e = store
            .record_escalation(&row("escalate", "delete_file"), &hold)
            .unwrap();
        assert!(store
            .resolve(e, Some("h"), Resolution::Denied, Some("no"), "me")
            .unwrap());
        store
            .record_event(Kind::PolicyReload, &json!({"hash": "def"}))
            .unwrap();
        store.record_decision(&row("allow", "read_file")).unwrap();
        (dir, path)
    }

    fn verify(path: &std::path::Path) -> Result<u64, Problem> {
        Store::open(path).unwrap().verify().unwrap()
    }

    fn raw(path: &std::path::Path, sql: &str) {
        Connection::open(path).unwrap().execute_batch(sql).unwrap();
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical(&json!({"b": 1, "a": {"d": 2, "c": 3}})),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_dir, path) = filled();
        assert_eq!(verify(&path), Ok(8));
        let head = Store::open(&path).unwrap().head().unwrap().unwrap();
        assert_eq!(head.0, 8);
        assert_eq!(head.1.len(), 64);
    }

    #[test]
    fn an_empty_store_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        assert_eq!(verify(&path), Ok(0));
    }

    #[test]
    fn editing_a_record_is_detected() {
        let (_dir, path) = filled();
        raw(
            &path,
            "UPDATE journal SET body = replace(body, 'because', 'innocent') WHERE seq = 3",
        );
        let p = verify(&path).unwrap_err();
        assert_eq!(p.seq, Some(3));
        assert!(p.what.contains("altered"), "{p}");
    }

    #[test]
    fn editing_a_decision_row_is_detected() {
        let (_dir, path) = filled();
        raw(
            &path,
            "UPDATE decisions SET decision = 'allow' WHERE id = 3",
        );
        let p = verify(&path).unwrap_err();
        assert_eq!(p.seq, Some(3));
        assert!(p.what.contains("decision row was altered"), "{p}");
    }

    #[test]
    fn deleting_a_record_is_detected() {
        let (_dir, path) = filled();
        raw(&path, "DELETE FROM journal WHERE seq = 4");
        let p = verify(&path).unwrap_err();
        assert_eq!(p.seq, Some(4), "{p}");
    }

    #[test]
    fn deleting_a_decision_row_is_detected() {
        let (_dir, path) = filled();
        raw(&path, "DELETE FROM decisions WHERE id = 2");
        assert!(verify(&path).unwrap_err().what.contains("deleted"));
    }

    #[test]
    fn truncating_the_tail_is_detected() {
        let (_dir, path) = filled();
        raw(
            &path,
            "DELETE FROM decisions WHERE id = 8; DELETE FROM journal WHERE seq >= 7",
        );
        let p = verify(&path).unwrap_err();
        assert!(p.what.contains("cut from the end"), "{p}");
    }

    #[test]
    fn reordering_is_detected() {
        let (_dir, path) = filled();
        raw(
            &path,
            "UPDATE journal SET seq = -1 WHERE seq = 2; UPDATE journal SET seq = 2 WHERE seq = 3;
             UPDATE journal SET seq = 3 WHERE seq = -1;",
        );
        assert_eq!(verify(&path).unwrap_err().seq, Some(2));
    }

    #[test]
    fn resolving_behind_the_journals_back_is_detected() {
        let (_dir, path) = filled();
        raw(&path, "UPDATE approvals SET state = 'approved'");
        assert!(verify(&path)
            .unwrap_err()
            .what
            .contains("approval queue says approved"));
    }

    #[test]
    fn an_escalation_without_resolution_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        let mut store = Store::open(&path).unwrap();
        let hold = Hold {
            owner: Owner::current(),
            request_hash: "h".into(),
            expires_at: "x".into(),
        };
        let id = store
            .record_escalation(&row("escalate", "b"), &hold)
            .unwrap();
        assert_eq!(
            store.verify().unwrap(),
            Ok(2),
            "pending with a live owner is fine"
        );
        raw(&path, "UPDATE approvals SET state = 'approved'");
        let p = verify(&path).unwrap_err();
        assert_eq!(p.seq, Some(id));
        assert!(p.what.contains("no resolution"), "{p}");
    }

    #[test]
    fn pruning_keeps_the_rest_verifiable() {
        let (_dir, path) = filled();
        let mut store = Store::open(&path).unwrap();
        // Everything is older than the far future: all but pending calls goes.
        let removed = store.prune("2999-01-01T00:00:00.000Z").unwrap();
        assert_eq!(removed, 8);
        assert_eq!(store.verify().unwrap(), Ok(1));
        store.record_decision(&row("allow", "read_file")).unwrap();
        assert_eq!(store.verify().unwrap(), Ok(2));
        // Without its checkpoint, the shortened chain no longer proves anything.
        raw(&path, "DELETE FROM journal WHERE kind = 'checkpoint'");
        assert!(verify(&path).is_err());
    }

    #[test]
    fn pruning_spares_calls_still_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("behavry.db");
        let mut store = Store::open(&path).unwrap();
        store.record_decision(&row("allow", "a")).unwrap();
        let hold = Hold {
            owner: Owner::current(),
            request_hash: "h".into(),
            expires_at: "x".into(),
        };
        let held = store
            .record_escalation(&row("escalate", "b"), &hold)
            .unwrap();
        store.record_decision(&row("allow", "c")).unwrap();
        store.prune("2999-01-01T00:00:00.000Z").unwrap();
        assert_eq!(store.pending().unwrap()[0].id, held);
        // The held call and everything after it stay, plus the checkpoint.
        assert_eq!(store.verify().unwrap(), Ok(3));
    }
}
