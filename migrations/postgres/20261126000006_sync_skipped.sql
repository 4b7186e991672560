-- People → partner skips persons that did not come from the partner (no identifier): counted apart from
-- failures, which need a person's attention.
ALTER TABLE sync_runs ADD COLUMN skipped_count BIGINT NOT NULL DEFAULT 0;
