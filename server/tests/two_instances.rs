//! Two ibex instances on one PostgreSQL database, as a production deployment runs them: concurrent saves of the
//! same version end in one winner and one conflict; a save on one instance reaches the other's cache through the
//! change log it reads (every 200 ms here, with a 300 s cache TTL); a configuration page session made by one is
//! accepted by the other.

mod common;

use clap::Parser;
use common::{client, follow, Backend, Harness, ACCOUNT};
use ibex::cli::config::Cli;
use ibex::state::AppState;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn changes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_saves_caches_and_sessions() {
    let h = Harness::start_with(
        Backend::Postgres,
        &[
            "--allow-loopback-partners",
            "--settings-cache-ttl-secs",
            "300",
        ],
    )
    .await;
    let a = h.state.clone();
    let b = AppState::build(&Cli::try_parse_from(h.args.clone()).unwrap().options)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_b = format!("http://{}", listener.local_addr().unwrap());
    // As `ibex serve` does: B follows the change log (every 200 ms here).
    b.settings.spawn_change_follower(Duration::from_millis(200));
    let router_b = ibex::routes::router(b.clone());
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(router_b))
            .await
            .unwrap()
    });

    // Concurrent saves of one version, one per instance: one wins, the other is told it conflicts.
    let version = a.settings.load(ACCOUNT).await.unwrap().unwrap().version;
    let (from_a, from_b) = (
        changes(&[("note_author", "A")]),
        changes(&[("note_author", "B")]),
    );
    let (first, second) = tokio::join!(
        a.settings
            .update(ACCOUNT, Some(version), &from_a, "admin a"),
        b.settings
            .update(ACCOUNT, Some(version), &from_b, "admin b"),
    );
    let conflicts = [&first, &second]
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(app::settings::SettingsError::Store(
                    app::settings::store::StoreError::Conflict { .. }
                ))
            )
        })
        .count();
    assert_eq!(
        (first.is_ok() as usize + second.is_ok() as usize, conflicts),
        (1, 1),
        "{first:?} {second:?}"
    );

    // A save on A reaches B's signed path long before B's cache TTL ends: B reads the change log.
    let _ = b.settings.resolved(ACCOUNT).await.unwrap();
    a.settings
        .update(
            ACCOUNT,
            None,
            &changes(&[("note_author", "saved on A")]),
            "admin a",
        )
        .await
        .unwrap();
    let saved = Instant::now();
    loop {
        let seen = b.settings.resolved(ACCOUNT).await.unwrap();
        if seen.get("note_author").and_then(|v| v.as_str()) == Some("saved on A") {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_millis(1_500),
            "B still had the old settings 1.5 s after the save (it reads the change log every 200 ms)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A configuration page session made on A works on B.
    let ana = &ibex_sim::exchange::USERS[0];
    let (page, trail) = follow(&h, &format!("{}/settings", h.ibex), Some(ana.user_key)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    let session = url::Url::parse(trail.last().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "session")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let on_b = client()
        .get(format!("{base_b}/settings"))
        .query(&[("session", session.as_str())])
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.status(), 200);
    let html = on_b.text().await.unwrap();
    assert!(
        html.contains(ana.username),
        "B did not show A's signed-in user"
    );
    h.finish().await;
}
