//! Settings storage on both backends: secrets encrypted at rest and bound to their account, optimistic
//! concurrency, validation that writes nothing, tenant isolation, and the signed path seeing changes at once.

mod common;

use app::settings::store::StoreError;
use app::settings::SettingsError;
use common::{Backend, Harness, ACCOUNT, SHOP_KEY};
use sqlx::Row;
use std::collections::BTreeMap;

fn changes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn raw_row(h: &Harness, account: &str) -> (String, String) {
    let row = sqlx::query(
        "SELECT values_json, secrets_json FROM account_settings WHERE account_key = $1",
    )
    .bind(account)
    .fetch_one(h.state.settings.store().pool())
    .await
    .unwrap();
    (row.get(0), row.get(1))
}

async fn storage(backend: Backend) {
    let h = Harness::start(backend).await;
    let service = &h.state.settings;

    // Encrypted at rest: the database never holds the plaintext secret.
    let (values, secrets) = raw_row(&h, ACCOUNT).await;
    assert!(
        !values.contains(SHOP_KEY) && !secrets.contains(SHOP_KEY),
        "{values} {secrets}"
    );
    assert!(secrets.contains("v1:test1:"), "{secrets}");
    let stored = service.load(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(stored.secrets["api_key"], SHOP_KEY);
    assert!(
        !format!("{stored:?}").contains(SHOP_KEY),
        "Debug must mask secrets"
    );

    // Invalid input: every field named, nothing written.
    let version = stored.version;
    let err = service
        .update(
            ACCOUNT,
            Some(version),
            &changes(&[("currency", "XXX"), ("max_orders", "99")]),
            "admin",
        )
        .await
        .unwrap_err();
    let SettingsError::Invalid(fields) = err else {
        panic!("{err:?}")
    };
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert_eq!(
        service.load(ACCOUNT).await.unwrap().unwrap().version,
        version
    );

    // Two admins editing the same version: the second is refused, the first one's change is kept.
    service
        .update(
            ACCOUNT,
            Some(version),
            &changes(&[("currency", "USD")]),
            "admin-a",
        )
        .await
        .unwrap();
    let err = service
        .update(
            ACCOUNT,
            Some(version),
            &changes(&[("currency", "GBP")]),
            "admin-b",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SettingsError::Store(StoreError::Conflict { current }) if current == version + 1),
        "{err:?}"
    );
    let now = service.load(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(now.values["currency"], "USD");
    assert_eq!(now.updated_by, "admin-a");
    let history = service.store().changes(ACCOUNT, 10).await.unwrap();
    assert_eq!(history[0].changed_by, "admin-a");
    assert_eq!(history[0].changed_fields, vec!["currency".to_string()]);

    // The signed path sees the change at once (cache entry dropped on save).
    let (status, body) = h.get("/fn/order-status/1001").await;
    assert_eq!(
        (status, body["currency"].as_str()),
        (200, Some("USD")),
        "{body}"
    );
    service
        .update(ACCOUNT, None, &changes(&[("currency", "GBP")]), "admin")
        .await
        .unwrap();
    let (_, body) = h.get("/fn/order-status/1001").await;
    assert_eq!(body["currency"], "GBP");

    // Migrations run again on an up-to-date database without complaint.
    service.store().migrate().await.unwrap();

    // Tenant isolation: a sealed secret copied into another account's row does not open there.
    service
        .update(
            "ACCT-2",
            None,
            &changes(&[
                ("api_key", "other-key"),
                ("api_base_url", "https://acct2.example"),
            ]),
            "admin",
        )
        .await
        .unwrap();
    let (_, a_secrets) = raw_row(&h, ACCOUNT).await;
    sqlx::query("UPDATE account_settings SET secrets_json = $1 WHERE account_key = $2")
        .bind(&a_secrets)
        .bind("ACCT-2")
        .execute(service.store().pool())
        .await
        .unwrap();
    // The copy does not open for ACCT-2: its page still loads (asking for the key again), and no call uses it.
    let stored = service.load("ACCT-2").await.unwrap().unwrap();
    assert!(stored.secrets.is_empty(), "{stored:?}");
    assert!(stored.unreadable.contains("api_key"), "{stored:?}");
    let err = service.resolved("ACCT-2").await.unwrap_err();
    assert!(
        matches!(&err, SettingsError::Unreadable(fields) if fields == &["api_key"]),
        "{err:?}"
    );
    h.finish().await;
}

on_both_backends!(settings_storage, storage);

/// A definition whose whole partner URL is a secret (credentials in it): changing that secret moves the
/// partner too, so the other stored secrets must be typed again, and the URL itself is not asked for twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_url_moves_the_partner_too() {
    use app::definition::AppDefinition;
    use app::settings::crypto::KeyRing;
    use app::settings::store::SettingsStore;
    use app::settings::SettingsService;
    use std::sync::Arc;
    let definition = AppDefinition::from_toml(
        r#"
[app]
name = "Secret URL"
[[settings]]
key = "api_url"
label = "API URL with credentials"
type = "secret"
required = true
[[settings]]
key = "api_key"
label = "API key"
type = "secret"
required = true
[partner]
base_url = "{{settings.api_url}}"
auth = { type = "header", name = "X-Key", value = "{{settings.api_key}}" }
"#,
    )
    .unwrap();
    let db = common::TestDb::new(Backend::Sqlite).await;
    let keys = Arc::new(KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap());
    let store = SettingsStore::connect(&db.url, keys).await.unwrap();
    store.migrate().await.unwrap();
    let service = SettingsService::new(
        Arc::new(definition),
        store.clone(),
        std::time::Duration::from_secs(5),
        64 << 20,
    );
    let first = changes(&[("api_url", "https://u:p@shop.example"), ("api_key", "k")]);
    service.update("A", None, &first, "admin").await.unwrap();

    let moved = changes(&[("api_url", "https://u:p@elsewhere.example")]);
    for result in [
        service.preview("A", &moved).await.map(|_| ()),
        service.update("A", None, &moved, "admin").await.map(|_| ()),
    ] {
        let Err(SettingsError::Invalid(errors)) = result else {
            panic!("{result:?}")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["api_key"], "{errors:?}");
        assert!(errors[0]
            .message
            .contains("API URL with credentials changed"));
    }
    // The same URL again moves nothing; a new one with the key typed again is the admin's choice.
    let same = changes(&[("api_url", "https://u:p@shop.example")]);
    service.update("A", None, &same, "admin").await.unwrap();
    let both = changes(&[
        ("api_url", "https://u:p@elsewhere.example"),
        ("api_key", "k2"),
    ]);
    let saved = service.update("A", None, &both, "admin").await.unwrap();
    assert_eq!(saved.secrets["api_key"], "k2");
    store.close().await;
    db.drop_db().await;
}

