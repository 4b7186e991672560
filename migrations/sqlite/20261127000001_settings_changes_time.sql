-- Instances look up the saves made since their last look (every IBEX_SETTINGS_POLL_MS) to drop stale cache
-- entries; this index keeps that look cheap however long the change log grows.
CREATE INDEX settings_changes_time ON settings_changes (changed_at);
