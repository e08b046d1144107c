-- Readiness (SQLiteStore.ping): /readyz rewrites this one row, so a store that cannot take a
-- write (a full disk, a read-only file or folder) shows as not ready, as the next append finds
-- it. A write transaction that writes nothing would let both through.
CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL,
    pad BLOB
);
INSERT INTO health (id, at, pad) VALUES (1, 0, NULL);
