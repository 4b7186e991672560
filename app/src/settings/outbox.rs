//! The webhook outbox: lifecycle events for the partner (docs/webhooks.md), stored in the settings database by
//! the transaction that makes the change they report. Committed together or not at all, a change can never be
//! made without its event, nor an event sent for a change that was rolled back; a crash right after the commit
//! leaves the event for whichever instance delivers next.
//!
//! Events are written only when the deployment has a webhook endpoint (`SettingsStore::webhooks_enabled`):
//! without one, a save costs exactly what it did before.
//!
//! Delivery (server/src/webhooks) claims a row with a lease, as sync runs are claimed: on PostgreSQL the claim
//! skips rows another instance is claiming (`FOR UPDATE SKIP LOCKED`), on SQLite the single UPDATE is atomic.
//! Each outcome is written fenced by the lease, so an instance that stalled past its lease cannot overwrite
//! what the new holder recorded.

use super::store::{now_ms, Backend, SettingsStore, StoreError};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::Row;

/// What happened, as the partner's endpoint reads it in the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    AccountConfigured,
    CredentialsFailed,
    CredentialsRecovered,
    SyncRunSucceeded,
    SyncRunFailed,
    CardTokenIssued,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::AccountConfigured,
        EventKind::CredentialsFailed,
        EventKind::CredentialsRecovered,
        EventKind::SyncRunSucceeded,
        EventKind::SyncRunFailed,
        EventKind::CardTokenIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountConfigured => "account.configured",
            EventKind::CredentialsFailed => "account.credentials_failed",
            EventKind::CredentialsRecovered => "account.credentials_recovered",
            EventKind::SyncRunSucceeded => "sync.run.succeeded",
            EventKind::SyncRunFailed => "sync.run.failed",
            EventKind::CardTokenIssued => "card_token.issued",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes one event inside the caller's transaction and returns its id (the `webhook-id` every attempt carries).
///
/// The body is fixed here, once: every attempt sends the same bytes, so a receiver that deduplicates by id and
/// one that compares bodies agree. `data` gets the account's key as `account_key` (when it is an object without
/// one), so a partner can always tell whose event it is. Call it only when `SettingsStore::webhooks_enabled`.
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    account_key: &str,
    kind: EventKind,
    mut data: Value,
) -> Result<String, StoreError> {
    if let Value::Object(map) = &mut data {
        map.entry("account_key")
            .or_insert_with(|| Value::String(account_key.to_owned()));
    }
    let now = now_ms();
    let id = new_event_id();
    let payload = json!({
        "type": kind.as_str(),
        "timestamp": rfc3339(now),
        "data": data,
    })
    .to_string();
    sqlx::query(
        "INSERT INTO webhook_outbox (event_id, account_key, event_type, payload, state, attempts, created_at, \
         queued_at, next_attempt_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
    )
    .bind(&id)
    .bind(account_key)
    .bind(kind.as_str())
    .bind(payload)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

impl SettingsStore {
    /// One event on its own, for a fact that has no transaction of its own to share (a credentials check
    /// observed on the signed path, say); nothing when the deployment has no webhook endpoint. A change that
    /// does write something calls `enqueue` inside its transaction instead.
    pub async fn enqueue_event(
        &self,
        account_key: &str,
        kind: EventKind,
        data: Value,
    ) -> Result<Option<String>, StoreError> {
        if !self.webhooks_enabled() {
            return Ok(None);
        }
        let mut conn = self.pool().acquire().await?;
        enqueue(&mut conn, account_key, kind, data).await.map(Some)
    }
}

/// `msg_` and 128 random bits: unique across instances without asking the database, and the prefix the
/// Standard Webhooks examples use, so an id is recognisable in the partner's logs.
fn new_event_id() -> String {
    format!("msg_{:032x}", rand::rngs::OsRng.gen::<u128>())
}

/// Milliseconds since the epoch as RFC 3339 in UTC (the payload's `timestamp`).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event_id: String,
    pub account_key: String,
    pub event_type: String,
    /// The JSON body sent, as stored.
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    /// When the retry window started: the enqueue, or the last `replay`.
    pub queued_at: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

const COLUMNS: &str =
    "seq, event_id, account_key, event_type, payload, state, attempts, created_at, queued_at, \
     next_attempt_at, last_error, delivered_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        seq: row.try_get(0)?,
        event_id: row.try_get(1)?,
        account_key: row.try_get(2)?,
        event_type: row.try_get(3)?,
        payload: row.try_get(4)?,
        state: row.try_get(5)?,
        attempts: row.try_get(6)?,
        created_at: row.try_get(7)?,
        queued_at: row.try_get(8)?,
        next_attempt_at: row.try_get(9)?,
        last_error: row.try_get(10)?,
        delivered_at: row.try_get(11)?,
    })
}

