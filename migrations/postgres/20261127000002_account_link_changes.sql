-- `ibex settings link` and `unlink` change which settings a signed key resolves to without a save, so the
-- settings change log cannot tell other instances; they read this log as well and drop the key's cache entry.
CREATE TABLE account_link_changes (
    signed_key TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX account_link_changes_time ON account_link_changes (changed_at);
