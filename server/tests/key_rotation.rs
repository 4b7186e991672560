//! Encryption keys rotated, on both backends: a secret no configured key opens does not lock the account out
//! (its settings still load, the field asks for the secret again, signed calls say why they cannot go on), and
//! `rewrap` moves every secret to the first key (resumable, with a dry run that changes nothing).

mod common;

use app::settings::crypto::KeyRing;
use app::settings::store::SettingsStore;
use app::settings::{SettingsError, SettingsService};
use common::{Backend, Harness, ACCOUNT, SHOP_KEY};
use std::collections::BTreeMap;
use std::sync::Arc;

fn changes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The same database, seen by an instance whose `IBEX_ENCRYPTION_KEY` is `spec`.
async fn with_keys(h: &Harness, spec: &str) -> SettingsService {
    let keys = Arc::new(KeyRing::parse(spec).unwrap());
    let store = SettingsStore::connect(&h.db.url, keys).await.unwrap();
    SettingsService::new(
        Arc::new(h.state.definition.as_ref().clone()),
        store,
        std::time::Duration::from_millis(1),
        64 << 20,
    )
}

async fn sealed_json(h: &Harness, account: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT secrets_json FROM account_settings WHERE account_key = $1")
        .bind(account)
        .fetch_one(h.state.settings.store().pool())
        .await
        .unwrap()
        .get(0)
}

async fn rotation(backend: Backend) {
    let h = Harness::start(backend).await;
    h.configure(
        "ACCT-2",
        &[("api_base_url", &h.shop), ("api_key", "second")],
    )
    .await;

    // Rotation done right: the new key first, the old one after it. Before rewrapping, both accounts open.
    let new_key = KeyRing::generate_spec("k2");
    let rotated = with_keys(&h, &format!("{new_key},{}", h.encryption_key)).await;
    assert_eq!(
        rotated
            .load(ACCOUNT)
            .await
            .unwrap()
            .unwrap()
            .secrets
            .get("api_key")
            .map(String::as_str),
        Some(SHOP_KEY)
    );

    // A dry run counts and changes nothing.
    let before = sealed_json(&h, ACCOUNT).await;
    let dry = rotated.store().rewrap(true).await.unwrap();
    assert_eq!(
        (dry.accounts, dry.rewrapped, dry.current),
        (2, 2, 0),
        "{dry:?}"
    );
    assert_eq!(sealed_json(&h, ACCOUNT).await, before);

    // Rewrap: both secrets are sealed with k2 now; a second run finds nothing left to do.
    let version = rotated.load(ACCOUNT).await.unwrap().unwrap().version;
    let done = rotated.store().rewrap(false).await.unwrap();
    assert_eq!(
        (done.rewrapped, done.unreadable.len(), done.conflicts),
        (2, 0, 0),
        "{done:?}"
    );
    assert!(sealed_json(&h, ACCOUNT).await.contains("v1:k2:"));
    // A new version: a save that read the account before the rewrap cannot write the old ciphertexts back.
    assert_eq!(
        rotated.load(ACCOUNT).await.unwrap().unwrap().version,
        version + 1
    );
    let late = rotated
        .update(
            ACCOUNT,
            Some(version),
            &changes(&[("note_author", "late")]),
            "admin",
        )
        .await;
    assert!(
        matches!(
            late,
            Err(SettingsError::Store(
                app::settings::store::StoreError::Conflict { .. }
            ))
        ),
        "{late:?}"
    );
    assert!(sealed_json(&h, ACCOUNT).await.contains("v1:k2:"));
    let again = rotated.store().rewrap(false).await.unwrap();
    assert_eq!((again.rewrapped, again.current), (0, 2), "{again:?}");

    // The old key can go: k2 alone opens everything.
    let only_new = with_keys(&h, &new_key).await;
    let settings = only_new.resolved(ACCOUNT).await.unwrap();
    assert_eq!(
        settings.get("api_key").and_then(|v| v.as_str()),
        Some(SHOP_KEY)
    );

    // An instance that lost the key (k2 removed too early): the account still loads, its secret is reported
    // unreadable, calls are refused naming it, and rewrap lists it and leaves it as it is.
    let lost = with_keys(&h, &KeyRing::generate_spec("k3")).await;
    let stored = lost.load(ACCOUNT).await.unwrap().unwrap();
    assert!(stored.secrets.is_empty());
    assert_eq!(
        stored.unreadable.iter().collect::<Vec<_>>(),
        [&"api_key".to_owned()]
    );
    assert_eq!(
        stored.values.get("api_base_url").and_then(|v| v.as_str()),
        Some(h.shop.as_str())
    );
    match lost.resolved(ACCOUNT).await {
        Err(SettingsError::Unreadable(fields)) => assert_eq!(fields, ["api_key"]),
        other => panic!("{other:?}"),
    }
    let report = lost.store().rewrap(false).await.unwrap();
    assert_eq!(report.unreadable.len(), 2, "{report:?}");
    assert_eq!(report.rewrapped, 0);
    assert!(
        sealed_json(&h, ACCOUNT).await.contains("v1:k2:"),
        "left as it was"
    );

    // Saving the page without entering the secret again is refused (it is required), and so is moving the
    // partner elsewhere without it; entering it mends the account.
    let missing = lost
        .update(
            ACCOUNT,
            None,
            &changes(&[("api_base_url", &h.shop)]),
            "admin",
        )
        .await;
    assert!(
        matches!(&missing, Err(SettingsError::Invalid(e)) if e.iter().any(|f| f.field == "api_key")),
        "{missing:?}"
    );
    let moved = lost
        .preview(
            ACCOUNT,
            &changes(&[("api_base_url", "https://elsewhere.example")]),
        )
        .await;
    assert!(
        matches!(&moved, Err(SettingsError::Invalid(e)) if e.iter().any(|f| f.field == "api_key")),
        "{moved:?}"
    );
    lost.update(
        ACCOUNT,
        None,
        &changes(&[("api_key", "typed-again")]),
        "admin",
    )
    .await
    .unwrap();
    let mended = lost.resolved(ACCOUNT).await.unwrap();
    assert_eq!(
        mended.get("api_key").and_then(|v| v.as_str()),
        Some("typed-again")
    );
    h.finish().await;
}

