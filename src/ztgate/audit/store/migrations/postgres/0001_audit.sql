-- The audit chain, its checkpoints and the recordings (PostgreSQL).
-- Statements end with ";" at the end of a line: the runner applies them one by one in one
-- transaction, under an advisory lock, so replicas starting together migrate once.

CREATE TABLE events (
    seq BIGINT PRIMARY KEY,         -- the chain's order (the hash commits to it)
    at DOUBLE PRECISION NOT NULL,   -- seconds since the epoch, UTC
    kind TEXT NOT NULL,
    request_id TEXT,
    principal TEXT,
    body BYTEA,                     -- the canonical JSON that was hashed, NULL once purged
    body_digest BYTEA NOT NULL,     -- sha256(body): kept after a purge
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_principal ON events (principal, seq);
CREATE INDEX events_request_id ON events (request_id);

CREATE TABLE checkpoints (
    seq BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    hash BYTEA NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (seq, key_id)
);

CREATE TABLE recordings (
    request_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    size BIGINT NOT NULL,           -- the encoded recording's size in bytes, before sealing
    truncated BOOLEAN NOT NULL,
    sealed BOOLEAN NOT NULL,
    blob BYTEA                      -- NULL once purged
);
CREATE INDEX recordings_session ON recordings (session_id, started_at);
CREATE INDEX recordings_principal ON recordings (principal, started_at);
CREATE INDEX recordings_started ON recordings (started_at);