/// Signed calls name an account by X-Ib-Exchange-Req-AccountKey, the configuration page by the OAuth
/// accountKey. Should Infobip's two differ, an operator links them and the signed calls find the settings.
async fn linked_account_keys(backend: Backend) {
    let h = Harness::start(backend).await;
    let signed_key = "SIGNED-KEY-OF-ACCT-1";
    let call = |key: &'static str| {
        h.send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            move |m| {
                let ts = m["x-ib-exchange-req-timestamp"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                m.insert("x-ib-exchange-req-accountkey", key.parse().unwrap());
                m.insert(
                    "x-ib-exchange-req-signature",
                    ibex::signed::signature::sign(common::SECRET, &ts, b"")
                        .parse()
                        .unwrap(),
                );
            },
        )
    };
    let (status, body) = call(signed_key).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("account_not_configured")),
        "{body}"
    );
    // The log line of that call says what to do (the answer itself is for the bot designer).
    let hint = SettingsError::NotConfigured {
        missing: vec![],
        stored: false,
    }
    .to_string();
    assert!(hint.contains("ibex settings link"), "{hint}");

    h.state
        .settings
        .store()
        .link(signed_key, ACCOUNT, "op")
        .await
        .unwrap();
    let (status, body) = call(signed_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "shipped");
    assert_eq!(
        h.state
            .settings
            .store()
            .linked(signed_key)
            .await
            .unwrap()
            .as_deref(),
        Some(ACCOUNT)
    );
    assert!(h.state.settings.store().unlink(signed_key).await.unwrap());
    assert_eq!(
        h.state.settings.store().linked(signed_key).await.unwrap(),
        None
    );
    h.finish().await;
}

on_both_backends!(account_key_links, linked_account_keys);