on_both_backends!(encryption_key_rotation, rotation);

/// "Current" means "opens": a secret naming the first key's id but sealed by other material (two bare keys are
/// both `default`) is reported unreadable, not done; a row that is not JSON is reported and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_counts_only_what_opens() {
    let h = Harness::start(Backend::Sqlite).await;
    let bare = |spec: String| spec.split_once(':').map(|(_, key)| key.to_owned()).unwrap();
    let first = with_keys(&h, &bare(KeyRing::generate_spec("x"))).await;
    first
        .update(
            "BARE",
            None,
            &changes(&[("api_base_url", &h.shop), ("api_key", "k")]),
            "admin",
        )
        .await
        .unwrap();
    sqlx::query("INSERT INTO account_settings (account_key, values_json, secrets_json, version, created_at, updated_at, updated_by) VALUES ('BROKEN', '{}', 'not json', 1, 0, 0, 'x')")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    let other_bare = with_keys(&h, &bare(KeyRing::generate_spec("y"))).await;
    let report = other_bare.store().rewrap(false).await.unwrap();
    let mut unreadable: Vec<&str> = report.unreadable.iter().map(|(a, _)| a.as_str()).collect();
    unreadable.sort();
    assert_eq!(unreadable, ["ACCT-1", "BARE", "BROKEN"], "{report:?}");
    assert_eq!(report.current, 0, "{report:?}");
    h.finish().await;
}

/// A signed call for an account whose secret is unreadable gets a precise 409, not a 500 or a partner call
/// without its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_call_names_the_unreadable_secret() {
    let h = Harness::start(Backend::Sqlite).await;
    // Another instance's key sealed this account's secret (as after a key was dropped from this instance).
    let other = with_keys(&h, &KeyRing::generate_spec("elsewhere")).await;
    other
        .update(
            "ACCT-3",
            None,
            &changes(&[("api_base_url", &h.shop), ("api_key", "k")]),
            "admin",
        )
        .await
        .unwrap();
    let (status, body) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            |headers| {
                headers.insert(
                    "x-ib-exchange-req-accountkey",
                    reqwest::header::HeaderValue::from_static("ACCT-3"),
                );
            },
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "secrets_unreadable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api_key"),
        "{body}"
    );
    h.finish().await;
}
