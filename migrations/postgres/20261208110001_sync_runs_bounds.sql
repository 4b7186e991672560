-- Bounds of sync_runs (docs/sync.md, "Bounds of a run"). Whether a run is a "Retry failed" run gets a column of
-- its own, so the page's history (read once a second while a run is open) and the prune need not read the
-- checkpoints, which hold the partner's cursor.
ALTER TABLE sync_runs ADD COLUMN retry_of BIGINT;
-- By pattern rather than a JSON cast, so that one checkpoint edited by hand cannot stop the migration.
UPDATE sync_runs SET retry_of = CAST(substring(checkpoint from '"retry_of":([0-9]{1,18})') AS BIGINT)
    WHERE checkpoint LIKE '%"retry_of":%';
-- An ended partner → People run's checkpoint is never read again: one written before cursors were capped (up to
-- 4 MiB) is emptied.
UPDATE sync_runs SET checkpoint = '{}'
    WHERE status IN ('done', 'failed') AND direction = 'to_people' AND LENGTH(checkpoint) > 2048;
