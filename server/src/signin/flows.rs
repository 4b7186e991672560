//! Sign-ins under way, kept in the settings database and keyed by their OAuth `state`.
//!
//! Infobip opens the card and the configuration page with a `state` of its own, and its sample app passes that
//! `state` unchanged to the authorize endpoint (docs/exchange-assumptions.md, "Launch state"): it is how Infobip
//! knows the launch without its portal cookie, which a cross-site frame may not send. So ibex cannot carry its
//! own data (PKCE verifier, return page, conversation) inside `state` any more; it keeps them here instead, under
//! the digest of the `state` the callback will bring back. Rows live in the database rather than in memory
//! because several instances share it and the callback may reach another instance than the start did.

use app::auth::OAuthState;
use app::settings::crypto::KeyRing;
use app::settings::store::SettingsStore;
use sha2::{Digest, Sha256};
use sqlx::Row;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("sign-ins under way: the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("sign-ins under way: {0}")]
    Sealing(#[from] app::auth::TokenError),
}

/// Only the digest is stored: a row read from the database (a backup, a replica) does not hand out the launch
/// `state` itself, which Infobip would accept once to sign its user in.
fn digest(state: &str) -> String {
    const_hex::encode(Sha256::digest(state.as_bytes()))
}

/// Records a sign-in that is about to go to Infobip under `state`; false when one is already under way under it.
/// A second start under the same `state` (the frame reloaded) is not recorded: Infobip answers one of them at
/// most, since a launch `state` is good once, and replacing the first would let whoever learnt a `state` swap in
/// a verifier, page or conversation of their own. Only an expired row under it gives way; the others are left to
/// `spawn_cleanup`, so a start writes one row and reads nothing else.
pub async fn put(
    store: &SettingsStore,
    keys: &KeyRing,
    state: &str,
    flow: &OAuthState,
    now_ms: i64,
) -> Result<bool, FlowError> {
    let sealed = flow.seal(keys)?;
    let inserted = sqlx::query(
        "INSERT INTO oauth_flows (state_digest, flow, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (state_digest) DO UPDATE SET flow = excluded.flow, expires_at = excluded.expires_at \
         WHERE oauth_flows.expires_at <= $4",
    )
    .bind(digest(state))
    .bind(sealed)
    .bind(flow.expires_at)
    .bind(now_ms)
    .execute(store.pool())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The sign-in started under `state`, removed as it is read (one use, even when two callbacks race: the delete
/// is the read); `None` when this server did not start it, it was used already, or it has expired.
pub async fn take(
    store: &SettingsStore,
    keys: &KeyRing,
    state: &str,
    now_ms: i64,
) -> Result<Option<OAuthState>, FlowError> {
    let row = sqlx::query("DELETE FROM oauth_flows WHERE state_digest = $1 RETURNING flow")
        .bind(digest(state))
        .fetch_optional(store.pool())
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let sealed: String = row.try_get(0)?;
    // Sealed with a key since rotated away, altered or expired: the same as never started.
    Ok(OAuthState::open(&sealed, keys, now_ms).ok())
}

/// Deletes sign-ins that were never finished, every `period`, for as long as the process runs (a sign-in lives
/// 10 minutes; `take` refuses an expired one anyway). A failed sweep is logged and retried next time.
pub fn spawn_cleanup(store: SettingsStore, period: std::time::Duration) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            let swept = sqlx::query("DELETE FROM oauth_flows WHERE expires_at <= $1")
                .bind(app::settings::store::now_ms())
                .execute(store.pool())
                .await;
            if let Err(e) = swept {
                tracing::warn!("sign-ins under way: deleting expired ones failed: {e}");
            }
        }
    });
}
