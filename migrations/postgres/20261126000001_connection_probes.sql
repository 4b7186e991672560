-- "Test connection" attempts, the audit log's second half: who sent the partner probe for an account, which
-- fields came from the screen rather than the stored settings, which host it went to, and what came of it.
-- Never the values themselves.
CREATE TABLE connection_probes (
    id            BIGSERIAL PRIMARY KEY,
    account_key   TEXT NOT NULL,
    tested_fields TEXT NOT NULL,
    destination   TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    tested_by     TEXT NOT NULL,
    tested_at     BIGINT NOT NULL
);
CREATE INDEX connection_probes_account ON connection_probes (account_key, id);
