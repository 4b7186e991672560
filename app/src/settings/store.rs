//! The settings database: SQLite by default, PostgreSQL when several ibex instances share one database.
//!
//! One code path serves both through sqlx's `Any` driver; only the migrations differ per backend. Saves are
//! optimistic: a row carries a version, and a write that expected another version is refused, never merged.

use super::crypto::{sealed_with, CryptoError, KeyRing};
use super::SettingsChange;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Connection tests (partner and People) an account may send per minute.
pub const PROBES_PER_MINUTE: i64 = 10;
/// Connection tests kept per account; older ones are deleted as new ones are recorded.
pub const PROBES_KEPT: i64 = 100;

/// What a connection test refused by `probe_allowed` answers.
pub const PROBES_EXHAUSTED: &str =
    "Tested 10 times in the last minute: wait a minute before testing again.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL must start with sqlite: or postgres:, got `{0}`")]
    UnsupportedUrl(String),
    #[error("cannot open the settings database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply migrations to the settings database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("settings database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("settings were changed by someone else (now at version {current}); reload and apply your change again")]
    Conflict { current: i64 },
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("stored settings of this account are not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The database failed moments ago: not asked again until it has had a moment (see `SettingsService`).
    #[error("the settings database did not answer a moment ago; retrying shortly")]
    RecentlyDown,
}

/// One entry of what `changed_since` found, as the settings cache must act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Settings saved under `key`.
    Saved { key: String, version: i64 },
    /// Settings saved under the account `key` is linked to.
    LinkedSaved { key: String, version: i64 },
    /// `key` was linked to another account, or unlinked.
    Relinked { key: String },
}

/// One account's stored settings, secrets opened. `Debug` masks the secrets so a stray log line leaks nothing.
#[derive(Clone, PartialEq)]
pub struct StoredSettings {
    pub account_key: String,
    pub values: BTreeMap<String, Value>,
    pub secrets: BTreeMap<String, String>,
    /// Secrets stored for the account that no key of `IBEX_ENCRYPTION_KEY` opens (a key removed too early, or
    /// a value altered in the database). They are kept as they are, so restoring the key brings them back;
    /// until then the page asks for them again and signed calls say so.
    pub unreadable: std::collections::BTreeSet<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl std::fmt::Debug for StoredSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSettings")
            .field("account_key", &self.account_key)
            .field("values", &self.values)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("unreadable", &self.unreadable)
            .field("version", &self.version)
            .field("updated_by", &self.updated_by)
            .finish()
    }
}

