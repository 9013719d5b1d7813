//! The policy inputs recorded with decisions (`decision_inputs`, see migration 005), read back
//! for `behavry policy replay`.

use super::{Store, StoreError};
use crate::policy::replay::Recorded;

/// Every decision at or after `since` (of server `server`, if given) whose input was recorded,
/// oldest first. Calls refused before any policy ran have none: no policy could change them.
pub fn recorded(
    store: &Store,
    since: &str,
    server: Option<&str>,
) -> Result<Vec<Recorded>, StoreError> {
    let sql = store.sqlite();
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT d.id, d.ts, d.server, d.tool, d.decision, i.input
             FROM decisions d JOIN decision_inputs i ON i.decision_id = d.id
             WHERE d.ts >= ?1 AND (?2 IS NULL OR d.server = ?2)
             ORDER BY d.id",
        )
        .map_err(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params![since, server], |r| {
            let input: String = r.get(5)?;
            Ok(Recorded {
                id: r.get(0)?,
                ts: r.get(1)?,
                server: r.get(2)?,
                tool: r.get(3)?,
                decision: r.get(4)?,
                input: serde_json::from_str(&input).unwrap_or_default(),
            })
        })
        .map_err(&sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&sql)
}
