-- Who may change an account's settings when Infobip's sign-in says nothing about roles: the user keys the
-- operator (`ibex admins add`) or an admin of the account (on the configuration page) listed. `username` is the
-- name the user last signed in with, so the page can say who to ask; `added_by` is the audit trail.
CREATE TABLE account_admins (
    account_key TEXT NOT NULL,
    user_key    TEXT NOT NULL,
    username    TEXT NOT NULL DEFAULT '',
    added_by    TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (account_key, user_key)
);
