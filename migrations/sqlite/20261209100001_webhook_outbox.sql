-- Lifecycle webhooks to the partner (docs/webhooks.md). An event is written here in the same transaction as the
-- change it reports, so a change committed is an event that will be sent, whatever happens to the instance
-- after the commit. Delivery claims a row with a lease (instances on one PostgreSQL share the table), sends it
-- with the same event_id on every attempt, and marks it delivered, retried later, or dead after the retry window.
CREATE TABLE webhook_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    account_key     TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    queued_at       BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
CREATE INDEX webhook_outbox_queued ON webhook_outbox (queued_at);
-- The claim takes the oldest due event: walked in `seq` order within the pending ones, not by sorting every due row.
CREATE INDEX webhook_outbox_order ON webhook_outbox (state, seq);

-- Whether the deployment's serving instances have a webhook endpoint (written by each as it starts): a change made
-- by another process on this database (the command line) writes its event when they do, whatever its own
-- environment says.
CREATE TABLE webhook_deployment (
    id      BIGINT PRIMARY KEY,
    enabled BIGINT NOT NULL,
    set_at  BIGINT NOT NULL
);
