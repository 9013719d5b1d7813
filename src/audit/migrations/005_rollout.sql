-- Rolling policies out without fear: monitor mode, replay, and tool pinning.

-- 0 for a call decided in monitor mode: recorded as decided, but forwarded whatever the decision
-- (`decision` is what enforcement would have done). Decision records written in monitor mode
-- carry `"enforced": false` in their journal body, so `log --verify` covers it.
ALTER TABLE decisions ADD COLUMN enforced INTEGER NOT NULL DEFAULT 1;

-- The exact policy input of each decision (arguments redacted as in decisions.arguments), so
-- `behavry policy replay` can evaluate another policy set against what really happened. Kept
-- beside the decision rather than in its journal body: it is large, and it is evidence for
-- replay, not for the audit trail.
CREATE TABLE decision_inputs (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions (id),
    input       TEXT NOT NULL
);

-- Every tool definition a server listed, pinned per server identity (its `--name` and wrapped
-- command line), so a definition that changes behind the user's back is noticed. The trusted
-- definition is what the user accepted (the first one seen, or one trusted with
-- `behavry tools trust`); the current one is what the server lists now (NULL once removed).
-- Changes and trusts are also journal records (`tool_change`, `tool_trust`).
CREATE TABLE tool_pins (
    identity           TEXT NOT NULL,
    server             TEXT NOT NULL,
    -- The wrapped command line, as a JSON array of strings.
    command            TEXT NOT NULL,
    tool               TEXT NOT NULL,
    first_seen         TEXT NOT NULL,
    trusted_hash       TEXT NOT NULL,
    trusted_definition TEXT NOT NULL,
    trusted_at         TEXT NOT NULL,
    trusted_by         TEXT NOT NULL,
    current_hash       TEXT,
    current_definition TEXT,
    -- When the current definition was first listed.
    seen_at            TEXT NOT NULL,
    -- 1 for a tool that appeared after the server's first listing, until it is trusted.
    added              INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (identity, tool)
);

CREATE INDEX tool_pins_server ON tool_pins (server);
