-- Bounds of a sync run (docs/sync.md, "Bounds of a run"). A failed record is stored cut to 4 KiB (one enormous
-- record must not fill the database); `truncated` says which were cut, so the page can say so and "Retry failed"
-- does not send a cut record as if it were whole.
ALTER TABLE sync_failures ADD COLUMN truncated BIGINT NOT NULL DEFAULT 0;
-- Failed records are kept for an account's newest runs only: pruned by account, newest runs found by account.
CREATE INDEX sync_failures_account ON sync_failures (account_key, run_id);
CREATE INDEX sync_runs_account ON sync_runs (account_key, id);
