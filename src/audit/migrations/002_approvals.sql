-- Escalated calls waiting for a person. The wrapper holding the call inserts the row (with its
-- decision, in one transaction); `behavry approve` resolves it; the wrapper polls for the change.
-- Rows are never deleted: together with decisions.resolution they are the escalation's audit.
CREATE TABLE approvals (
    decision_id   INTEGER PRIMARY KEY REFERENCES decisions (id),
    -- The wrapper process holding the call, and its start time: a pid alone can be reused.
    owner_pid     INTEGER NOT NULL,
    owner_start   INTEGER NOT NULL,
    -- SHA-256 of the exact request that was evaluated and will be forwarded; an approval names
    -- the hash it was shown, so it can only release that request.
    request_hash  TEXT NOT NULL,
    -- The request as the approver shows it (arguments redacted like decisions.arguments).
    summary       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    -- pending, then one of: approved, approved_session, denied, timeout, cancelled, abandoned.
    state         TEXT NOT NULL DEFAULT 'pending',
    deny_reason   TEXT,
    resolved_by   TEXT,
    resolved_at   TEXT
);

CREATE INDEX approvals_pending ON approvals (state) WHERE state = 'pending';
