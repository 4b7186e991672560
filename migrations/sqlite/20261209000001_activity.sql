-- The activity view (docs/activity.md): what each account's calls did, counted in memory per account, surface,
-- function and minute, and written in batches (`server/src/activity`). Each batch adds to the rows (an upsert),
-- so instances sharing this database, and an instance restarted within a minute, add up instead of overwriting.
-- Rows are kept per minute (the last hour's view, kept a few hours) and per hour (the day's and week's views,
-- kept `IBEX_ACTIVITY_RETENTION_DAYS`). `lat0`..`lat28` count the calls by time taken: `lat0` up to 1 ms, then
-- each bucket's upper bound is √2 times the one before (`lat27` up to 11.6 s), `lat28` anything longer.
CREATE TABLE activity_calls (
    account_key TEXT NOT NULL,
    span_ms     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    surface     TEXT NOT NULL,
    function    TEXT NOT NULL,
    calls       BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    lat0  BIGINT NOT NULL DEFAULT 0,
    lat1  BIGINT NOT NULL DEFAULT 0,
    lat2  BIGINT NOT NULL DEFAULT 0,
    lat3  BIGINT NOT NULL DEFAULT 0,
    lat4  BIGINT NOT NULL DEFAULT 0,
    lat5  BIGINT NOT NULL DEFAULT 0,
    lat6  BIGINT NOT NULL DEFAULT 0,
    lat7  BIGINT NOT NULL DEFAULT 0,
    lat8  BIGINT NOT NULL DEFAULT 0,
    lat9  BIGINT NOT NULL DEFAULT 0,
    lat10 BIGINT NOT NULL DEFAULT 0,
    lat11 BIGINT NOT NULL DEFAULT 0,
    lat12 BIGINT NOT NULL DEFAULT 0,
    lat13 BIGINT NOT NULL DEFAULT 0,
    lat14 BIGINT NOT NULL DEFAULT 0,
    lat15 BIGINT NOT NULL DEFAULT 0,
    lat16 BIGINT NOT NULL DEFAULT 0,
    lat17 BIGINT NOT NULL DEFAULT 0,
    lat18 BIGINT NOT NULL DEFAULT 0,
    lat19 BIGINT NOT NULL DEFAULT 0,
    lat20 BIGINT NOT NULL DEFAULT 0,
    lat21 BIGINT NOT NULL DEFAULT 0,
    lat22 BIGINT NOT NULL DEFAULT 0,
    lat23 BIGINT NOT NULL DEFAULT 0,
    lat24 BIGINT NOT NULL DEFAULT 0,
    lat25 BIGINT NOT NULL DEFAULT 0,
    lat26 BIGINT NOT NULL DEFAULT 0,
    lat27 BIGINT NOT NULL DEFAULT 0,
    lat28 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_key, span_ms, at_ms, surface, function)
);
CREATE INDEX activity_calls_age ON activity_calls (span_ms, at_ms);

-- Failed calls by error code (and the partner's or People's HTTP status when it answered; 0 when not).
CREATE TABLE activity_outcomes (
    account_key TEXT NOT NULL,
    span_ms     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    surface     TEXT NOT NULL,
    function    TEXT NOT NULL,
    code        TEXT NOT NULL,
    status      BIGINT NOT NULL DEFAULT 0,
    calls       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_key, span_ms, at_ms, surface, function, code, status)
);
CREATE INDEX activity_outcomes_age ON activity_outcomes (span_ms, at_ms);

-- The last failed calls of each account (the newest 50 are kept): never a body, a secret or a token.
CREATE TABLE activity_failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_key TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    request_id  TEXT NOT NULL DEFAULT '',
    surface     TEXT NOT NULL,
    function    TEXT NOT NULL,
    code        TEXT NOT NULL,
    status      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX activity_failures_account ON activity_failures (account_key, id);

-- Whether an account's credentials work, per source (`partner` or `people`): a 401 or 403 from it marks them
-- failing (since the first such answer after the last accepted call), an accepted call marks them working again.
CREATE TABLE credential_health (
    account_key       TEXT NOT NULL,
    source            TEXT NOT NULL,
    failing_since_ms  BIGINT,
    last_failure_ms   BIGINT,
    last_status       BIGINT,
    last_ok_ms        BIGINT,
    PRIMARY KEY (account_key, source)
);
