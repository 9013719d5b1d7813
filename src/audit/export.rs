//! The exporter's state in the store (migration 008): a cursor per sink, the lease that makes one
//! exporter per database, this journal's instance id, and the committed journal records past a
//! cursor. Every call here is one short statement or transaction: nothing is held while the
//! exporter talks to a collector.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};

use super::chain::{self, Kind};
use super::store::{now_rfc3339, Owner};
use super::{Store, StoreError};

/// Where one sink stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cursor {
    pub sink: String,
    /// Every record up to this seq was accepted, parked or skipped.
    pub last_acked_seq: i64,
    pub last_success: Option<String>,
    /// Records accepted by the sink, in all.
    pub sent: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// Who holds the exporter lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: Owner,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One committed journal record, with what the exporter needs to describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub seq: i64,
    pub ts: String,
    pub kind: String,
    pub ref_seq: Option<i64>,
    /// The record's canonical JSON body, parsed.
    pub body: Value,
    /// The chain hash: with the instance id and seq, what identifies a record sent twice.
    pub hash: String,
    /// For a decision: the stored (redacted) policy input it was decided on.
    pub input: Option<Value>,
    /// For a decision, an outcome or a resolution: the decision's UUID.
    pub decision_id: Option<String>,
    /// For a decision: how its escalation was resolved and how the call ended, when the journal
    /// already says so at export time (later records are exported on their own too).
    pub resolution: Option<String>,
    pub outcome: Option<String>,
    /// Bytes this record weighs in a batch (body and input).
    pub size: usize,
}

impl Store {
    /// This journal's id in the team's collector (created with the export tables).
    pub fn instance_id(&self) -> Result<String, StoreError> {
        self.conn()
            .query_row("SELECT id FROM export_instance WHERE one = 1", [], |r| {
                r.get(0)
            })
            .map_err(self.sqlite())
    }

