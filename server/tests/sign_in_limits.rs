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
    let first = start("next=/settings&state=launch-under-way")
        .await
        .unwrap();
    assert_eq!(first.status(), 303, "{:?}", first.headers());
    let second = start("next=/settings&state=launch-under-way")
        .await
        .unwrap();
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
