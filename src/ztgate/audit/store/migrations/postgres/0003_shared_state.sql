-- The state replicas share when no Redis is configured (ztgate/shared/postgres.py): quota
-- counters and claims (one-time tokens, container owners), each expiring.
CREATE TABLE ztgate_shared_counters (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE ztgate_shared_claims (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