/// What `replay` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Pending again, due now, attempts counted from zero, under the same id.
    Queued,
    /// An instance holds it right now (an attempt in flight): left alone so it is not sent twice at once.
    InFlight,
    NotFound,
}

/// The delivery side of the outbox: claims, outcomes, and what the operator lists and replays.
#[derive(Clone)]
pub struct Outbox {
    store: SettingsStore,
}

impl Outbox {
    pub fn new(store: SettingsStore) -> Self {
        Outbox { store }
    }

    /// Claims the oldest due event for `owner` until `lease_ms` from now, counting the attempt: a pending event
    /// whose time has come and that no live lease holds (a holder that died leaves its lease to run out).
    pub async fn claim(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<OutboxEvent>, StoreError> {
        let now = now_ms();
        let lock = match self.store.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE webhook_outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE seq = (SELECT seq FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) ORDER BY seq LIMIT 1 {lock}) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// The partner took it (a 2xx answer). False when the lease was no longer `owner`'s.
    pub async fn delivered(&self, seq: i64, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_outbox SET state = 'delivered', delivered_at = $1, last_error = NULL, \
             lease_owner = NULL, lease_until = NULL WHERE seq = $2 AND lease_owner = $3 AND state = 'pending'",
        )
        .bind(now_ms())
        .bind(seq)
        .bind(owner)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An attempt failed with `error`: tried again at `retry_at`, or, with `None`, given up (`dead`). False when
    /// the lease was no longer `owner`'s.
    pub async fn failed(
        &self,
        seq: i64,
        owner: &str,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let (state, next) = match retry_at {
            Some(at) => (PENDING, at),
            None => (DEAD, now_ms()),
        };
        let done = sqlx::query(
            "UPDATE webhook_outbox SET state = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, \
             lease_until = NULL WHERE seq = $4 AND lease_owner = $5 AND state = 'pending'",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(seq)
        .bind(owner)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Newest first, optionally of one account and one state.
    pub async fn list(
        &self,
        account_key: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_outbox WHERE ($1 IS NULL OR account_key = $1) \
             AND ($2 IS NULL OR state = $2) ORDER BY seq DESC LIMIT $3"
        ))
        .bind(account_key)
        .bind(state)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn get(&self, event_id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_outbox WHERE event_id = $1"
        ))
        .bind(event_id)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Sends an event again, under its own id: pending, due now, with a fresh retry window. An event whose
    /// attempt is in flight (a live lease) is left to that attempt.
    pub async fn replay(&self, event_id: &str) -> Result<Replay, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE webhook_outbox SET state = 'pending', attempts = 0, queued_at = $1, next_attempt_at = $1, \
             delivered_at = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE event_id = $2 AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .bind(event_id)
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Replay::Queued);
        }
        Ok(match self.get(event_id).await? {
            Some(_) => Replay::InFlight,
            None => Replay::NotFound,
        })
    }

    /// Events still to be delivered (the pending gauge).
    pub async fn pending(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending'")
            .fetch_one(self.store.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Deletes delivered and dead events last queued before `before_ms` (a replayed event counts from its
    /// replay); pending ones stay whatever their age.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM webhook_outbox WHERE state IN ('delivered', 'dead') AND queued_at < $1",
        )
        .bind(before_ms)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_the_documented_names() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "account.configured",
                "account.credentials_failed",
                "account.credentials_recovered",
                "sync.run.succeeded",
                "sync.run.failed",
                "card_token.issued"
            ]
        );
    }

    #[test]
    fn ids_are_unique_and_header_safe() {
        let (a, b) = (new_event_id(), new_event_id());
        assert_ne!(a, b);
        assert!(a.starts_with("msg_") && a.len() == 36);
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_614_265_330_000), "2021-02-25T15:02:10Z");
        assert_eq!(rfc3339(1_614_265_330_250), "2021-02-25T15:02:10.25Z");
    }
}
