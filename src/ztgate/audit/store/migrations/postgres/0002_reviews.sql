-- Reviews: requests held for people to approve (docs/approvals.md). The columns are what the
-- store looks reviews up by; the document holds the rest, decisions included.
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    grant_key TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX reviews_by_request ON reviews (requester, fingerprint, created_at);
CREATE INDEX reviews_by_state ON reviews (state, created_at);
-- One open review per request: retries racing on several replicas all wait on the same one.
CREATE UNIQUE INDEX reviews_open ON reviews (requester, fingerprint)
    WHERE state IN ('pending', 'approved');
-- An approval's window: the requester may repeat this kind of request until it ends.
CREATE TABLE review_grants (
    requester TEXT NOT NULL,
    grant_key TEXT NOT NULL,
    review_id TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (requester, grant_key, review_id)
);
