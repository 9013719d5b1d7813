-- Team policy bundles pulled from the team's host, stored here so that every wrapper on the
-- machine activates the same archive and only one of them downloads it (see `audit::bundles`).

-- One row per configured bundle name: the last archive that was downloaded and verified, and the
-- outcome of the last attempt. The archive is kept whole (not unpacked) so it can be verified
-- again by any wrapper that loads it, with that wrapper's own keys.
CREATE TABLE bundles (
    name TEXT PRIMARY KEY,
    -- Where it came from; a row whose url differs from the configured one is ignored.
    url TEXT NOT NULL,
    -- The verified archive as downloaded (NULL until one was).
    archive BLOB,
    -- The server's ETag for it, sent back as If-None-Match (NULL after an error: refetch).
    etag TEXT,
    -- SHA-256 of the archive bytes (hex), and the manifest's revision.
    sha256 TEXT,
    revision TEXT,
    -- The key id that verified its signature (NULL when unsigned and no signing is configured).
    signer TEXT,
    -- When the archive was stored, and when the host was last asked (RFC 3339, UTC).
    fetched_at TEXT,
    checked_at TEXT,
    -- Why the last attempt failed; NULL once one succeeds.
    last_error TEXT,
    -- The lease: the one process on this machine that polls the host for this bundle. Others
    -- take it over once expires_at has passed (its holder died or hung).
    lease_pid INTEGER,
    lease_instance TEXT,
    lease_expires_at INTEGER
);
