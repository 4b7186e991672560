-- The number of records in the source, when the partner's list says (`[sync.to_people] total_output`), and the
-- records of the page in flight that are already handled: the configuration page's progress bar and time left
-- between page checkpoints.
ALTER TABLE sync_runs ADD COLUMN total BIGINT;
ALTER TABLE sync_runs ADD COLUMN page_done BIGINT NOT NULL DEFAULT 0;
