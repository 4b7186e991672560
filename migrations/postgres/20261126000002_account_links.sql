-- Signed calls name an account by X-Ib-Exchange-Req-AccountKey, the configuration page by the OAuth token's
-- accountKey. ibex assumes they are the same value; if Infobip's two ever differ, an operator links the key the
-- signed calls use to the key the settings were saved under (`ibex settings link`).
CREATE TABLE account_links (
    signed_key   TEXT PRIMARY KEY NOT NULL,
    settings_key TEXT NOT NULL,
    linked_by    TEXT NOT NULL,
    linked_at    BIGINT NOT NULL
);
