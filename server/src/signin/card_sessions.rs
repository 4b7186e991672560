//! Sign-ins of the context card, kept on the server: the Infobip token the card acts with must never reach the
//! browser or a URL, so the page carries only a random session id, and the token waits in the settings
//! database, sealed like every other secret.
//!
//! Storage is tower-sessions' SQL store (SQLite or PostgreSQL, the settings database's own kind), used through
//! its `SessionStore` records. Its cookie layer is not used: the card lives in a cross-site iframe where
//! browsers drop third-party cookies, so the id travels in the card's URL instead (docs/exchange-assumptions.md).

use app::settings::crypto::KeyRing;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::SessionStore;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// The one key of a card session's record.
const SIGN_IN: &str = "sign_in";
/// Binds a sealed token to this use: a sealed settings secret cannot be passed off as one.
const TOKEN_PURPOSE: &[u8] = b"ibex-card-token-v1";

#[derive(Debug, thiserror::Error)]
pub enum CardSessionError {
    #[error("card sessions: the database is unavailable: {0}")]
    Database(String),
    #[error("card sessions: {0}")]
    Crypto(String),
}

/// Who signed in to the card, from Exchange's token answer. `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSignIn {
    pub account_key: String,
    pub user_key: String,
    pub username: String,
    pub email: String,
    pub locale: String,
    pub token: String,
    /// The token answer's `token_type`: the `Authorization` scheme the token is sent with unless the operator
    /// sets one (`IBEX_INFOBIP_AUTH_SCHEME`). Empty in a session stored before it was kept.
    #[serde(default)]
    pub token_type: String,
    /// Milliseconds since the epoch; the session ends with the token.
    pub token_expires_at: i64,
    /// The conversation the card was opened for: the session shows that one only, so an id seen in a URL
    /// (history, a proxy log) cannot be used to read the account's other conversations.
    pub conversation_id: String,
}

impl std::fmt::Debug for CardSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSignIn")
            .field("account_key", &self.account_key)
            .field("user_key", &self.user_key)
            .field("username", &self.username)
            .field("token_expires_at", &self.token_expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

#[derive(Clone)]
pub struct CardSessions {
    store: Store,
    keys: Arc<KeyRing>,
}

impl CardSessions {
    /// Opens the store in the settings database and creates its table if needed.
    pub async fn connect(database_url: &str, keys: Arc<KeyRing>) -> Result<Self, CardSessionError> {
        let db = |e: sqlx::Error| CardSessionError::Database(e.to_string());
        let store = if database_url.starts_with("sqlite:") {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(2)
                .connect(database_url)
                .await
                .map_err(db)?;
            let store = SqliteStore::new(pool)
                .with_table_name("card_sessions")
                .map_err(CardSessionError::Database)?;
            store.migrate().await.map_err(db)?;
            Store::Sqlite(store)
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(database_url)
                .await
                .map_err(db)?;
            let store = PostgresStore::new(pool)
                .with_table_name("card_sessions")
                .map_err(CardSessionError::Database)?;
            store.migrate().await.map_err(db)?;
            Store::Postgres(store)
        };
        Ok(CardSessions { store, keys })
    }

    /// Stores a sign-in and returns the id the card's URL carries.
    pub async fn create(&self, sign_in: &CardSignIn) -> Result<String, CardSessionError> {
        let mut stored = sign_in.clone();
        stored.token = self
            .keys
            .seal(&sign_in.token, TOKEN_PURPOSE)
            .map_err(|e| CardSessionError::Crypto(e.to_string()))?;
        let value =
            serde_json::to_value(&stored).map_err(|e| CardSessionError::Crypto(e.to_string()))?;
        let expiry = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(sign_in.token_expires_at) * 1_000_000,
        )
        .map_err(|e| CardSessionError::Crypto(e.to_string()))?;
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([(SIGN_IN.to_owned(), value)]),
            expiry_date: expiry,
        };
        let result = match &self.store {
            Store::Sqlite(s) => s.create(&mut record).await,
            Store::Postgres(s) => s.create(&mut record).await,
        };
        result.map_err(|e| CardSessionError::Database(e.to_string()))?;
        Ok(record.id.to_string())
    }

    /// The sign-in behind `id`, token opened; `None` for an unknown, malformed or expired id.
    pub async fn load(&self, id: &str) -> Result<Option<CardSignIn>, CardSessionError> {
        let Ok(id) = id.parse::<Id>() else {
            return Ok(None);
        };
        let loaded = match &self.store {
            Store::Sqlite(s) => s.load(&id).await,
            Store::Postgres(s) => s.load(&id).await,
        };
        let Some(record) = loaded.map_err(|e| CardSessionError::Database(e.to_string()))? else {
            return Ok(None);
        };
        if record.expiry_date <= time::OffsetDateTime::now_utc() {
            return Ok(None);
        }
        let Some(mut sign_in) = record
            .data
            .get(SIGN_IN)
            .and_then(|v| serde_json::from_value::<CardSignIn>(v.clone()).ok())
        else {
            return Ok(None);
        };
        sign_in.token = match self.keys.open(&sign_in.token, TOKEN_PURPOSE) {
            Ok(token) => token,
            // Sealed with a key this instance no longer holds (rotated away), or altered: the card signs in
            // again, as after an expiry, instead of failing.
            Err(e) => {
                tracing::info!("card session not usable ({e}); a new sign-in starts");
                return Ok(None);
            }
        };
        Ok(Some(sign_in))
    }

    /// Deletes expired sessions every `period`, for as long as the process runs: every card launch adds one,
    /// and an expired one holds an agent's name and e-mail. A failed sweep is logged and retried next time.
    pub fn spawn_cleanup(&self, period: std::time::Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                let swept = match &store {
                    Store::Sqlite(s) => s.delete_expired().await,
                    Store::Postgres(s) => s.delete_expired().await,
                };
                if let Err(e) = swept {
                    tracing::warn!("card sessions: deleting expired sessions failed: {e}");
                }
            }
        });
    }

    /// Ends a sign-in (its token was refused).
    pub async fn delete(&self, id: &str) -> Result<(), CardSessionError> {
        let Ok(id) = id.parse::<Id>() else {
            return Ok(());
        };
        let result = match &self.store {
            Store::Sqlite(s) => s.delete(&id).await,
            Store::Postgres(s) => s.delete(&id).await,
        };
        result.map_err(|e| CardSessionError::Database(e.to_string()))
    }
}
