-- Bounds of sync_runs (docs/sync.md, "Bounds of a run"). Whether a run is a "Retry failed" run gets a column of
-- its own, so the page's history (read once a second while a run is open) and the prune need not read the
-- checkpoints, which hold the partner's cursor.
ALTER TABLE sync_runs ADD COLUMN retry_of BIGINT;
UPDATE sync_runs SET retry_of = json_extract(checkpoint, '$.retry_of')
    WHERE checkpoint LIKE '%"retry_of":%' AND json_valid(checkpoint);
-- An ended partner → People run's checkpoint is never read again: one written before cursors were capped (up to
-- 4 MiB) is emptied.
UPDATE sync_runs SET checkpoint = '{}'
    WHERE status IN ('done', 'failed') AND direction = 'to_people' AND LENGTH(checkpoint) > 2048;
