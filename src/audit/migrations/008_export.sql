-- Decision logs: the journal is the spool. Nothing is copied out of it; each sink keeps a cursor
-- and the exporter sends the records past it, so the hot path writes nothing more than before.
-- Safe to run on a database that already has these tables (IF NOT EXISTS, WHERE NOT EXISTS).

-- One row per sink (`opa`, `otlp`). `last_acked_seq`: every record up to it was accepted by the
-- sink (a 2xx), parked after a rejection (`export_rejected`) or skipped (`export_gap`). It only
-- moves forward. `log --prune` keeps the records past the smallest cursor of the configured sinks.
CREATE TABLE IF NOT EXISTS export_cursors (
    sink           TEXT PRIMARY KEY,
    last_acked_seq INTEGER NOT NULL DEFAULT 0,
    -- When a batch was last accepted, and how many records have been accepted in all.
    last_success   TEXT,
    sent           INTEGER NOT NULL DEFAULT 0,
    -- The last failure (cleared by the next success), and when it happened.
    last_error     TEXT,
    last_error_at  TEXT
);

-- One exporter per database: every wrapper sharing the file starts one, and only the holder of
-- this lease sends. A holder renews it while it runs; a dead holder (pid and start time no longer
-- alive) or an expired lease is taken over.
CREATE TABLE IF NOT EXISTS export_lease (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    owner_pid   INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    -- Unix seconds.
    expires_at  INTEGER NOT NULL
);

-- This journal's identity in the team's collector (`instance_id`, OTLP `service.instance.id`):
-- with `seq` and the chain `hash` it is the key that makes resent records recognisable.
CREATE TABLE IF NOT EXISTS export_instance (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id  TEXT NOT NULL
);
INSERT INTO export_instance (one, id) SELECT 1, lower(
    hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
    || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-'
    || hex(randomblob(6)))
WHERE NOT EXISTS (SELECT 1 FROM export_instance);
