-- Decisions that leave the machine (decision logs) and decisions made by a team's policy bundle.

-- A UUID per decision: the `decision_id` of exported events, so a collector can tell a record
-- sent twice (at-least-once delivery) from two decisions. NULL for rows recorded before it.
ALTER TABLE decisions ADD COLUMN decision_id TEXT;

-- The bundles active when the call was decided, as JSON: {"NAME": {"revision": "…", "sha256": "…"}}.
-- NULL when no bundle was configured.
ALTER TABLE decisions ADD COLUMN bundles TEXT;
