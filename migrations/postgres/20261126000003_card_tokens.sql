-- Conversations' Custom cards call ibex with an Authorization header an account admin pasted there. Each account
-- has at most one token; only its SHA-256 digest is kept (the token is shown once, when it is issued), with its
-- last characters so the configuration page can say which one is in use.
CREATE TABLE card_tokens (
    account_key TEXT PRIMARY KEY NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    hint        TEXT NOT NULL,
    issued_by   TEXT NOT NULL,
    issued_at   BIGINT NOT NULL
);
