-- The number of records in the source, when the partner's list says (`[sync.to_people] total_output`): the
-- configuration page's progress bar and time left.
ALTER TABLE sync_runs ADD COLUMN total BIGINT;