    /// Takes (or renews) the exporter lease for `owner` until `expires_at` (unix seconds). It is
    /// taken when free, expired, already `owner`'s, or held by a process that is gone. Returns
    /// whether `owner` holds it now.
    pub fn take_export_lease(
        &mut self,
        owner: Owner,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        let held: Option<Lease> = tx
            .query_row(
                "SELECT owner_pid, owner_start, expires_at FROM export_lease WHERE one = 1",
                [],
                lease_of,
            )
            .optional()
            .map_err(&sql)?;
        let free = match held {
            None => true,
            Some(lease) => {
                lease.owner == owner || lease.expires_at < now || !lease.owner.is_alive()
            }
        };
        if free {
            tx.execute(
                "INSERT INTO export_lease (one, owner_pid, owner_start, expires_at)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (one) DO UPDATE SET owner_pid = excluded.owner_pid,
                    owner_start = excluded.owner_start, expires_at = excluded.expires_at",
                params![owner.pid, owner.start, expires_at],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        Ok(free)
    }

    /// Gives the lease up, if `owner` holds it, so another wrapper takes over at once.
    pub fn release_export_lease(&mut self, owner: Owner) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        tx.execute(
            "DELETE FROM export_lease WHERE owner_pid = ?1 AND owner_start = ?2",
            params![owner.pid, owner.start],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// The lease, if anyone holds one.
    pub fn export_lease(&self) -> Result<Option<Lease>, StoreError> {
        self.conn()
            .query_row(
                "SELECT owner_pid, owner_start, expires_at FROM export_lease WHERE one = 1",
                [],
                lease_of,
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// Where `sink` stands; a sink never seen starts before the first record.
    pub fn export_cursor(&self, sink: &str) -> Result<Cursor, StoreError> {
        let cursor = self
            .conn()
            .query_row(
                "SELECT last_acked_seq, last_success, sent, last_error, last_error_at
                 FROM export_cursors WHERE sink = ?1",
                [sink],
                |r| {
                    Ok(Cursor {
                        sink: sink.to_owned(),
                        last_acked_seq: r.get(0)?,
                        last_success: r.get(1)?,
                        sent: r.get(2)?,
                        last_error: r.get(3)?,
                        last_error_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(self.sqlite())?;
        Ok(cursor.unwrap_or_else(|| Cursor {
            sink: sink.to_owned(),
            ..Cursor::default()
        }))
    }

    /// Records that `sink` accepted every record through `through` (`records` of them). The
    /// cursor never moves back, so two exporters racing only resend.
    pub fn ack_export(&mut self, sink: &str, through: i64, records: i64) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO export_cursors (sink, last_acked_seq, last_success, sent)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sink) DO UPDATE SET
                last_acked_seq = max(last_acked_seq, excluded.last_acked_seq),
                last_success = excluded.last_success, sent = sent + excluded.sent,
                last_error = NULL, last_error_at = NULL",
            params![sink, through, now_rfc3339(), records],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Records why `sink` failed; the cursor stays where it is.
    pub fn export_failed(&mut self, sink: &str, error: &str) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO export_cursors (sink, last_error, last_error_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (sink) DO UPDATE SET last_error = excluded.last_error,
                last_error_at = excluded.last_error_at",
            params![sink, error, now_rfc3339()],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Moves `sink` past records it will never send, and journals why (`export_gap` for records
    /// skipped or pruned, `export_rejected` for a batch the sink refused), in one transaction.
    /// The record is appended after the records it names, so the sink receives it next.
    pub fn skip_export(
        &mut self,
        sink: &str,
        kind: Kind,
        through: i64,
        body: &Value,
    ) -> Result<i64, StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        let seq = chain::append(&tx, &now_rfc3339(), kind, None, body).map_err(&sql)?;
        tx.execute(
            "INSERT INTO export_cursors (sink, last_acked_seq) VALUES (?1, ?2)
             ON CONFLICT (sink) DO UPDATE SET
                last_acked_seq = max(last_acked_seq, excluded.last_acked_seq)",
            params![sink, through],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(seq)
    }

    /// The newest record's seq (0 for an empty journal).
    pub fn head_seq(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("SELECT coalesce(max(seq), 0) FROM journal", [], |r| {
                r.get(0)
            })
            .map_err(self.sqlite())
    }

    /// The oldest record past `after`: its seq and timestamp.
    pub fn first_after(&self, after: i64) -> Result<Option<(i64, String)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT seq, ts FROM journal WHERE seq > ?1 ORDER BY seq LIMIT 1",
                [after],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// The newest record past `after` written before `ts` (RFC 3339), if any.
    pub fn last_before(&self, after: i64, ts: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT max(seq) FROM journal WHERE seq > ?1 AND ts < ?2",
                params![after, ts],
                |r| r.get(0),
            )
            .map_err(self.sqlite())
    }

    /// Committed records past `after`, oldest first: at most `max_records`, and no more than
    /// `max_bytes` of them (but always one, however large).
    pub fn journal_after(
        &self,
        after: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalRecord>, StoreError> {
        // Appends commit in seq order (BEGIN IMMEDIATE, one chain head), so a reader never sees
        // a record before the ones that precede it.
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT j.seq, j.ts, j.kind, j.ref_seq, j.body, j.hash, i.input,
                    coalesce(d.decision_id, rd.decision_id),
                    json_extract(r.body, '$.resolution'), json_extract(o.body, '$.outcome')
                 FROM journal j
                 LEFT JOIN decision_inputs i ON j.kind = 'decision' AND i.decision_id = j.seq
                 LEFT JOIN decisions d ON j.kind = 'decision' AND d.id = j.seq
                 LEFT JOIN decisions rd ON rd.id = j.ref_seq
                 LEFT JOIN journal r ON j.kind = 'decision' AND r.ref_seq = j.seq
                    AND r.kind = 'resolution'
                 LEFT JOIN journal o ON j.kind = 'decision' AND o.ref_seq = j.seq
                    AND o.kind = 'outcome'
                 WHERE j.seq > ?1 ORDER BY j.seq LIMIT ?2",
            )
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map(params![after, max_records as i64], |r| {
                let body: String = r.get(4)?;
                let input: Option<String> = r.get(6)?;
                Ok(JournalRecord {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    kind: r.get(2)?,
                    ref_seq: r.get(3)?,
                    size: body.len() + input.as_ref().map_or(0, String::len),
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                    hash: r.get(5)?,
                    input: input.and_then(|i| serde_json::from_str(&i).ok()),
                    decision_id: r.get(7)?,
                    resolution: r.get(8)?,
                    outcome: r.get(9)?,
                })
            })
            .map_err(self.sqlite())?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let row = row.map_err(self.sqlite())?;
            // An outcome joined twice (a record written twice) would repeat the decision.
            if batch
                .last()
                .is_some_and(|l: &JournalRecord| l.seq == row.seq)
            {
                continue;
            }
            bytes += row.size;
            if !batch.is_empty() && bytes > max_bytes {
                break;
            }
            batch.push(row);
        }
        Ok(batch)
    }

    /// The smallest cursor among `sinks`: `log --prune` keeps every record past it.
    pub fn least_exported(&self, sinks: &[&str]) -> Result<Option<i64>, StoreError> {
        let mut least: Option<i64> = None;
        for sink in sinks {
            let seq = self.export_cursor(sink)?.last_acked_seq;
            least = Some(least.map_or(seq, |l| l.min(seq)));
        }
        Ok(least)
    }
}

fn lease_of(r: &rusqlite::Row) -> rusqlite::Result<Lease> {
    Ok(Lease {
        owner: Owner {
            pid: r.get(0)?,
            start: r.get(1)?,
        },
        expires_at: r.get(2)?,
    })
}

/// The body of an `export_gap` record.
pub fn gap_body(sink: &str, from: i64, through: i64, why: &str) -> Value {
    json!({
        "session_id": "", "server": "", "sink": sink, "from_seq": from, "through_seq": through,
        "records": (through - from + 1).max(0), "why": why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::store::tests::row;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("audit.db")).expect("open");
        (dir, store)
    }

    #[test]
    fn the_cursor_moves_only_forward() {
        let (_dir, mut store) = store();
        assert_eq!(
            store.export_cursor("otlp").expect("cursor").last_acked_seq,
            0
        );
        store.ack_export("otlp", 7, 3).expect("ack");
        store.ack_export("otlp", 4, 1).expect("ack");
        let cursor = store.export_cursor("otlp").expect("cursor");
        assert_eq!((cursor.last_acked_seq, cursor.sent), (7, 4));
        store.export_failed("otlp", "503").expect("fail");
        let cursor = store.export_cursor("otlp").expect("cursor");
        assert_eq!(cursor.last_error.as_deref(), Some("503"));
        assert_eq!(cursor.last_acked_seq, 7);
        store.ack_export("otlp", 9, 1).expect("ack");
        assert_eq!(
            store.export_cursor("otlp").expect("cursor").last_error,
            None
        );
    }

    #[test]
    fn one_live_process_holds_the_lease() {
        let (_dir, mut store) = store();
        let me = Owner::current();
        // A process that is not running: pid 0 never names a user process.
        let gone = Owner { pid: 0, start: 1 };
        let other_live = Owner { pid: 1, start: 0 };
        assert!(store.take_export_lease(gone, 100, 200).expect("lease"));
        // The holder is gone: taken over before it expires.
        assert!(store.take_export_lease(me, 100, 200).expect("lease"));
        assert!(store.take_export_lease(me, 150, 250).expect("renew"));
        // pid 1 lives (start 0 means "not compared"), but the lease is ours until it expires.
        assert!(!store
            .take_export_lease(other_live, 200, 300)
            .expect("lease"));
        assert!(store
            .take_export_lease(other_live, 251, 300)
            .expect("expired"));
        store.release_export_lease(other_live).expect("release");
        assert_eq!(store.export_lease().expect("lease"), None);
    }

    #[test]
    fn reads_decisions_with_their_input_in_batches() {
        let (_dir, mut store) = store();
        let mut first = row("allow", "read_file");
        first.input = Some(json!({"action": {"tool": "fs/read_file"}}));
        let id = store.record_decision(&first).expect("record");
        store
            .record_outcome(id, crate::audit::Outcome::Ok, 1.5)
            .expect("outcome");
        store
            .record_decision(&row("deny", "write_file"))
            .expect("record");
        let all = store.journal_after(0, 512, 1 << 20).expect("read");
        let kinds: Vec<&str> = all.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["genesis", "decision", "outcome", "decision"]);
        let decision = &all[1];
        assert_eq!(decision.input, first.input);
        assert_eq!(decision.outcome.as_deref(), Some("ok"));
        assert!(decision.decision_id.is_some());
        assert_eq!(all[2].decision_id, decision.decision_id);
        // A byte budget smaller than one record still returns one.
        assert_eq!(store.journal_after(0, 512, 1).expect("read").len(), 1);
        assert_eq!(store.journal_after(1, 2, 1 << 20).expect("read").len(), 2);
        assert_eq!(store.head_seq().expect("head"), 4);
    }

    #[test]
    fn skipping_journals_why_and_moves_the_cursor() {
        let (_dir, mut store) = store();
        store.record_decision(&row("allow", "a")).expect("record");
        let seq = store
            .skip_export("opa", Kind::ExportGap, 2, &gap_body("opa", 1, 2, "backlog"))
            .expect("skip");
        assert_eq!(seq, 3);
        assert_eq!(
            store.export_cursor("opa").expect("cursor").last_acked_seq,
            2
        );
        assert_eq!(
            store.least_exported(&["opa", "otlp"]).expect("least"),
            Some(0)
        );
        assert!(!store.instance_id().expect("id").is_empty());
    }
}
