-- The tamper-evident journal: every audit fact (decisions, outcomes, resolutions, policy
-- reloads, server requests, prune checkpoints) is one record in a single hash chain.
--   hash = SHA-256(domain tag ‖ length-prefixed seq, ts, kind, ref_seq, body ‖ prev_hash)
-- Records are appended under BEGIN IMMEDIATE, so concurrent writers never fork the chain.
CREATE TABLE journal (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    -- The decision an outcome or resolution belongs to.
    ref_seq   INTEGER,
    -- Canonical JSON (sorted keys) of the record.
    body      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE INDEX journal_ref ON journal (ref_seq, kind) WHERE ref_seq IS NOT NULL;

-- The last record appended. Appends link to it, and `log --verify` compares it with the journal's
-- end, so rows cut from the tail are noticed.
CREATE TABLE chain_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
