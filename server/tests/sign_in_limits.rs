//! Sign-in starts against the real binary: each records a row in the settings database and needs no sign-in,
//! so they are limited per instance, and a second start under a `state` already under way records nothing.

mod common;

use common::binary::spawn_ibex;
use common::{client, Backend, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_starts_are_bounded_and_a_state_is_recorded_once() {
    let h = Harness::start(Backend::Sqlite).await;
    let (mut ibex, base, _, definition) =
        spawn_ibex(&h, &["--sign-in-starts-per-sec", "1"], "2").await;

    // A state under way is not replaced by a second start under it (whoever learnt it could swap in their own
    // verifier or page).
    let start = |query: &str| client().get(format!("{base}/oauth/start?{query}")).send();
    // A launch starts at the page Infobip opened with it.
    let launch = || {
        client()
            .get(format!("{base}/settings?state=launch-under-way"))
            .header("sec-fetch-dest", "iframe")
            .send()
    };
    let first = launch().await.unwrap();
    assert_eq!(first.status(), 303, "{:?}", first.headers());
    let second = launch().await.unwrap();
    assert_eq!(second.status(), 409);
    assert!(second.text().await.unwrap().contains("already under way"));

    // One a second, in bursts of ten: the two above and eight more pass, then the rest are refused at once.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(start("next=/settings").await.unwrap().status().as_u16());
    }
    let passed = statuses.iter().filter(|s| **s == 303).count();
    assert!((8..=9).contains(&passed), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");

    let _ = ibex.kill();
    let _ = ibex.wait();
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}

/// A state's row gives way only once it has expired, on both backends: an unfinished sign-in does not block its
/// `state` for ever (rows are swept every 5 minutes, not at each start), and a live one cannot be swapped.
async fn a_flow_row_gives_way_only_when_expired(backend: Backend) {
    use app::auth::OAuthState;
    use ibex::signin::flows;
    let h = Harness::start(backend).await;
    let (store, keys) = (h.state.settings.store(), &h.state.keys);
    let flow = |next: &str, expires_at: i64| OAuthState {
        verifier: "v".repeat(43),
        next: next.into(),
        conversation: None,
        attempt: 1,
        expires_at,
    };
    let now = app::settings::store::now_ms();
    assert!(
        flows::put(store, keys, "s-1", &flow("/settings", now + 1_000), now)
            .await
            .unwrap()
    );
    // Still live: a second start under it records nothing.
    assert!(
        !flows::put(store, keys, "s-1", &flow("/card", now + 60_000), now)
            .await
            .unwrap()
    );
    // Past its expiry: the new start takes its place, and the callback gets the new one.
    let later = now + 2_000;
    assert!(
        flows::put(store, keys, "s-1", &flow("/card", later + 60_000), later)
            .await
            .unwrap()
    );
    let taken = flows::take(store, keys, "s-1", later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.next, "/card");
    h.finish().await;
}

on_both_backends!(flow_rows, a_flow_row_gives_way_only_when_expired);
