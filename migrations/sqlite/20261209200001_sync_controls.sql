-- Sync controls (issue 28). An admin pauses an account's sync, per direction: a paused direction gets no
-- scheduled or requested runs, and a run in progress stops at its next page.
CREATE TABLE sync_pauses (
    account_key TEXT NOT NULL,
    direction   TEXT NOT NULL,
    paused_by   TEXT NOT NULL,
    paused_at   BIGINT NOT NULL,
    PRIMARY KEY (account_key, direction)
);

-- Who paused, resumed or resynced an account's sync, and when: the sync panel's history shows the newest.
CREATE TABLE sync_control_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_key TEXT NOT NULL,
    action      TEXT NOT NULL,
    direction   TEXT,
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX sync_control_log_account ON sync_control_log (account_key, id);

-- Deletes: the complete partner → People run that last read each record. A record a complete run did not read
-- is gone from the source, and is handled as [sync] on_delete says; the run counts what it tagged or deleted.
ALTER TABLE sync_records ADD COLUMN seen_run BIGINT;
ALTER TABLE sync_runs ADD COLUMN tagged_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN deleted_count BIGINT NOT NULL DEFAULT 0;
