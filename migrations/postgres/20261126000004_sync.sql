-- People data sync. A run is a durable job: claimed with a lease (several ibex instances may share this
-- database), checkpointed after every page with its counts, and resumed from the checkpoint after a crash or an
-- outage. At most one run per account and direction is open at a time.
CREATE TABLE sync_runs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_key     TEXT NOT NULL,
    direction       TEXT NOT NULL,
    status          TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_at    BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    checkpoint      TEXT NOT NULL DEFAULT '{}',
    read_count      BIGINT NOT NULL DEFAULT 0,
    created_count   BIGINT NOT NULL DEFAULT 0,
    updated_count   BIGINT NOT NULL DEFAULT 0,
    unchanged_count BIGINT NOT NULL DEFAULT 0,
    failed_count    BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE UNIQUE INDEX sync_runs_one_open ON sync_runs (account_key, direction)
    WHERE status IN ('queued', 'running', 'paused');
CREATE INDEX sync_runs_due ON sync_runs (status, next_attempt_at);

-- What was last written for each record: an equal digest means the record has not changed since, and is not
-- written again (a second run of an unchanged source sends People nothing).
CREATE TABLE sync_records (
    account_key TEXT NOT NULL,
    direction   TEXT NOT NULL,
    record_key  TEXT NOT NULL,
    digest      TEXT NOT NULL,
    synced_at   BIGINT NOT NULL,
    PRIMARY KEY (account_key, direction, record_key)
);

-- Records a run could not write, with the reason and the record itself (so "Retry failed" can send it again).
CREATE TABLE sync_failures (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      BIGINT NOT NULL,
    account_key TEXT NOT NULL,
    record_key  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    record      TEXT NOT NULL,
    failed_at   BIGINT NOT NULL
);
CREATE INDEX sync_failures_run ON sync_failures (run_id);
