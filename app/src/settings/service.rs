//! What the rest of ibex asks of settings: "give me this account's settings, ready to use" on the signed path
//! (cached), and "apply this change" from the CLI or the configuration page (validated, then the cache entry is
//! dropped). Other instances sharing a PostgreSQL database see a change once their cache entry expires.

use super::store::{Change, SettingsStore, StoreError, StoredSettings};
use super::{validate_changes, FieldError};
use crate::definition::template::{Lookup, Source};
use crate::definition::{sync, AppDefinition};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `stored` tells an account with incomplete settings from one ibex has no settings for at all, for which
    /// the log hints at a different account key (`ibex settings link`).
    #[error("{}", if *.stored { format!("account is not configured yet: {missing:?} missing") } else { "no settings are stored under this account key; if the configuration page saved them under another key (Infobip's signed-call key and OAuth key differ), link the two with `ibex settings link SIGNED_KEY SETTINGS_KEY`".to_owned() })]
    NotConfigured { missing: Vec<String>, stored: bool },
    #[error("invalid settings")]
    Invalid(Vec<FieldError>),
    /// Secrets no configured key opens: an admin enters them again (or the operator restores the key).
    #[error("stored secret(s) {0:?} cannot be opened with the configured encryption keys")]
    Unreadable(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The definition's settings by position, built once and shared by every cached account: keys and defaults
/// are held once, not once per account (100 000 accounts fit in a third of the memory).
pub struct Fields {
    /// foldhash, not SipHash: looked up several times per signed call, with keys from the definition only
    /// (nobody can choose them to collide).
    index: foldhash::HashMap<String, u16>,
    defaults: Vec<Option<Value>>,
}

impl Fields {
    /// Positions fit 16 bits: the definition loader refuses more than `MAX_SETTINGS` fields.
    pub fn of(definition: &AppDefinition) -> Self {
        Fields {
            index: definition
                .settings
                .iter()
                .enumerate()
                .map(|(i, f)| (f.key.clone(), u16::try_from(i).unwrap_or(u16::MAX)))
                .collect(),
            defaults: definition
                .settings
                .iter()
                .map(|f| f.default.clone())
                .collect(),
        }
    }
}

/// Every setting of one account with defaults filled in and secrets opened: what templates draw from. Holds
/// only the account's own values, by field position; a field it has not set reads the shared default.
pub struct ResolvedSettings {
    own: Box<[(u16, Value)]>,
    fields: Arc<Fields>,
    pub version: i64,
    /// Read through an operator's link (`ibex settings link`): `version` is the linked account's, so a save
    /// under this key's own name must drop the entry whatever its version.
    pub linked: bool,
}

impl std::fmt::Debug for ResolvedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&String> = self
            .fields
            .index
            .iter()
            .filter(|(_, i)| self.value_at(**i).is_some())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        f.debug_struct("ResolvedSettings")
            .field("keys", &keys)
            .field("version", &self.version)
            .finish()
    }
}

