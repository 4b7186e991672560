//! A sync run is bounded whatever the partner sends (issue 27, item 3), on both settings backends: a cap on pages
//! and on run time, a cursor that comes back ends the run, failed records are kept up to a cap and each cut to
//! 4 KiB, the page lists a bounded number of them, "Retry failed" reads them in chunks, and a panic inside one
//! account's run fails that run while the worker goes on with the next account.

mod common;

use app::pages::sync_panel::SyncSource;
use common::{client, Backend, Harness, ACCOUNT, SHOP_KEY};
use ibex::sync::engine::{Outcome, SyncEngine};
use ibex::sync::runs::{Run, TO_PEOPLE};
use ibex::sync::SyncConfig;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// The seeded three plus 247 generated: 250 records, three pages of 100; four of them fail the mapping.
const GENERATED: usize = 247;

fn config() -> SyncConfig {
    SyncConfig {
        reads_per_sec: 1000,
        writes_per_sec: 1000,
        creates_per_sec: 1000,
        batch_size: 1000,
        hosts: vec![],
        allow_loopback: true,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(50),
        pause: Duration::ZERO,
        worker: false,
        max_pages: SyncConfig::MAX_PAGES,
        max_run: SyncConfig::MAX_RUN,
        failures_kept: SyncConfig::FAILURES_KEPT,
        max_page_records: SyncConfig::MAX_PAGE_RECORDS,
        delete_max_percent: SyncConfig::DELETE_MAX_PERCENT,
    }
}

/// The simulator's People for `account`, its documented limits lifted.
async fn people_on(h: &Harness, account: &str) {
    let r = client()
        .post(format!("{}/_sim/people", h.portal))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 0}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    h.configure(
        account,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
}

/// Claims and works the next due run, within `limit` (a run that never ends fails the test instead of hanging it).
async fn next_run(engine: &SyncEngine, h: &Harness, limit: Duration) -> (Run, Outcome) {
    let work = async {
        for _ in 0..100 {
            if let Some(done) = engine.work_once(&h.state).await.unwrap() {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no run came due");
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("the run did not end within {limit:?}"))
}

async fn stored_failures(h: &Harness, run: i64) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM sync_failures WHERE run_id = $1")
        .bind(run)
        .fetch_one(h.state.settings.store().pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

fn failed_with(outcome: &Outcome, words: &[&str]) -> bool {
    matches!(outcome, Outcome::Failed(reason) if words.iter().all(|w| reason.contains(w)))
}

/// A partner that never ends its list ends the run at the page cap, as failed with the reason; the pages read
/// before it are committed, and the checkpoint is where the next page would have been.
async fn page_cap(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], GENERATED).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_pages: 2,
            ..config()
        },
    );
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert!(
        failed_with(&outcome, &["2 pages", "IBEX_SYNC_MAX_PAGES"]),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert!(
        run.last_error
            .as_deref()
            .is_some_and(|e| e.contains("2 pages")),
        "{run:?}"
    );
    assert_eq!(run.counts.read, 200, "two pages committed: {run:?}");
    assert_eq!(run.checkpoint.page, Some(3), "{run:?}");
    h.finish().await;
}

on_both_backends!(sync_bounds_page_cap, page_cap);

/// A run that goes on past its time (here one second against a slow partner) ends as failed with the reason.
async fn run_time_cap(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 3000).await;
    people_on(&h, ACCOUNT).await;
    h.shop_faults(json!({"delay_ms": 300})).await;
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_run: Duration::from_secs(1),
            ..config()
        },
    );
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(60)).await;
    h.shop_faults(json!({})).await;
    assert!(
        failed_with(&outcome, &["longer than", "IBEX_SYNC_MAX_RUN_SECS"]),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert!(run.counts.read < 3003, "{run:?}");
    h.finish().await;
}

on_both_backends!(sync_bounds_run_time_cap, run_time_cap);