impl StoredSettings {
    /// An account nobody has saved yet (version 0).
    pub fn empty(account_key: &str) -> Self {
        StoredSettings {
            account_key: account_key.to_owned(),
            values: BTreeMap::new(),
            secrets: BTreeMap::new(),
            unreadable: std::collections::BTreeSet::new(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            updated_by: String::new(),
        }
    }

    /// Applies a validated change in memory only (plaintext secrets included).
    pub fn apply(&mut self, change: &SettingsChange) {
        for (key, value) in &change.values {
            match value {
                Some(v) => self.values.insert(key.clone(), v.clone()),
                None => self.values.remove(key),
            };
        }
        for (key, secret) in &change.secrets {
            // Entered again or cleared: either way no longer the unreadable stored value.
            self.unreadable.remove(key);
            match secret {
                Some(plain) => self.secrets.insert(key.clone(), plain.clone()),
                None => self.secrets.remove(key),
            };
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub version: i64,
    pub changed_fields: Vec<String>,
    pub changed_by: String,
    pub changed_at: i64,
}

/// One "Test connection" as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    pub tested_fields: Vec<String>,
    /// Host (and port) the probe was sent to; empty when nothing was sent.
    pub destination: String,
    pub outcome: String,
    pub tested_by: String,
    pub tested_at: i64,
}

/// An account's Custom cards token, as the configuration page may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTokenRecord {
    pub hint: String,
    pub issued_by: String,
    pub issued_at: i64,
}

#[derive(Clone)]
pub struct SettingsStore {
    pool: AnyPool,
    backend: Backend,
    keys: Arc<KeyRing>,
    /// Whether changes write their lifecycle events to the webhook outbox (a webhook endpoint is configured).
    webhooks: bool,
}

/// The URL with any password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl SettingsStore {
    pub async fn connect(url: &str, keys: Arc<KeyRing>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url);
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            // Waiting longer for a connection means the database is down (sqlx retries a refused connect
            // until this deadline) or swamped; a 503 then beats holding a signed call to its own deadline (5 s
            // by default).
            .acquire_timeout(Duration::from_secs(2))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets the signed path read while the configuration page writes.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(SettingsStore {
            pool,
            backend,
            keys,
            webhooks: false,
        })
    }

    /// The same store, writing lifecycle events to the webhook outbox with each change when `on` (set at
    /// start-up when `IBEX_WEBHOOK_URL` is configured; see `outbox`).
    pub fn with_webhooks(self, on: bool) -> Self {
        SettingsStore {
            webhooks: on,
            ..self
        }
    }

    /// Whether a change should write its event (`outbox::enqueue`) in its transaction.
    pub fn webhooks_enabled(&self) -> bool {
        self.webhooks
    }

    /// Records whether the deployment's serving instances have a webhook endpoint, so that a change made by
    /// another process on this database (`ibex settings set` from a shell without `IBEX_WEBHOOK_URL`) writes its
    /// event all the same: what decides is the deployment, not the environment of whoever made the change.
    pub async fn record_webhooks_deployed(&self, on: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_deployment (id, enabled, set_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET enabled = $1, set_at = $2",
        )
        .bind(i64::from(on))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the last serving instance to start on this database had a webhook endpoint.
    pub async fn webhooks_deployed(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT enabled FROM webhook_deployment WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>(0)? != 0,
            None => false,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Safe to run on every start and from several instances at once (sqlx takes a lock on PostgreSQL).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn load(&self, account_key: &str) -> Result<Option<StoredSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT account_key, values_json, secrets_json, version, created_at, updated_at, updated_by \
             FROM account_settings WHERE account_key = $1",
        )
        .bind(account_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| self.decode(&row)).transpose()
    }

    /// What changed since `since_ms`: accounts saved (with their newest version), the signed keys linked to
    /// them (their cache entries hold the linked account's settings), and keys linked or unlinked.
    pub async fn changed_since(&self, since_ms: i64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query_as::<_, (String, i64, i32)>(
            "SELECT account_key, MAX(version), 0 FROM settings_changes WHERE changed_at >= $1 GROUP BY account_key \
             UNION ALL \
             SELECT l.signed_key, MAX(c.version), 1 FROM settings_changes c \
             JOIN account_links l ON l.settings_key = c.account_key \
             WHERE c.changed_at >= $1 GROUP BY l.signed_key \
             UNION ALL \
             SELECT DISTINCT signed_key, 0, 2 FROM account_link_changes WHERE changed_at >= $1",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key, version, kind)| match kind {
                0 => Change::Saved { key, version },
                1 => Change::LinkedSaved { key, version },
                _ => Change::Relinked { key },
            })
            .collect())
    }

    /// Applies a validated change. `expected_version` is what the editor saw (0 for an account not yet saved);
    /// `None` applies the change on top of whatever is current, as the CLI does.
    pub async fn save(
        &self,
        account_key: &str,
        expected_version: Option<i64>,
        change: &SettingsChange,
        actor: &str,
    ) -> Result<StoredSettings, StoreError> {
        // SQLite: take the write lock at the start. A deferred transaction reads under a shared lock, and of two
        // concurrent saves the second then fails to upgrade it with "database is locked" (SQLite does not wait
        // on an upgrade, which could deadlock), a generic failure; begun IMMEDIATE it waits its turn, reads the
        // version the first one wrote, and ends as the conflict it is.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let current = sqlx::query("SELECT values_json, secrets_json, version FROM account_settings WHERE account_key = $1")
            .bind(account_key)
            .fetch_optional(&mut *tx)
            .await?;
        let now = now_ms();
        let (mut values, mut sealed, version): (Map<String, Value>, Map<String, Value>, i64) =
            match &current {
                Some(row) => (
                    serde_json::from_str(row.try_get::<String, _>(0)?.as_str())?,
                    serde_json::from_str(row.try_get::<String, _>(1)?.as_str())?,
                    row.try_get(2)?,
                ),
                None => (Map::new(), Map::new(), 0),
            };
        if let Some(expected) = expected_version {
            if expected != version {
                return Err(StoreError::Conflict { current: version });
            }
        }
        for (key, value) in &change.values {
            match value {
                Some(v) => values.insert(key.clone(), v.clone()),
                None => values.remove(key),
            };
        }
        for (key, secret) in &change.secrets {
            match secret {
                Some(plain) => {
                    let aad = secret_aad(account_key, key);
                    sealed.insert(key.clone(), Value::String(self.keys.seal(plain, &aad)?))
                }
                None => sealed.remove(key),
            };
        }
        let values_json = Value::Object(values).to_string();
        let secrets_json = Value::Object(sealed).to_string();
        let next = version + 1;
        if current.is_none() {
            let inserted = sqlx::query(
                "INSERT INTO account_settings \
                 (account_key, values_json, secrets_json, version, created_at, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(account_key)
            .bind(&values_json)
            .bind(&secrets_json)
            .bind(next)
            .bind(now)
            .bind(now)
            .bind(actor)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict { current: 1 });
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let updated = sqlx::query(
                "UPDATE account_settings SET values_json = $1, secrets_json = $2, version = $3, updated_at = $4, \
                 updated_by = $5 WHERE account_key = $6 AND version = $7",
            )
            .bind(&values_json)
            .bind(&secrets_json)
            .bind(next)
            .bind(now)
            .bind(actor)
            .bind(account_key)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict {
                    current: version + 1,
                });
            }
        }
        let fields = serde_json::to_string(&change.changed_fields())?;
        sqlx::query(
            "INSERT INTO settings_changes (account_key, version, changed_fields, changed_by, changed_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account_key)
        .bind(next)
        .bind(fields)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if self.webhooks {
            // Field names only: values (secrets above all) stay in the database.
            let data = serde_json::json!({
                "version": next,
                "changed_by": actor,
                "changed_fields": change.changed_fields(),
            });
            super::outbox::enqueue(
                &mut tx,
                account_key,
                super::outbox::EventKind::AccountConfigured,
                data,
            )
            .await?;
        }
        tx.commit().await?;
        self.load(account_key)
            .await?
            .ok_or(StoreError::Conflict { current: 0 })
    }

    /// Newest first.
    pub async fn changes(
        &self,
        account_key: &str,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, changed_fields, changed_by, changed_at FROM settings_changes \
             WHERE account_key = $1 ORDER BY version DESC LIMIT $2",
        )
        .bind(account_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChangeRecord {
                    version: row.try_get(0)?,
                    changed_fields: serde_json::from_str(row.try_get::<String, _>(1)?.as_str())?,
                    changed_by: row.try_get(2)?,
                    changed_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Makes signed calls for `signed_key` use the settings saved under `settings_key` (replacing any link).
    pub async fn link(
        &self,
        signed_key: &str,
        settings_key: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM account_links WHERE signed_key = $1")
            .bind(signed_key)
            .execute(&mut *tx)
            .await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO account_links (signed_key, settings_key, linked_by, linked_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(signed_key)
        .bind(settings_key)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::log_link_change(&mut tx, signed_key, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a link; true when there was one.
    pub async fn unlink(&self, signed_key: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM account_links WHERE signed_key = $1")
            .bind(signed_key)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            Self::log_link_change(&mut tx, signed_key, now_ms()).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Other instances hold the key's settings as the link gave them; this entry makes them read it again.
    async fn log_link_change(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        signed_key: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO account_link_changes (signed_key, changed_at) VALUES ($1, $2)")
            .bind(signed_key)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The settings key `signed_key` is linked to, if any.
    pub async fn linked(&self, signed_key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT settings_key FROM account_links WHERE signed_key = $1")
            .bind(signed_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Issues a new Custom cards token for the account, replacing (and so revoking) the one before.
    pub async fn replace_card_token(
        &self,
        account_key: &str,
        digest: &str,
        hint: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM card_tokens WHERE account_key = $1")
            .bind(account_key)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO card_tokens (account_key, digest, hint, issued_by, issued_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account_key)
        .bind(digest)
        .bind(hint)
        .bind(actor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if self.webhooks {
            // Who issued it, never the token nor its hint: the partner learns that the old one stopped working.
            let data = serde_json::json!({ "issued_by": actor });
            super::outbox::enqueue(
                &mut tx,
                account_key,
                super::outbox::EventKind::CardTokenIssued,
                data,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Which token the account has, without the token itself.
    pub async fn card_token(
        &self,
        account_key: &str,
    ) -> Result<Option<CardTokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT hint, issued_by, issued_at FROM card_tokens WHERE account_key = $1",
        )
        .bind(account_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CardTokenRecord {
                hint: r.try_get(0)?,
                issued_by: r.try_get(1)?,
                issued_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// The account a presented token's digest belongs to.
    pub async fn card_token_account(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT account_key FROM card_tokens WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records a connection test, keeping the account's newest `PROBES_KEPT`.
    pub async fn record_probe(
        &self,
        account_key: &str,
        record: &ProbeRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO connection_probes \
             (account_key, tested_fields, destination, outcome, tested_by, tested_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(account_key)
        .bind(serde_json::to_string(&record.tested_fields)?)
        .bind(&record.destination)
        .bind(&record.outcome)
        .bind(&record.tested_by)
        .bind(record.tested_at)
        .execute(&self.pool)
        .await?;
        // An account's probe history is what its admins look at, not an archive: the newest rows are kept.
        sqlx::query(
            "DELETE FROM connection_probes WHERE account_key = $1 AND id <= \
             (SELECT id FROM connection_probes WHERE account_key = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(account_key)
        .bind(PROBES_KEPT)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the account may send another connection test now: each sends a request to an address the admin
    /// typed and adds an audit row, so a script clicking "Test connection" is held to `PROBES_PER_MINUTE` (for
    /// every instance alike: the audit rows themselves are counted).
    pub async fn probe_allowed(&self, account_key: &str, now: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM connection_probes WHERE account_key = $1 AND tested_at > $2",
        )
        .bind(account_key)
        .bind(now - 60_000)
        .fetch_one(&self.pool)
        .await?;
        let recent: i64 = row.try_get(0)?;
        Ok(recent < PROBES_PER_MINUTE)
    }

    /// Newest first.
    pub async fn probes(
        &self,
        account_key: &str,
        limit: i64,
    ) -> Result<Vec<ProbeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT tested_fields, destination, outcome, tested_by, tested_at FROM connection_probes \
             WHERE account_key = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(account_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProbeRecord {
                    tested_fields: serde_json::from_str(row.try_get::<String, _>(0)?.as_str())?,
                    destination: row.try_get(1)?,
                    outcome: row.try_get(2)?,
                    tested_by: row.try_get(3)?,
                    tested_at: row.try_get(4)?,
                })
            })
            .collect()
    }

    fn decode(&self, row: &AnyRow) -> Result<StoredSettings, StoreError> {
        let account_key: String = row.try_get(0)?;
        let values: BTreeMap<String, Value> =
            serde_json::from_str(row.try_get::<String, _>(1)?.as_str())?;
        let sealed: BTreeMap<String, String> =
            serde_json::from_str(row.try_get::<String, _>(2)?.as_str())?;
        let mut secrets = BTreeMap::new();
        let mut unreadable = std::collections::BTreeSet::new();
        for (key, sealed) in sealed {
            match self.keys.open(&sealed, &secret_aad(&account_key, &key)) {
                Ok(plain) => {
                    secrets.insert(key, plain);
                }
                // One unreadable secret must not lock the account out of its own page: the admin can enter it
                // again, and the rest of the settings stay usable there.
                Err(e) => {
                    tracing::warn!(account = %account_key, field = %key, "stored secret unreadable: {e}");
                    unreadable.insert(key);
                }
            }
        }
        Ok(StoredSettings {
            account_key,
            values,
            secrets,
            unreadable,
            version: row.try_get(3)?,
            created_at: row.try_get(4)?,
            updated_at: row.try_get(5)?,
            updated_by: row.try_get(6)?,
        })
    }
}

/// What `ibex keys rewrap` did, or would do with `--dry-run`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    pub accounts: usize,
    /// Secrets re-sealed with the first key (or that would be).
    pub rewrapped: usize,
    /// Secrets already sealed with the first key.
    pub current: usize,
    /// (account, field) of secrets no key opens: left as they are.
    pub unreadable: Vec<(String, String)>,
    /// Accounts saved by someone else while they were rewrapped: left for the next run.
    pub conflicts: usize,
}

impl SettingsStore {
    /// Re-seals every secret not sealed with the first key of `IBEX_ENCRYPTION_KEY`, one account per
    /// transaction, so an interrupted run loses nothing and the next run finishes the rest (accounts already done
    /// are found current). Each re-sealed account gets a new version (in its change history as `ibex keys
    /// rewrap`, no fields changed), so a save racing it ends as a conflict rather than undoing it.
    pub async fn rewrap(&self, dry_run: bool) -> Result<RewrapReport, StoreError> {
        let mut report = RewrapReport::default();
        let mut after = String::new();
        loop {
            // Keyset pages: memory stays flat however many accounts there are.
            let rows = sqlx::query(
                "SELECT account_key, secrets_json, version FROM account_settings WHERE account_key > $1 \
                 ORDER BY account_key LIMIT 500",
            )
            .bind(&after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(report);
            };
            after = last.try_get(0)?;
            for row in &rows {
                let account_key: String = row.try_get(0)?;
                let before: String = row.try_get(1)?;
                let version: i64 = row.try_get(2)?;
                report.accounts += 1;
                // A row edited by hand into something else is reported, and the run goes on to the others.
                let Ok(sealed) = serde_json::from_str::<Map<String, Value>>(&before) else {
                    report.unreadable.push((
                        account_key.clone(),
                        "(all: the stored secrets are not JSON)".into(),
                    ));
                    continue;
                };
                let mut resealed = sealed.clone();
                let mut changed = false;
                for (field, value) in &sealed {
                    let text = value.as_str().unwrap_or_default();
                    let aad = secret_aad(&account_key, field);
                    // Opened even when it names the first key's id: an id says nothing of the key behind it
                    // (two bare keys are both `default`), and "current" must mean "opens".
                    let Ok(plain) = self.keys.open(text, &aad) else {
                        report.unreadable.push((account_key.clone(), field.clone()));
                        continue;
                    };
                    if sealed_with(text) == Some(self.keys.primary()) {
                        report.current += 1;
                        continue;
                    }
                    resealed.insert(field.clone(), Value::String(self.keys.seal(&plain, &aad)?));
                    report.rewrapped += 1;
                    changed = true;
                }
                if !changed || dry_run {
                    continue;
                }
                // A new version, over exactly what was read: a save that read the row before this one then
                // finds its version gone (a conflict, reloaded by the page) instead of writing the old-key
                // ciphertexts back; a save that came first leaves this one a conflict, for the next run.
                let mut tx = self.pool.begin().await?;
                let updated = sqlx::query(
                    "UPDATE account_settings SET secrets_json = $1, version = $2, updated_at = $3 \
                     WHERE account_key = $4 AND version = $5 AND secrets_json = $6",
                )
                .bind(Value::Object(resealed).to_string())
                .bind(version + 1)
                .bind(now_ms())
                .bind(&account_key)
                .bind(version)
                .bind(&before)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    tx.rollback().await?;
                    report.conflicts += 1;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO settings_changes (account_key, version, changed_fields, changed_by, changed_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&account_key)
                .bind(version + 1)
                .bind("[]")
                .bind("ibex keys rewrap")
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
    }
}

fn secret_aad(account_key: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(account_key.len() + field.len() + 1);
    aad.extend_from_slice(account_key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

fn create_sqlite_parent_dir(url: &str) {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
