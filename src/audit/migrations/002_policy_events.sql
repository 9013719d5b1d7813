-- Things that happen to a wrapper's policy set, beside the decisions: every hot reload, applied
-- or rejected, so an auditor can tell which rules were in force when (decision rows carry the
-- hash of the set that decided them; these rows say when that set came and went). A table of its
-- own keeps `decisions`, and the JSON that `behavry log --json` prints from it, unchanged.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    -- RFC 3339 UTC with milliseconds, like decisions.ts.
    ts          TEXT NOT NULL,
    -- policy_reload | policy_reload_failed
    kind        TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    server      TEXT NOT NULL,
    -- The hash of the policy set in force after the event (NULL if none compiled).
    policy_hash TEXT,
    -- JSON object: the files loaded, or the errors that stopped the new set.
    detail      TEXT NOT NULL
);

CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_session ON events (session_id);
