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
            &changes(&[("api_key", "other-key")]),
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
    let err = service.load("ACCT-2").await.unwrap_err();
    assert!(
        matches!(err, SettingsError::Store(StoreError::Crypto(_))),
        "{err:?}"
    );
    h.finish().await;
}

on_both_backends!(settings_storage, storage);