/// The test definition with `[sync.to_people]` reading `/by-cursor` by cursor (`after` in, `next` out).
fn cursor_definition() -> String {
    let base = common::test_definition();
    assert!(base
        .contains("function = \"list-customers\"\noutput = \"customers\"\npage_input = \"page\""));
    let base = base.replace(
        "function = \"list-customers\"\noutput = \"customers\"\npage_input = \"page\"",
        "function = \"list-by-cursor\"\noutput = \"customers\"\ncursor_input = \"after\"\ncursor_output = \"next\"",
    );
    format!(
        "{base}\n
[[functions]]
name = \"list-by-cursor\"
products = [\"flow\"]
method = \"GET\"
[[functions.inputs]]
name = \"after\"
in = \"query\"
[functions.request]
method = \"GET\"
path = \"/by-cursor\"
query = {{ after = \"{{{{inputs.after}}}}\" }}
[[functions.outputs]]
name = \"customers\"
type = \"array\"
path = \"$.customers[*]\"
[[functions.outputs.items]]
name = \"id\"
pointer = \"/id\"
[[functions.outputs.items]]
name = \"name\"
pointer = \"/name\"
[[functions.outputs.items]]
name = \"email\"
pointer = \"/email\"
required = false
[[functions.outputs.items]]
name = \"phone\"
pointer = \"/phone\"
required = false
[[functions.outputs.items]]
name = \"tier\"
pointer = \"/tier\"
required = false
[[functions.outputs]]
name = \"next\"
pointer = \"/next\"
required = false
[[functions.outputs]]
name = \"total\"
type = \"integer\"
pointer = \"/total\"
required = false
"
    )
}

/// A partner whose cursors go A, B, A, B …: two new customers on every page, and never an end.
async fn looping_partner() -> String {
    let app = axum::Router::new().route(
        "/by-cursor",
        axum::routing::get(
            |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| async move {
                let after = q.get("after").map(String::as_str).unwrap_or_default();
                let (page, next) = match after {
                    "" => (1, "A"),
                    "A" => (2, "B"),
                    _ => (3, "A"),
                };
                let customers: Vec<Value> = (1..=2)
                    .map(|i| {
                        json!({"id": format!("k-{page}-{i}"), "name": "Kim Loop",
                               "email": format!("kim{page}{i}@example.com")})
                    })
                    .collect();
                axum::Json(json!({"customers": customers, "next": next}))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A cursor the partner gave before in this run ends it as failed, naming the cursor and the page; what was read
/// before the loop is written and counted.
async fn cursor_cycle(backend: Backend) {
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        0,
        |url| url.to_owned(),
        &cursor_definition(),
    )
    .await;
    // A new partner address takes its key again (a stored secret is never sent to a new address).
    let partner = looping_partner().await;
    h.configure(
        ACCOUNT,
        &[("api_base_url", partner.as_str()), ("api_key", SHOP_KEY)],
    )
    .await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(&h.state, config());
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(20)).await;
    assert!(
        failed_with(
            &outcome,
            &["the partner returned cursor A again (page 3)", "loop"]
        ),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert_eq!(
        (run.counts.read, run.counts.created),
        (6, 6),
        "three pages read before the loop: {run:?}"
    );
    h.finish().await;
}

on_both_backends!(sync_bounds_cursor_cycle, cursor_cycle);

/// Past `failures_kept` a run stops storing failed records, and counts them still.
async fn failures_kept(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], GENERATED).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            failures_kept: 2,
            ..config()
        },
    );
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!((run.counts.read, run.counts.failed), (250, 4), "{run:?}");
    assert_eq!(stored_failures(&h, id).await, 2, "two kept, four counted");
    h.finish().await;
}

on_both_backends!(sync_bounds_failures_kept, failures_kept);

/// A failed record is stored cut to 4 KiB (at a character boundary), the page says so, and "Retry failed" says
/// why it cannot send that one as it was.
async fn record_truncated(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    // Two-byte letters, so a cut at 4096 bytes lands inside one unless it looks for the boundary.
    let long_name = format!("A{}", "Ž".repeat(3000));
    let r = client()
        .patch(format!("{}/customers/c-101", h.shop))
        .header("x-api-key", SHOP_KEY)
        .json(&json!({"name": long_name, "phone": "n/a"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let engine = SyncEngine::new(&h.state, config());
    let panel = ibex::sync::panel::ServerSync {
        state: h.state.clone(),
        runs: engine.runs.clone(),
        config: config(),
    };
    let first = panel.start(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let record: String =
        sqlx::query("SELECT record FROM sync_failures WHERE run_id = $1 AND record_key = 'c-101'")
            .bind(first)
            .fetch_one(h.state.settings.store().pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
    assert!(
        record.len() <= 4096 && record.len() > 4000,
        "stored {} bytes",
        record.len()
    );
    let status = panel.status(ACCOUNT).await.unwrap();
    let (_, reason) = status
        .failures
        .iter()
        .find(|(key, _)| key == "c-101")
        .unwrap();
    assert!(reason.contains("record cut to 4 KiB"), "{reason}");

    let retry = panel.retry(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let failures = engine.runs.failures(retry).await.unwrap();
    let cut = failures.iter().find(|f| f.record_key == "c-101").unwrap();
    assert!(
        cut.reason.contains("cut to 4 KiB") && cut.reason.contains("next full run"),
        "{failures:?}"
    );
    h.finish().await;
}

on_both_backends!(sync_bounds_record_truncated, record_truncated);

/// The page lists a bounded number of the last run's failed records, and "Retry failed" sends them in chunks
/// (one People upsert per chunk of 100), not all at once.
async fn failure_list_and_retry_chunks(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(&h.state, config());
    let panel = ibex::sync::panel::ServerSync {
        state: h.state.clone(),
        runs: engine.runs.clone(),
        config: config(),
    };
    let first = panel.start(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    // 250 more failed records of that run, as an earlier People outage of one record at a time would leave.
    let pool = h.state.settings.store().pool();
    for n in 0..250 {
        let record = json!({"id": format!("r-{n:03}"), "name": "Rita Retry", "email": format!("r{n}@example.com")});
        sqlx::query(
            "INSERT INTO sync_failures (run_id, account_key, record_key, reason, record, failed_at) \
             VALUES ($1, $2, $3, 'People was away', $4, 0)",
        )
        .bind(first)
        .bind(ACCOUNT)
        .bind(format!("r-{n:03}"))
        .bind(record.to_string())
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE sync_runs SET failed_count = failed_count + 250 WHERE id = $1")
        .bind(first)
        .execute(pool)
        .await
        .unwrap();
    let status = panel.status(ACCOUNT).await.unwrap();
    assert_eq!(status.failures.len(), 50, "the page lists the first 50");
    assert_eq!(status.runs[0].failed, 251);

    let upserts = |state: &Value| {
        state["stats"]["requests"]["PATCH /people/3/persons/upsert"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = upserts(&common::people_state(&h).await);
    let retry = panel.retry(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let run = engine.runs.get(retry).await.unwrap().unwrap();
    assert_eq!(
        (run.counts.read, run.counts.created, run.counts.failed),
        (251, 250, 1),
        "{run:?}"
    );
    assert_eq!(
        upserts(&common::people_state(&h).await) - before,
        3,
        "251 records in chunks of 100"
    );
    h.finish().await;
}

on_both_backends!(
    sync_bounds_failure_list_and_retry_chunks,
    failure_list_and_retry_chunks
);

/// Partner data that reaches a panic fails that account's run with the panic's message; the worker goes on and
/// the next account's run is done.
async fn panic_fails_one_run(backend: Backend) {
    const OTHER: &str = "ACCT-2";
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    h.configure(
        OTHER,
        &[("api_base_url", &h.shop.clone()), ("api_key", SHOP_KEY)],
    )
    .await;
    people_on(&h, OTHER).await;
    let mut engine = SyncEngine::new(&h.state, config());
    engine.record_hook = Some(Arc::new(|account: &str, _record: &Value| {
        if account == ACCOUNT {
            panic!("a parser met partner data it did not expect");
        }
    }));
    let broken = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let fine = engine.runs.enqueue(OTHER, TO_PEOPLE, "t").await.unwrap();
    let (run, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(run.id, broken);
    assert!(
        failed_with(&outcome, &["a parser met partner data it did not expect"]),
        "{outcome:?}"
    );
    let (run, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!((run.id, outcome), (fine, Outcome::Done));
    let broken = engine.runs.get(broken).await.unwrap().unwrap();
    assert_eq!(broken.status, "failed");
    assert!(
        broken
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("did not expect")),
        "{broken:?}"
    );
    assert_eq!(engine.runs.get(fine).await.unwrap().unwrap().status, "done");
    h.finish().await;
}

on_both_backends!(sync_bounds_panic_fails_one_run, panic_fails_one_run);

/// Stored failures are kept for the account's newest runs only: a schedule every minute whose every run fails
/// its records must not fill the database run after run.
async fn old_failures_pruned(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(&h.state, config());
    let kept = ibex::sync::runs::FAILED_RUNS_KEPT;
    let mut ids = Vec::new();
    for _ in 0..kept + 2 {
        ids.push(engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap());
        let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
        assert_eq!(outcome, Outcome::Done);
    }
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM sync_failures WHERE account_key = $1")
        .bind(ACCOUNT)
        .fetch_one(h.state.settings.store().pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    // Each run fails one record (c-102's reserved number).
    assert_eq!(total, kept as i64, "the newest {kept} runs' failures");
    assert_eq!(stored_failures(&h, ids[0]).await, 0);
    assert_eq!(stored_failures(&h, *ids.last().unwrap()).await, 1);
    let run = engine.runs.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(run.counts.failed, 1, "the count stays with the run");
    h.finish().await;
}

on_both_backends!(sync_bounds_old_failures_pruned, old_failures_pruned);

/// A partner at `/by-cursor` whose answer to each cursor (`""` for the first page) is `answer`'s: a status and a
/// body.
async fn partner_answering(answer: fn(&str) -> (u16, Value)) -> String {
    let app = axum::Router::new().route(
        "/by-cursor",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| async move {
                let (status, body) = answer(q.get("after").map(String::as_str).unwrap_or_default());
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(body),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The harness with the cursor definition, its account's partner at `partner` and People on.
async fn with_partner(backend: Backend, answer: fn(&str) -> (u16, Value)) -> Harness {
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        0,
        |url| url.to_owned(),
        &cursor_definition(),
    )
    .await;
    let partner = partner_answering(answer).await;
    h.configure(
        ACCOUNT,
        &[("api_base_url", partner.as_str()), ("api_key", SHOP_KEY)],
    )
    .await;
    people_on(&h, ACCOUNT).await;
    h
}

fn two_customers() -> Value {
    json!([
        {"id": "k-1", "name": "Kim One", "email": "kim1@example.com"},
        {"id": "k-2", "name": "Kim Two", "email": "kim2@example.com"},
    ])
}

async fn stored_checkpoint(h: &Harness, run: i64) -> String {
    sqlx::query("SELECT checkpoint FROM sync_runs WHERE id = $1")
        .bind(run)
        .fetch_one(h.state.settings.store().pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// A next cursor longer than 2 KiB ends the run as failed with the reason, after the page that gave it is
/// written; the cursor is not stored (a hostile partner's 4 MiB cursor would otherwise stay in `sync_runs`).
async fn cursor_too_long(backend: Backend) {
    let h = with_partner(backend, |after| match after {
        "" => (
            200,
            json!({"customers": two_customers(), "next": "x".repeat(3000)}),
        ),
        _ => (400, json!({"error": "no such cursor"})),
    })
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(20)).await;
    assert!(
        failed_with(&outcome, &["cursor", "3000 bytes", "2 KiB"]),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert_eq!(
        (run.counts.read, run.counts.created),
        (2, 2),
        "the page that gave the cursor is written: {run:?}"
    );
    let stored = stored_checkpoint(&h, id).await;
    assert!(
        stored.len() < 256,
        "stored checkpoint: {} bytes",
        stored.len()
    );
    h.finish().await;
}

on_both_backends!(sync_bounds_cursor_too_long, cursor_too_long);

/// A run that ends keeps no cursor in its checkpoint: no run resumes from a finished run's cursor (the next run
/// of partner → People starts at the first page), so keeping it would only pile up the partner's text.
async fn finished_run_keeps_no_cursor(backend: Backend) {
    let h = with_partner(backend, |after| match after {
        "" => (
            200,
            json!({"customers": two_customers(), "next": "y".repeat(2000)}),
        ),
        _ => (500, json!({"error": "never asked"})),
    })
    .await;
    // Stopped by the page cap after the first page, whose commit saved the next cursor.
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_pages: 1,
            ..config()
        },
    );
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(20)).await;
    assert!(
        failed_with(&outcome, &["IBEX_SYNC_MAX_PAGES"]),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.counts.read),
        ("failed", 2),
        "{run:?}"
    );
    assert_eq!(run.checkpoint.cursor, None, "{run:?}");
    assert_eq!(
        run.checkpoint.pages, 1,
        "what a finished run did stays: {run:?}"
    );
    h.finish().await;
}

on_both_backends!(
    sync_bounds_finished_run_keeps_no_cursor,
    finished_run_keeps_no_cursor
);

/// The panel's history (polled once a second while a run is open) reads the columns it shows, not the
/// checkpoints: one enormous or unreadable checkpoint neither weighs on it nor stops it, and a retry is still
/// shown as one.
async fn history_reads_no_checkpoint(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(&h.state, config());
    let panel = ibex::sync::panel::ServerSync {
        state: h.state.clone(),
        runs: engine.runs.clone(),
        config: config(),
    };
    let first = panel.start(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let retry = panel.retry(ACCOUNT, "admin").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    // As a row written before cursors were capped, or edited by hand, would hold.
    sqlx::query("UPDATE sync_runs SET checkpoint = $1 WHERE id = $2")
        .bind(format!("not json {}", "z".repeat(1 << 20)))
        .bind(first)
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    let status = panel.status(ACCOUNT).await.expect("the history is read");
    let ids: Vec<(i64, bool)> = status.runs.iter().map(|r| (r.id, r.retry)).collect();
    assert_eq!(ids, vec![(retry, true), (first, false)]);
    h.finish().await;
}

on_both_backends!(
    sync_bounds_history_reads_no_checkpoint,
    history_reads_no_checkpoint
);

/// An account keeps its newest 100 runs; older ones are deleted when a run ends, except a run that is open and
/// the last completed People → partner run, whose checkpoint the next one starts from.
async fn old_runs_pruned(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_on(&h, ACCOUNT).await;
    let engine = SyncEngine::new(&h.state, config());
    let pool = h.state.settings.store().pool();
    let insert = |account: &'static str,
                  direction: &'static str,
                  status: &'static str,
                  checkpoint: String| async move {
        sqlx::query(
            "INSERT INTO sync_runs (account_key, direction, status, requested_by, requested_at, next_attempt_at, checkpoint) \
             VALUES ($1, $2, $3, 't', 0, $4, $5) RETURNING id",
        )
        .bind(account)
        .bind(direction)
        .bind(status)
        .bind(i64::MAX / 2)
        .bind(checkpoint)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
    };
    let since = "2026-12-01T10:00:00.000+0000";
    let last_from_people = insert(
        ACCOUNT,
        "from_people",
        "done",
        json!({"since": since}).to_string(),
    )
    .await;
    let paused = insert(ACCOUNT, "from_people", "paused", "{}".into()).await;
    let other = insert("ACCT-2", TO_PEOPLE, "done", "{}".into()).await;
    for n in 0..120 {
        let status = if n % 2 == 0 { "done" } else { "failed" };
        insert(ACCOUNT, TO_PEOPLE, status, "{}".into()).await;
    }
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(30)).await;
    assert_eq!(outcome, Outcome::Done);
    let count = |account: &'static str| async move {
        sqlx::query("SELECT COUNT(*) FROM sync_runs WHERE account_key = $1")
            .bind(account)
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    };
    assert_eq!(
        count(ACCOUNT).await,
        102,
        "the newest 100, the open run and the last People → partner run"
    );
    assert!(engine.runs.get(id).await.unwrap().is_some());
    assert!(
        engine.runs.get(paused).await.unwrap().is_some(),
        "an open run stays"
    );
    assert!(engine.runs.get(last_from_people).await.unwrap().is_some());
    assert_eq!(
        engine.runs.last_since(ACCOUNT).await.unwrap().as_deref(),
        Some(since)
    );
    assert!(
        engine.runs.get(other).await.unwrap().is_some(),
        "another account's runs stay"
    );
    h.finish().await;
}

on_both_backends!(sync_bounds_old_runs_pruned, old_runs_pruned);

/// A page of more than 10 000 records (a hostile `[0,0,0,…]` of 4 MiB is two million) ends the run as failed
/// with the reason before any of them is mapped, so one page cannot build millions of failed records in memory.
async fn page_record_cap(backend: Backend) {
    let h = with_partner(backend, |_| {
        let customers: Vec<Value> = (0..10_001)
            .map(|i| json!({"id": format!("b-{i}"), "name": "Bad Phone", "phone": "n/a"}))
            .collect();
        (200, json!({"customers": customers}))
    })
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(60)).await;
    assert!(
        failed_with(&outcome, &["10001 records", "10000"]),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.counts.read),
        ("failed", 0),
        "{run:?}"
    );
    assert_eq!(stored_failures(&h, id).await, 0);

    // Raised by the operator (a partner that answers in one big page), the same page is read: its records
    // fail the mapping one by one, and are counted.
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_page_records: 20_000,
            ..config()
        },
    );
    let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    let (_, outcome) = next_run(&engine, &h, Duration::from_secs(60)).await;
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.counts.read, 10_001, "{outcome:?} {run:?}");
    h.finish().await;
}

on_both_backends!(sync_bounds_page_record_cap, page_record_cap);

/// The harness with `with_partner`'s partner and records gone from the source tagged (`on_delete = "tag"`).
async fn tagging_with_partner(backend: Backend, answer: fn(&str) -> (u16, Value)) -> Harness {
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        0,
        |url| url.to_owned(),
        &cursor_definition().replace(
            "[sync]\nidentifier",
            "[sync]\non_delete = \"tag\"\ndelete_tag = \"gone\"\nidentifier",
        ),
    )
    .await;
    let partner = partner_answering(answer).await;
    h.configure(
        ACCOUNT,
        &[("api_base_url", partner.as_str()), ("api_key", SHOP_KEY)],
    )
    .await;
    people_on(&h, ACCOUNT).await;
    h
}

fn kims(from: usize, to: usize) -> Value {
    (from..=to)
        .map(|i| json!({"id": format!("k-{i}"), "name": "Kim", "email": format!("kim{i}@example.com")}))
        .collect()
}

/// A partner's answer to a cursor: its status and body.
type Answer = fn(&str) -> (u16, Value);

/// A list that does not end the way a list ends decides nothing about deletes: a next cursor equal to the one
/// just sent, or an empty page that still gives a next cursor, fails the run instead of being taken for the last
/// page (after which every record not read would be tagged).
async fn broken_list_end_sweeps_nothing(backend: Backend) {
    let answers: [Answer; 2] = [
        |after| match after {
            "" => (200, json!({"customers": kims(1, 2), "next": "A"})),
            _ => (200, json!({"customers": kims(3, 3), "next": "A"})),
        },
        |after| match after {
            "" => (200, json!({"customers": kims(1, 2), "next": "A"})),
            _ => (200, json!({"customers": [], "next": "B"})),
        },
    ];
    for answer in answers {
        let h = tagging_with_partner(backend, |after| match after {
            "" => (200, json!({"customers": kims(1, 2), "next": "A"})),
            _ => (200, json!({"customers": kims(3, 4)})),
        })
        .await;
        let engine = SyncEngine::new(
            &h.state,
            SyncConfig {
                delete_max_percent: 100,
                ..config()
            },
        );
        engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
        let (run, outcome) = next_run(&engine, &h, Duration::from_secs(20)).await;
        assert_eq!(outcome, Outcome::Done, "{run:?}");
        let partner = partner_answering(answer).await;
        h.configure(
            ACCOUNT,
            &[
                ("api_base_url", partner.as_str()),
                ("api_key", SHOP_KEY),
                ("people_api_key", ibex_sim::people::API_KEY),
            ],
        )
        .await;
        let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
        let (_, outcome) = next_run(&engine, &h, Duration::from_secs(20)).await;
        let run = engine.runs.get(id).await.unwrap().unwrap();
        assert_eq!(run.status, "failed", "{outcome:?} {run:?}");
        assert_eq!(run.counts.tagged, 0, "{run:?}");
        h.finish().await;
    }
}

on_both_backends!(sync_bounds_broken_list_end, broken_list_end_sweeps_nothing);