impl ResolvedSettings {
    /// Fails with the list of required fields that have neither a value nor a default.
    pub fn resolve(
        definition: &AppDefinition,
        fields: &Arc<Fields>,
        stored: &StoredSettings,
    ) -> Result<Self, SettingsError> {
        // A call without a secret it needs would reach the partner unauthenticated: refuse it, naming them.
        let unreadable: Vec<String> = definition
            .settings
            .iter()
            .filter(|f| stored.unreadable.contains(&f.key))
            .map(|f| f.key.clone())
            .collect();
        if !unreadable.is_empty() {
            return Err(SettingsError::Unreadable(unreadable));
        }
        let mut own = Vec::new();
        let mut missing = Vec::new();
        for (i, field) in definition.settings.iter().enumerate() {
            let value = stored.values.get(&field.key).cloned().or_else(|| {
                stored
                    .secrets
                    .get(&field.key)
                    .map(|s| Value::String(s.clone()))
            });
            match value {
                Some(v) => own.push((u16::try_from(i).unwrap_or(u16::MAX), v)),
                None if field.required && field.default.is_none() => {
                    missing.push(field.key.clone())
                }
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(SettingsError::NotConfigured {
                missing,
                stored: true,
            });
        }
        Ok(ResolvedSettings {
            own: own.into_boxed_slice(),
            fields: fields.clone(),
            version: stored.version,
            linked: false,
        })
    }

    fn value_at(&self, index: u16) -> Option<&Value> {
        match self.own.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => Some(&self.own[at].1),
            Err(_) => self.fields.defaults.get(usize::from(index))?.as_ref(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value_at(*self.fields.index.get(key)?)
    }

    /// Bytes this account is reckoned to hold in the settings cache: what the cap in `IBEX_SETTINGS_CACHE_MB`
    /// counts. An estimate (allocator slack and the cache's own bookkeeping are a fixed share per entry), so that
    /// the cap bounds memory whatever the number of accounts and however long their values are.
    pub fn footprint(&self, account_key: &str) -> u32 {
        /// The cache's node and its key's `String`, the `Arc` and this struct, per entry: calibrated so that the
        /// reckoning matches what RSS grew by per cached account in the 100 000-account benchmark (about 450
        /// bytes per account there; docs/benchmarks.md).
        const ENTRY: usize = 320;
        /// One own value: its position and the `Value`.
        const SLOT: usize = 40;
        fn value_bytes(value: &Value) -> usize {
            match value {
                Value::String(s) => s.len(),
                Value::Array(items) => items.iter().map(|v| 32 + value_bytes(v)).sum(),
                Value::Object(map) => map.iter().map(|(k, v)| 64 + k.len() + value_bytes(v)).sum(),
                _ => 0,
            }
        }
        let own: usize = self.own.iter().map(|(_, v)| SLOT + value_bytes(v)).sum();
        u32::try_from(ENTRY + 2 * account_key.len() + own).unwrap_or(u32::MAX)
    }
}

impl Lookup for ResolvedSettings {
    fn lookup(&self, source: &Source) -> Option<&Value> {
        match source {
            Source::Setting(key) => self.get(key),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct SettingsService {
    definition: Arc<AppDefinition>,
    fields: Arc<Fields>,
    store: SettingsStore,
    cache: moka::future::Cache<String, Arc<ResolvedSettings>>,
    /// Counts this instance's saves. A signed call that read an account before a save and fills the cache after
    /// the save dropped the entry would bring the old settings back for a whole TTL; it sees the count moved and
    /// drops its own entry again.
    saves: Arc<std::sync::atomic::AtomicU64>,
    /// Until when (ms since the epoch) the database counts as down: after a failure, cache misses are answered
    /// "unavailable" at once for a second instead of each waiting out the pool's connect deadline.
    down_until: Arc<std::sync::atomic::AtomicI64>,
}

/// How long a database failure makes cache misses fail at once.
const DOWN_FOR_MS: i64 = 1_000;
/// How far back each look at the change log reaches before the previous one began: a save stamped before it
/// committed (or by an instance whose clock is behind) is still seen, and a read that began before a save and
/// filled the cache after the previous look is dropped by the next.
const CHANGE_MARGIN_MS: i64 = 10_000;

impl SettingsService {
    /// `cache_bytes` caps the settings cache by the entries' reckoned size (`ResolvedSettings::footprint`):
    /// with many thousand accounts the least used are dropped and read again on their next call.
    pub fn new(
        definition: Arc<AppDefinition>,
        store: SettingsStore,
        cache_ttl: Duration,
        cache_bytes: u64,
    ) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|key: &String, value: &Arc<ResolvedSettings>| value.footprint(key))
            .time_to_live(cache_ttl)
            .build();
        SettingsService {
            fields: Arc::new(Fields::of(&definition)),
            definition,
            store,
            cache,
            saves: Arc::default(),
            down_until: Arc::default(),
        }
    }

    pub fn store(&self) -> &SettingsStore {
        &self.store
    }

    pub fn definition(&self) -> &AppDefinition {
        &self.definition
    }

    /// The signed path's view of an account. Unknown or incomplete accounts are not cached, so the first call
    /// after an admin saves the configuration already succeeds.
    pub async fn resolved(
        &self,
        account_key: &str,
    ) -> Result<Arc<ResolvedSettings>, SettingsError> {
        if let Some(hit) = self.cache.get(account_key).await {
            return Ok(hit);
        }
        self.read_through(account_key).await
    }

    async fn read_through(
        &self,
        account_key: &str,
    ) -> Result<Arc<ResolvedSettings>, SettingsError> {
        use std::sync::atomic::Ordering;
        if super::store::now_ms() < self.down_until.load(Ordering::Acquire) {
            return Err(StoreError::RecentlyDown.into());
        }
        let saves_before = self.saves_seen();
        let stored = match self.load_following_links(account_key).await {
            Ok(stored) => stored,
            Err(e @ StoreError::Database(_)) => {
                self.down_until
                    .store(super::store::now_ms() + DOWN_FOR_MS, Ordering::Release);
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let stored = stored.ok_or_else(|| SettingsError::NotConfigured {
            stored: false,
            missing: self
                .definition
                .settings
                .iter()
                .filter(|f| f.required && f.default.is_none())
                .map(|f| f.key.clone())
                .collect(),
        })?;
        let mut resolved = ResolvedSettings::resolve(&self.definition, &self.fields, &stored)?;
        resolved.linked = stored.account_key != account_key;
        let resolved = Arc::new(resolved);
        self.fill_cache(account_key, resolved.clone(), saves_before)
            .await;
        Ok(resolved)
    }

    /// The account's settings as the database holds them now, for the configuration page's own actions: an
    /// admin who just saved (here, on another instance or with the CLI) must not be answered from a cache entry
    /// that a signed call or the sync schedule filled a moment before. Refreshes the cache on the way.
    pub async fn current(&self, account_key: &str) -> Result<Arc<ResolvedSettings>, SettingsError> {
        self.read_through(account_key).await
    }

    async fn load_following_links(
        &self,
        account_key: &str,
    ) -> Result<Option<StoredSettings>, StoreError> {
        Ok(match self.store.load(account_key).await? {
            Some(stored) => Some(stored),
            // A link an operator made: signed calls name the account by a key other than the one its settings
            // were saved under. Only looked up when the key itself has no settings.
            None => match self.store.linked(account_key).await? {
                Some(settings_key) => self.store.load(&settings_key).await?,
                None => None,
            },
        })
    }

    /// How many saves this instance has made; `resolved` reads it before going to the database.
    #[doc(hidden)]
    pub fn saves_seen(&self) -> u64 {
        self.saves.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Caches what a read that began at `saves_before` found, unless a save came in between. Checked after the
    /// insert: a save landing between a check and the insert would otherwise still lose its invalidation.
    /// Public for the test that plays that interleaving out step by step.
    #[doc(hidden)]
    pub async fn fill_cache(
        &self,
        account_key: &str,
        resolved: Arc<ResolvedSettings>,
        saves_before: u64,
    ) {
        if self.cache.policy().max_capacity() == Some(0) {
            return;
        }
        self.cache.insert(account_key.to_owned(), resolved).await;
        if self.saves_seen() != saves_before {
            self.cache.invalidate(account_key).await;
        }
    }

    /// Drops the cached accounts saved since `since_ms` (by another instance or the CLI; this instance's own
    /// saves drop them at once) whose cached version is older than the saved one. Returns how many it dropped.
    pub async fn forget_changed(&self, since_ms: i64) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for change in self.store.changed_since(since_ms).await? {
            let key = match &change {
                Change::Saved { key, .. }
                | Change::LinkedSaved { key, .. }
                | Change::Relinked { key } => key,
            };
            if let Some(cached) = self.cache.get(key).await {
                let stale = match &change {
                    // Saved under its own name: an entry read through a link is another account's settings.
                    Change::Saved { version, .. } => cached.linked || cached.version < *version,
                    Change::LinkedSaved { version, .. } => {
                        cached.linked && cached.version < *version
                    }
                    Change::Relinked { .. } => true,
                };
                if stale {
                    self.cache.invalidate(key).await;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// Follows the change log so another instance's save reaches this one's cache within `every`, not only
    /// when the entry's TTL ends: the TTL can then be long, and many thousand accounts stay cached between
    /// their calls instead of each call reading the database.
    pub fn spawn_change_follower(&self, every: Duration) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut since = super::store::now_ms() - CHANGE_MARGIN_MS;
            loop {
                tokio::time::sleep(every).await;
                let started = super::store::now_ms();
                match service.forget_changed(since).await {
                    Ok(_) => since = started - CHANGE_MARGIN_MS,
                    Err(e) => {
                        tracing::warn!("settings changes could not be read (cached accounts expire by their TTL meanwhile): {e}")
                    }
                }
            }
        });
    }

    /// Accounts in the settings cache and the bytes they are reckoned at, once pending evictions are done.
    pub async fn cache_usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    pub async fn load(&self, account_key: &str) -> Result<Option<StoredSettings>, SettingsError> {
        Ok(self.store.load(account_key).await?)
    }

    /// The account's settings as they would be with `changes` applied, validated the same way as a save but
    /// written nowhere: "Test connection" checks the values on screen before the admin commits to them.
    pub async fn preview(
        &self,
        account_key: &str,
        changes: &BTreeMap<String, String>,
    ) -> Result<ResolvedSettings, SettingsError> {
        let mut stored = self
            .store
            .load(account_key)
            .await?
            .unwrap_or_else(|| StoredSettings::empty(account_key));
        let is_set =
            |key: &str| stored.values.contains_key(key) || stored.secrets.contains_key(key);
        let change =
            validate_changes(&self.definition, changes, is_set).map_err(SettingsError::Invalid)?;
        self.keep_secrets_at_their_address(Some(&stored), &change)?;
        stored.apply(&change);
        ResolvedSettings::resolve(&self.definition, &self.fields, &stored)
    }

    /// A stored secret was given for the address the account's settings named then. When a change moves the
    /// partner to another address (a setting of `[partner] base_url` gets a new value), every stored secret
    /// that the change would keep must be typed again; otherwise whoever can edit the URL (an admin, or a
    /// stolen session) could have ibex send the stored API key to a server of their own, by saving or just by
    /// "Test connection". People sync's address (`people_base_url`) holds its own key (`people_api_key`) the
    /// same way.
    fn keep_secrets_at_their_address(
        &self,
        current: Option<&StoredSettings>,
        change: &super::SettingsChange,
    ) -> Result<(), SettingsError> {
        let Some(current) = current.filter(|c| !c.secrets.is_empty() || !c.unreadable.is_empty())
        else {
            return Ok(());
        };
        let moved: Vec<(&str, &str)> = self
            .definition
            .partner
            .destination_settings()
            .iter()
            .filter_map(|key| self.changed_setting(current, change, key))
            .collect();
        let must_be_typed = |key: &String| {
            !matches!(change.secrets.get(key), Some(Some(_)))
                && !moved
                    .iter()
                    .any(|(moved_key, _)| *moved_key == key.as_str())
        };
        // Unreadable ones too: were their key restored later, they would otherwise go to the new address.
        let mut errors: Vec<FieldError> = if moved.is_empty() {
            Vec::new()
        } else {
            current
                .secrets
                .keys()
                .chain(current.unreadable.iter())
                .filter(|key| must_be_typed(key))
                .map(|key| typed_again(key, &moved))
                .collect()
        };
        // People sync sends its own key to the People API's address, an address of its own: the same rule.
        let people_key = sync::PEOPLE_API_KEY.to_owned();
        if let Some(people_moved) = self.changed_setting(current, change, sync::PEOPLE_BASE_URL) {
            let stored = current.secrets.contains_key(&people_key)
                || current.unreadable.contains(&people_key);
            if stored && must_be_typed(&people_key) && !errors.iter().any(|e| e.field == people_key)
            {
                errors.push(typed_again(&people_key, &[people_moved]));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(errors))
        }
    }

    /// `Some((key, label))` if `change` gives the setting `key` another value than `current` holds (defaults
    /// counted: clearing a setting back to its default is a change too).
    fn changed_setting<'d>(
        &'d self,
        current: &StoredSettings,
        change: &super::SettingsChange,
        key: &str,
    ) -> Option<(&'d str, &'d str)> {
        let field = self.definition.setting(key)?;
        // A secret can hold the URL too (credentials and all): its change moves the partner as well.
        let changed = if field.kind == crate::definition::SettingType::Secret {
            let new = change.secrets.get(key)?.as_deref();
            new != current.secrets.get(key).map(String::as_str)
        } else {
            let new = change.values.get(key)?.as_ref().or(field.default.as_ref());
            new != current.values.get(key).or(field.default.as_ref())
        };
        changed.then_some((field.key.as_str(), field.label.as_str()))
    }

    /// Validates raw text changes and saves them; see `SettingsStore::save` for `expected_version`.
    pub async fn update(
        &self,
        account_key: &str,
        expected_version: Option<i64>,
        changes: &BTreeMap<String, String>,
        actor: &str,
    ) -> Result<StoredSettings, SettingsError> {
        let current = self.store.load(account_key).await?;
        let is_set = |key: &str| {
            current
                .as_ref()
                .is_some_and(|c| c.values.contains_key(key) || c.secrets.contains_key(key))
        };
        let change =
            validate_changes(&self.definition, changes, is_set).map_err(SettingsError::Invalid)?;
        self.keep_secrets_at_their_address(current.as_ref(), &change)?;
        // The write must land on exactly the version checked above: a save that slipped in between (a first
        // secret stored, say) would otherwise be overwritten by a change judged against what came before it.
        let checked = current.as_ref().map_or(0, |c| c.version);
        if expected_version.is_some_and(|expected| expected != checked) {
            return Err(StoreError::Conflict { current: checked }.into());
        }
        let saved = self
            .store
            .save(account_key, Some(checked), &change, actor)
            .await;
        self.saves.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.cache.invalidate(account_key).await;
        Ok(saved?)
    }
}

/// The field error for a stored secret that `moved` (settings deciding where it goes: key, label) would send
/// to a new address.
fn typed_again(key: &str, moved: &[(&str, &str)]) -> FieldError {
    let labels: Vec<&str> = moved.iter().map(|(_, label)| *label).collect();
    FieldError {
        field: key.to_owned(),
        message: format!(
            "must be entered again: {} changed, and a stored secret is never sent to a new address",
            labels.join(", ")
        ),
    }
}
