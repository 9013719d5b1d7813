-- Requests the wrapped server sends the client (sampling/createMessage, elicitation/create,
-- roots/list, ...). behavry relays them without a decision, but they are the server acting on the
-- user (asking the model to generate, asking the person for input, reading their roots), so an
-- audit of the session must show them. Its own table: they are not decisions, and `decisions`
-- keeps its meaning (one row per governed client request).
CREATE TABLE server_requests (
    id         INTEGER PRIMARY KEY,
    -- RFC 3339 UTC with milliseconds, as in `decisions`.
    ts         TEXT NOT NULL,
    session_id TEXT NOT NULL,
    server     TEXT NOT NULL,
    method     TEXT NOT NULL,
    -- The server's request id, as JSON text (ids are per direction: not a client request id).
    request_id TEXT NOT NULL,
    -- JSON, with secret-looking values redacted.
    params     TEXT NOT NULL
);

CREATE INDEX server_requests_session ON server_requests (session_id);