/// Concurrent saves of one version: one wins, every other one is a conflict the page can explain (reload and
/// apply again), never a generic "could not save". On SQLite this needs the save's transaction begun IMMEDIATE.
async fn concurrent_saves(backend: Backend) {
    let h = Harness::start(backend).await;
    let service = h.state.settings.clone();
    // Several rounds of 16 saves of the same version at once: the race between reading the version and
    // writing it has to be hit, not hoped for.
    for round in 0..5 {
        let version = service.load(ACCOUNT).await.unwrap().unwrap().version;
        let mut saves = Vec::new();
        for i in 0..16 {
            let service = service.clone();
            saves.push(tokio::spawn(async move {
                let author = format!("author {round}-{i}");
                service
                    .update(
                        ACCOUNT,
                        Some(version),
                        &changes(&[("note_author", author.as_str())]),
                        "admin",
                    )
                    .await
            }));
        }
        let (mut won, mut conflicts) = (0, 0);
        for save in saves {
            match save.await.unwrap() {
                Ok(_) => won += 1,
                Err(SettingsError::Store(StoreError::Conflict { .. })) => conflicts += 1,
                Err(other) => panic!("a concurrent save failed otherwise: {other:?}"),
            }
        }
        assert_eq!((won, conflicts), (1, 15), "round {round}");
    }
    h.finish().await;
}

on_both_backends!(settings_concurrent_saves, concurrent_saves);

/// A signed call that read an account just before a save, and fills the cache only after the save dropped the
/// entry, must not bring the old settings back for a whole TTL. The interleaving is played out step by step.
async fn cache_after_concurrent_save(backend: Backend) {
    let h = Harness::start(backend).await;
    let service = h.state.settings.clone();
    let read_before_save = service.resolved(ACCOUNT).await.unwrap();
    let saves_before = service.saves_seen();
    service
        .update(
            ACCOUNT,
            None,
            &changes(&[("note_author", "after the save")]),
            "admin",
        )
        .await
        .unwrap();
    // The late fill of the read that began before the save.
    service
        .fill_cache(ACCOUNT, read_before_save, saves_before)
        .await;
    let now = service.resolved(ACCOUNT).await.unwrap();
    assert_eq!(
        now.get("note_author").and_then(|v| v.as_str()),
        Some("after the save"),
        "a stale entry outlived the save"
    );
    h.finish().await;
}

on_both_backends!(
    settings_cache_after_concurrent_save,
    cache_after_concurrent_save
);

/// The settings cache holds what its byte cap allows, however many accounts call: 300 accounts through a cache
/// capped at 64 KiB keep it at or under the cap, the accounts dropped are read again and answer the same, and a
/// cap of 0 caches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_cache_is_capped_by_bytes() {
    use app::settings::SettingsService;
    use std::sync::Arc;
    let h = Harness::start(Backend::Sqlite).await;
    let accounts: Vec<String> = (0..300).map(|i| format!("ACCOUNT-{i:04}")).collect();
    for account in &accounts {
        h.configure(
            account,
            &[
                ("api_key", SHOP_KEY),
                ("api_base_url", h.shop.as_str()),
                ("note_author", account),
            ],
        )
        .await;
    }
    let definition = Arc::new(h.state.definition.as_ref().clone());
    let capped = SettingsService::new(
        definition.clone(),
        h.state.settings.store().clone(),
        std::time::Duration::from_secs(60),
        64 * 1024,
    );
    for _ in 0..2 {
        for account in &accounts {
            let resolved = capped.resolved(account).await.unwrap();
            assert_eq!(
                resolved.get("note_author").and_then(|v| v.as_str()),
                Some(account.as_str())
            );
        }
    }
    let one = capped
        .resolved(&accounts[0])
        .await
        .unwrap()
        .footprint(&accounts[0]) as u64;
    let (entries, bytes) = capped.cache_usage().await;
    assert!(bytes <= 64 * 1024, "{bytes} bytes cached over a 64 KiB cap");
    assert!(entries < 300, "all {entries} accounts cached under the cap");
    assert!(
        entries * one >= 32 * 1024,
        "the cap is used: {entries} entries of {one} bytes"
    );

    let off = SettingsService::new(
        definition,
        h.state.settings.store().clone(),
        std::time::Duration::from_secs(60),
        0,
    );
    for account in &accounts[..20] {
        off.resolved(account).await.unwrap();
    }
    assert_eq!(off.cache_usage().await, (0, 0));
    h.finish().await;
}

/// A second account with settings of its own ("other" as its note author).
async fn configure_other(h: &Harness) {
    h.configure(
        "OTHER",
        &[
            ("api_key", SHOP_KEY),
            ("api_base_url", h.shop.as_str()),
            ("note_author", "other"),
        ],
    )
    .await;
}

/// A second instance on the same database, with the long TTL that makes following the change log matter.
fn another_instance(h: &Harness) -> app::settings::SettingsService {
    app::settings::SettingsService::new(
        std::sync::Arc::new(h.state.definition.as_ref().clone()),
        h.state.settings.store().clone(),
        std::time::Duration::from_secs(300),
        64 << 20,
    )
}

