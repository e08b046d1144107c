-- The audit chain, its checkpoints and the recordings (embedded SQLite).
-- Statements end with ";" at the end of a line: the runner applies them one by one in one
-- transaction (SQLite's DDL is transactional).

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,        -- the chain's order (the hash commits to it)
    at REAL NOT NULL,               -- seconds since the epoch, UTC
    kind TEXT NOT NULL,
    request_id TEXT,
    principal TEXT,
    body BLOB,                      -- the canonical JSON that was hashed, NULL once purged
    body_digest BLOB NOT NULL,      -- sha256(body): kept after a purge
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_principal ON events (principal, seq);
CREATE INDEX events_request_id ON events (request_id);

CREATE TABLE checkpoints (
    seq INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    hash BLOB NOT NULL,
    at REAL NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (seq, key_id)
);

CREATE TABLE recordings (
    request_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    started_at REAL NOT NULL,
    size INTEGER NOT NULL,          -- the encoded recording's size in bytes, before sealing
    truncated INTEGER NOT NULL,
    sealed INTEGER NOT NULL,
    blob BLOB                       -- NULL once purged
);
CREATE INDEX recordings_session ON recordings (session_id, started_at);
CREATE INDEX recordings_principal ON recordings (principal, started_at);
CREATE INDEX recordings_started ON recordings (started_at);
