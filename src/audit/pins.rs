//! Pinned tool definitions in the store (`tool_pins`, see migration 005), and the journal
//! records that say when they changed (`tool_change`) and who trusted them (`tool_trust`).
//! The comparison itself is pure and lives in [`crate::pinning`].

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use serde_json::{json, Value};

use super::chain::{self, Kind};
use super::store::now_rfc3339;
use super::{Store, StoreError};
use crate::pinning::{self, Change, Pin, State};

/// Which server a listing came from.
pub struct PinUpdate<'a> {
    pub identity: &'a str,
    pub server: &'a str,
    pub command: &'a [String],
}

/// A pin with the server it belongs to, as `behavry tools` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub server: String,
    pub command: Vec<String>,
    pub identity: String,
    pub state: State,
    pub changes: Vec<&'static str>,
    #[serde(flatten)]
    pub pin: Pin,
}

const COLUMNS: &str = "tool, first_seen, trusted_hash, trusted_definition, trusted_at, trusted_by,
    current_hash, current_definition, seen_at, added, server, command, identity";

fn pin_of(r: &Row) -> rusqlite::Result<Listed> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        let text: Option<String> = r.get(i)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    };
    let pin = Pin {
        tool: r.get(0)?,
        first_seen: r.get(1)?,
        trusted_hash: r.get(2)?,
        trusted_definition: json(3)?.unwrap_or(Value::Null),
        trusted_at: r.get(4)?,
        trusted_by: r.get(5)?,
        current_hash: r.get(6)?,
        current_definition: json(7)?,
        seen_at: r.get(8)?,
        added: r.get(9)?,
    };
    let command: String = r.get(11)?;
    Ok(Listed {
        server: r.get(10)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        identity: r.get(12)?,
        state: pin.state(),
        changes: pin.changes(),
        pin,
    })
}

fn load(conn: &rusqlite::Connection, identity: &str) -> rusqlite::Result<Vec<Pin>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tool_pins WHERE identity = ?1 ORDER BY tool"
    ))?;
    let rows = stmt.query_map([identity], pin_of)?;
    rows.map(|r| r.map(|l| l.pin)).collect()
}

/// Compares a complete listing with the identity's pins and records the result in one
/// transaction: the pins, and a `tool_change` journal record per change. Returns every pin of
/// the identity afterwards, and the changes.
pub fn observe(
    store: &mut Store,
    update: &PinUpdate,
    tools: &HashMap<String, Value>,
    compare: fn(&[Pin], &HashMap<String, Value>, &str) -> pinning::Observed,
) -> Result<(Vec<Pin>, Vec<Change>), StoreError> {
    let sql = store.sqlite();
    let now = now_rfc3339();
    let command = json!(update.command).to_string();
    let tx = store.write_tx()?;
    let pins = load(&tx, update.identity).map_err(&sql)?;
    let observed = compare(&pins, tools, &now);
    for pin in &observed.pins {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO tool_pins (identity, server, command, tool, first_seen,
                trusted_hash, trusted_definition, trusted_at, trusted_by, current_hash,
                current_definition, seen_at, added)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                update.identity,
                update.server,
                command,
                pin.tool,
                pin.first_seen,
                pin.trusted_hash,
                pin.trusted_definition.to_string(),
                pin.trusted_at,
                pin.trusted_by,
                pin.current_hash,
                pin.current_definition.as_ref().map(Value::to_string),
                pin.seen_at,
                pin.added,
            ])
        })
        .map_err(&sql)?;
    }
    for change in &observed.changes {
        let body = json!({
            "server": update.server, "identity": update.identity, "command": update.command,
            "tool": change.tool, "change": change.change, "changes": change.changes,
            "previous_hash": change.previous_hash, "hash": change.hash,
        });
        chain::append(&tx, &now, Kind::ToolChange, None, &body).map_err(&sql)?;
    }
    let pins = load(&tx, update.identity).map_err(&sql)?;
    tx.commit().map_err(&sql)?;
    Ok((pins, observed.changes))
}

/// One pin of an identity.
pub fn get(store: &Store, identity: &str, tool: &str) -> Result<Option<Pin>, StoreError> {
    store
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM tool_pins WHERE identity = ?1 AND tool = ?2"),
            [identity, tool],
            pin_of,
        )
        .optional()
        .map(|l| l.map(|l| l.pin))
        .map_err(store.sqlite())
}