fn author(settings: &app::settings::ResolvedSettings) -> Option<String> {
    settings
        .get("note_author")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// Another instance's save (or the CLI's) drops this instance's cached entry when it reads the change log: the
/// account itself and a signed key linked to it, while an account saved before the look stays cached.
async fn change_log_drops_stale_entries(backend: Backend) {
    let h = Harness::start(backend).await;
    configure_other(&h).await;
    h.state
        .settings
        .store()
        .link("SIGNED-KEY", ACCOUNT, "operator")
        .await
        .unwrap();
    let here = another_instance(&h);
    for key in [ACCOUNT, "SIGNED-KEY", "OTHER"] {
        here.resolved(key).await.unwrap();
    }
    let since = app::settings::store::now_ms();
    // Saved elsewhere: `h.state.settings` is the other instance.
    h.configure(ACCOUNT, &[("note_author", "saved elsewhere")])
        .await;
    assert_ne!(
        author(&here.resolved(ACCOUNT).await.unwrap()).as_deref(),
        Some("saved elsewhere"),
        "the cache is not in the way: this test would prove nothing"
    );
    assert_eq!(here.forget_changed(since).await.unwrap(), 2);
    for key in [ACCOUNT, "SIGNED-KEY"] {
        assert_eq!(
            author(&here.resolved(key).await.unwrap()).as_deref(),
            Some("saved elsewhere"),
            "{key}"
        );
    }
    assert_eq!(
        author(&here.resolved("OTHER").await.unwrap()).as_deref(),
        Some("other")
    );
    // Looked at again (the margin reaches back over the same save): nothing more to drop.
    assert_eq!(here.forget_changed(since).await.unwrap(), 0);
    h.finish().await;
}

on_both_backends!(settings_change_log, change_log_drops_stale_entries);

/// `ibex settings link` and `unlink` save no settings, yet change what a signed key resolves to: another
/// instance must drop that key's entry at its next look, not after the cache's TTL. So must a save under the
/// key's own name while its entry holds the linked account's settings (whose version may well be higher).
async fn link_changes_reach_other_caches(backend: Backend) {
    let h = Harness::start(backend).await;
    h.configure(ACCOUNT, &[("note_author", "first")]).await;
    configure_other(&h).await;
    // The first account is at version 2, above what a first save of SIGNED-KEY itself will be.
    h.configure(ACCOUNT, &[("note_author", "first, again")])
        .await;
    let store = h.state.settings.store().clone();
    store.link("SIGNED-KEY", ACCOUNT, "operator").await.unwrap();
    let here = another_instance(&h);
    let cached = here.resolved("SIGNED-KEY").await.unwrap();
    assert_eq!(author(&cached).as_deref(), Some("first, again"));

    // Linked elsewhere to another account.
    let since = app::settings::store::now_ms();
    store.link("SIGNED-KEY", "OTHER", "operator").await.unwrap();
    assert_eq!(here.forget_changed(since).await.unwrap(), 1, "re-link");
    assert_eq!(
        author(&here.resolved("SIGNED-KEY").await.unwrap()).as_deref(),
        Some("other")
    );

    // Unlinked elsewhere: the key has no settings of its own.
    let since = app::settings::store::now_ms();
    assert!(store.unlink("SIGNED-KEY").await.unwrap());
    assert_eq!(here.forget_changed(since).await.unwrap(), 1, "unlink");
    assert!(matches!(
        here.resolved("SIGNED-KEY").await,
        Err(app::settings::SettingsError::NotConfigured { stored: false, .. })
    ));

    // Linked again, cached, then saved under its own name (version 1, below the linked account's 2).
    store.link("SIGNED-KEY", ACCOUNT, "operator").await.unwrap();
    here.resolved("SIGNED-KEY").await.unwrap();
    let since = app::settings::store::now_ms();
    h.configure(
        "SIGNED-KEY",
        &[
            ("api_key", SHOP_KEY),
            ("api_base_url", h.shop.as_str()),
            ("note_author", "its own"),
        ],
    )
    .await;
    assert!(here.forget_changed(since).await.unwrap() >= 1, "own save");
    assert_eq!(
        author(&here.resolved("SIGNED-KEY").await.unwrap()).as_deref(),
        Some("its own")
    );
    h.finish().await;
}

on_both_backends!(settings_link_changes, link_changes_reach_other_caches);
