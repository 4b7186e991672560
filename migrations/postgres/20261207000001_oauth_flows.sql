-- Sign-ins under way (Exchange OAuth), keyed by the digest of their `state`: the launch `state` Infobip opened the
-- page with, passed to Infobip's authorize endpoint unchanged, or one ibex made when there was none. The row holds
-- what the callback needs (PKCE verifier, the page to return to, the conversation), sealed with the encryption key
-- ring; the callback deletes it as it reads it (one use), and rows past `expires_at` are deleted by the next start.
CREATE TABLE oauth_flows (
    state_digest TEXT PRIMARY KEY NOT NULL,
    flow         TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX oauth_flows_expiry ON oauth_flows (expires_at);
