-- One row per Infobip account (keyed by X-Ib-Exchange-Req-AccountKey). Plain values are JSON; secrets are a JSON
-- map of field -> "v1:<key id>:<base64 nonce+ciphertext>", sealed by the server before they reach this table.
CREATE TABLE account_settings (
    account_key  TEXT PRIMARY KEY NOT NULL,
    values_json  TEXT NOT NULL,
    secrets_json TEXT NOT NULL,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL
);

-- Who changed which fields when; never the values themselves.
CREATE TABLE settings_changes (
    id             BIGSERIAL PRIMARY KEY,
    account_key    TEXT NOT NULL,
    version        BIGINT NOT NULL,
    changed_fields TEXT NOT NULL,
    changed_by     TEXT NOT NULL,
    changed_at     BIGINT NOT NULL
);
CREATE INDEX settings_changes_account ON settings_changes (account_key, version);
