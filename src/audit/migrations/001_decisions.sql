-- One row per governed request, written (and committed) before the request is forwarded or
-- answered. Rows are never updated: how a call ended (its outcome, an escalation's resolution)
-- is a later journal record that refers to the decision (see 003_journal.sql).
CREATE TABLE decisions (
    -- The journal sequence number of this decision's record.
    id            INTEGER PRIMARY KEY,
    -- RFC 3339 UTC with milliseconds; text so it sorts and compares as written.
    ts            TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    server        TEXT NOT NULL,
    tool          TEXT NOT NULL,
    method        TEXT NOT NULL,
    action_type   TEXT NOT NULL,
    resource_path TEXT,
    decision      TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'escalate')),
    -- JSON array of strings.
    reasons       TEXT NOT NULL,
    -- JSON, with secret-looking values redacted.
    arguments     TEXT NOT NULL,
    agent         TEXT NOT NULL,
    requester     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    policy_hash   TEXT NOT NULL,
    request_id    TEXT NOT NULL
);

-- The filters `behavry log` offers.
CREATE INDEX decisions_ts ON decisions (ts);
CREATE INDEX decisions_session ON decisions (session_id);
CREATE INDEX decisions_server_tool ON decisions (server, tool);