/// Every pin, or those of servers named `server`, by server, command and tool.
pub fn list(store: &Store, server: Option<&str>) -> Result<Vec<Listed>, StoreError> {
    let sql = store.sqlite();
    let mut stmt = store
        .conn()
        .prepare(&format!(
            "SELECT {COLUMNS} FROM tool_pins WHERE ?1 IS NULL OR server = ?1
             ORDER BY server, command, tool"
        ))
        .map_err(&sql)?;
    let rows = stmt.query_map([server], pin_of).map_err(&sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&sql)
}

/// The pin of `tool` from the identity of server `server` seen most recently, so `behavry policy
/// eval --mcp` decides with the annotations, schema and pin state the wrapper uses.
pub fn latest(store: &Store, server: &str, tool: &str) -> Result<Option<Pin>, StoreError> {
    store
        .conn()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM tool_pins WHERE server = ?1 AND tool = ?2
                 ORDER BY seen_at DESC LIMIT 1"
            ),
            [server, tool],
            pin_of,
        )
        .optional()
        .map(|l| l.map(|l| l.pin))
        .map_err(store.sqlite())
}

/// Accepts the current definitions of server `server`'s tools (`tool`, or every tool that is not
/// trusted): a changed or new tool becomes trusted as it is now, a removed one is forgotten.
/// Each is a `tool_trust` journal record naming `by`. Returns the tools trusted.
pub fn trust(
    store: &mut Store,
    server: &str,
    tool: Option<&str>,
    by: &str,
) -> Result<Vec<Listed>, StoreError> {
    let sql = store.sqlite();
    let now = now_rfc3339();
    let tx = store.write_tx()?;
    let listed: Vec<Listed> = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM tool_pins WHERE server = ?1 AND (?2 IS NULL OR tool = ?2)"
            ))
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![server, tool], pin_of)
            .map_err(&sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sql)?
    };
    let mut trusted = Vec::new();
    for l in listed.into_iter().filter(|l| l.state != State::Trusted) {
        match (&l.pin.current_hash, &l.pin.current_definition) {
            (Some(hash), Some(def)) => tx.execute(
                "UPDATE tool_pins SET trusted_hash = ?3, trusted_definition = ?4, trusted_at = ?5,
                    trusted_by = ?6, added = 0 WHERE identity = ?1 AND tool = ?2",
                params![l.identity, l.pin.tool, hash, def.to_string(), now, by],
            ),
            _ => tx.execute(
                "DELETE FROM tool_pins WHERE identity = ?1 AND tool = ?2",
                params![l.identity, l.pin.tool],
            ),
        }
        .map_err(&sql)?;
        let body = json!({
            "server": server, "identity": l.identity, "tool": l.pin.tool, "was": l.state,
            "previous_hash": l.pin.trusted_hash, "hash": l.pin.current_hash, "by": by,
        });
        chain::append(&tx, &now, Kind::ToolTrust, None, &body).map_err(&sql)?;
        trusted.push(l);
    }
    tx.commit().map_err(&sql)?;
    Ok(trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(desc: &str) -> HashMap<String, Value> {
        HashMap::from([(
            "a".to_owned(),
            json!({"name": "a", "description": desc, "annotations": {"readOnlyHint": true}}),
        )])
    }

    #[test]
    fn pins_change_and_are_trusted_in_the_store_and_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("b.db")).unwrap();
        let command = vec!["srv".to_owned()];
        let update = PinUpdate {
            identity: "id1",
            server: "fs",
            command: &command,
        };
        let (pins, changes) =
            observe(&mut store, &update, &listing("reads"), pinning::observe).unwrap();
        assert_eq!(pins.len(), 1);
        assert!(changes.is_empty());
        let (pins, changes) = observe(
            &mut store,
            &update,
            &listing("reads more"),
            pinning::observe,
        )
        .unwrap();
        assert_eq!(pins[0].state(), State::Changed);
        assert_eq!(changes[0].change, "changed");
        assert_eq!(
            get(&store, "id1", "a").unwrap().map(|p| p.state()),
            Some(State::Changed)
        );
        let pin = latest(&store, "fs", "a").unwrap().unwrap();
        assert_eq!(pin.current_definition.unwrap()["description"], "reads more");

        let trusted = trust(&mut store, "fs", None, "alice").unwrap();
        assert_eq!(trusted.len(), 1);
        let listed = list(&store, Some("fs")).unwrap();
        assert_eq!(listed[0].state, State::Trusted);
        assert_eq!(listed[0].pin.trusted_by, "alice");
        assert!(trust(&mut store, "fs", None, "alice").unwrap().is_empty());
        let kinds: Vec<String> = store
            .conn()
            .prepare("SELECT kind FROM journal WHERE kind LIKE 'tool_%' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kinds, ["tool_change", "tool_trust"]);
        assert!(store.verify().unwrap().is_ok());
    }
}
