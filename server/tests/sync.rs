//! People data sync against the simulator, on both settings backends: the shop's customers become People
//! persons as `[sync]` maps them; a second run of an unchanged source writes nothing and says so; a record People
//! (or the mapping) refuses is recorded with its reason and the run goes on; a People outage pauses the run,
//! which resumes from its checkpoint; a run whose holder stopped is taken over once its lease runs out.

mod common;

use common::{client, Backend, Harness, ACCOUNT};
use ibex::sync::engine::{Outcome, SyncEngine};
use ibex::sync::runs::TO_PEOPLE;
use ibex::sync::SyncConfig;
use serde_json::{json, Value};
use std::time::Duration;

/// The seeded three plus 247 generated: 250 records, three pages of 100 (the last one short).
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

/// The v3 batch upserts People was sent (`PATCH /people/3/persons/upsert` requests it admitted).
fn upserts(state: &Value) -> u64 {
    state["stats"]["requests"]["PATCH /people/3/persons/upsert"]
        .as_u64()
        .unwrap_or(0)
}

async fn people_switches(h: &Harness, switches: Value) {
    let r = client()
        .post(format!("{}/_sim/people", h.portal))
        .json(&switches)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Works on runs until the account's open run is over; the outcome of its last attempt.
async fn run_to_end(engine: &SyncEngine, h: &Harness) -> Outcome {
    for _ in 0..50 {
        match engine.work_once(&h.state).await.unwrap() {
            Some((_, Outcome::Paused(reason))) => return Outcome::Paused(reason),
            Some((_, outcome)) => return outcome,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("no run came due");
}

async fn sync(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], GENERATED).await;
    // The simulator's documented limits are lifted here; the rate-limited path has its own test below.
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    let engine = SyncEngine::new(&h.state, config());

    // Without People credentials the run ends at once, saying what is missing.
    engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(
        matches!(&outcome, Outcome::Failed(reason) if reason.contains("are not set")),
        "{outcome:?}"
    );

    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "done");
    assert_eq!(
        run.total,
        Some(250),
        "the list's total_output, for the progress bar"
    );
    let c = &run.counts;
    // Generated customers 13, 110 and 207 have "n/a" for a phone number, and the seeded Jane Doe a UK number
    // from the range reserved for drama (01632 960…), which libphonenumber rightly calls invalid: refused by the
    // mapping, recorded with the reason, and the run goes on.
    let failures = engine.runs.failures(id).await.unwrap();
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (250, 246, 0, 0, 4),
        "{c:?} {failures:?}"
    );
    let keys: Vec<&str> = failures.iter().map(|f| f.record_key.as_str()).collect();
    assert_eq!(keys, ["c-102", "g-000013", "g-000110", "g-000207"]);
    // The run's calls are in the account's activity: three pages from the partner, the upserts to People.
    ibex::activity::flush::Writer::new(
        h.state.activity.clone(),
        ibex::activity::store::ActivityStore::new(h.state.settings.store().clone()),
    )
    .flush()
    .await
    .unwrap();
    let activity = ibex::activity::view::ServerActivity {
        store: ibex::activity::store::ActivityStore::new(h.state.settings.store().clone()),
        settings: h.state.settings.store().clone(),
    }
    .view(
        ACCOUNT,
        ibex::activity::view::Period::parse("hour").unwrap(),
    )
    .await
    .unwrap();
    let calls = |function: &str| {
        activity
            .functions
            .iter()
            .filter(|f| f.surface == "People sync" && f.function == function)
            .map(|f| (f.calls, f.failures))
            .next()
    };
    assert_eq!(calls("list-customers"), Some((3, 0)), "{activity:#?}");
    assert!(
        calls("upsert-partial").is_some_and(|(n, failed)| n >= 1 && failed == 0),
        "{activity:#?}"
    );
    assert!(
        failures[1].reason.contains("`n/a` is not a phone number"),
        "{failures:?}"
    );
    let state = common::people_state(&h).await;
    let persons = state["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 246);
    let ana = persons.iter().find(|p| p["externalId"] == "c-100").unwrap();
    assert_eq!(ana["firstName"], "Ana");
    assert_eq!(ana["lastName"], "Horvat");
    assert_eq!(
        ana["contactInformation"]["phone"],
        json!([{"number": "385911234567"}])
    );
    assert_eq!(ana["customAttributes"]["loyaltyTier"], "gold");
    assert_eq!(ana["tags"], json!(["order-desk"]));
    let generated = persons
        .iter()
        .find(|p| p["externalId"] == "g-000001")
        .unwrap();
    assert_eq!(
        generated["contactInformation"]["phone"][0]["number"],
        "385920000001"
    );
    let mut ids: Vec<&str> = persons
        .iter()
        .map(|p| p["externalId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 246, "one person per customer");

    let metrics = h.state.metrics.render();
    assert!(
        metrics.contains(r#"ibex_sync_records_total{direction="to_people",outcome="created"} 246"#),
        "{metrics}"
    );
    assert_eq!(upserts(&state), 3, "one batch upsert per page of 100");

    // The same source again: nothing is written, and the counts say so.
    let writes_before =
        state["stats"]["creates"].as_u64().unwrap() + state["stats"]["updates"].as_u64().unwrap();
    let again = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(again).await.unwrap().unwrap().counts;
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (250, 0, 0, 246, 4),
        "{c:?}"
    );
    let after = common::people_state(&h).await;
    assert_eq!(
        after["stats"]["creates"].as_u64().unwrap() + after["stats"]["updates"].as_u64().unwrap(),
        writes_before,
        "a second run of an unchanged source sends People nothing"
    );
    assert_eq!(upserts(&after), upserts(&state), "not even a request");

    // One open run per account: asking twice gives the same run.
    let first = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "a").await.unwrap();
    assert_eq!(
        engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "b").await.unwrap(),
        first
    );

    // A holder that stopped (its lease ran out) is replaced: another instance claims the run and finishes it.
    let stalled = engine
        .runs
        .claim("stalled-instance", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stalled.id, first);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let taken = engine.runs.get(first).await.unwrap().unwrap();
    assert_eq!((taken.status.as_str(), taken.attempts), ("done", 2));
    // …and the stalled one can no longer commit anything.
    assert!(!engine
        .runs
        .commit_page(&stalled, "stalled-instance", 1000, &Default::default())
        .await
        .unwrap());

    // A People outage pauses the run at its checkpoint; once People is back the run resumes and finishes.
    // (Forgetting what was written makes every customer due again.)
    sqlx::query("DELETE FROM sync_records")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    // People goes down after the first page's batch (persons it has taken, unchanged ones included).
    let served = {
        let stats = &common::people_state(&h).await["stats"];
        stats["creates"].as_u64().unwrap()
            + stats["updates"].as_u64().unwrap()
            + stats["unchanged"].as_u64().unwrap()
    };
    people_switches(
        &h,
        json!({"reads_per_sec": 0, "writes_per_sec": 0, "down_after_writes": served + 50}),
    )
    .await;
    let outage = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(
        matches!(&outcome, Outcome::Paused(reason) if reason.contains("People is not available")),
        "{outcome:?}"
    );
    let paused = engine.runs.get(outage).await.unwrap().unwrap();
    assert_eq!(paused.status, "paused");
    assert_eq!(paused.checkpoint.page, Some(2), "page 1 was committed");
    assert_eq!(paused.counts.read, 100, "{paused:?}");
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let resumed = engine.runs.get(outage).await.unwrap().unwrap();
    assert_eq!(resumed.status, "done");
    // Page 2 was done again on resume (its writes are idempotent upserts), and counted once. People already
    // holds every person as sent: each comes back NOT_MODIFIED.
    let c = &resumed.counts;
    assert_eq!(c.read, 250, "{resumed:?}");
    assert_eq!(
        (c.created, c.updated, c.unchanged, c.failed),
        (0, 0, 246, 4),
        "{c:?}"
    );
    assert_eq!(
        common::people_state(&h).await["persons"]
            .as_array()
            .unwrap()
            .len(),
        246,
        "no duplicates"
    );

    // The partner's list failing (a 5xx storm) pauses the run too, never fails or loses it; once the partner
    // answers again the run resumes and finishes, each customer counted once.
    sqlx::query("DELETE FROM sync_records")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    h.shop_faults(json!({"status": 503, "fail_next": 1000}))
        .await;
    let partner_down = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    h.shop_faults(json!({})).await;
    assert!(
        matches!(&outcome, Outcome::Paused(reason) if reason.contains("the partner's list failed")),
        "{outcome:?}"
    );
    let paused = engine.runs.get(partner_down).await.unwrap().unwrap();
    assert_eq!((paused.status.as_str(), paused.counts.read), ("paused", 0));
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let resumed = engine.runs.get(partner_down).await.unwrap().unwrap();
    assert_eq!(
        (resumed.status.as_str(), resumed.counts.read),
        ("done", 250)
    );
    assert_eq!(
        common::people_state(&h).await["persons"]
            .as_array()
            .unwrap()
            .len(),
        246,
        "no duplicates"
    );

    // People's own limit below ibex's: its 429s are waited out (Retry-After), counted, and the run still ends.
    // Twelve persons due again, in batches of four: three upserts at once against People's one a second.
    sqlx::query("DELETE FROM sync_records WHERE direction = 'to_people' AND record_key IN (SELECT record_key FROM sync_records WHERE direction = 'to_people' ORDER BY record_key LIMIT 12)")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 1})).await;
    let before = upserts(&common::people_state(&h).await);
    let small_batches = SyncEngine::new(
        &h.state,
        SyncConfig {
            batch_size: 4,
            ..config()
        },
    );
    let limited = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    assert_eq!(run_to_end(&small_batches, &h).await, Outcome::Done);
    let c = engine.runs.get(limited).await.unwrap().unwrap().counts;
    assert_eq!((c.updated, c.unchanged, c.failed), (0, 246, 4), "{c:?}");
    assert_eq!(
        upserts(&common::people_state(&h).await) - before,
        3,
        "a page's twelve due persons in batches of four"
    );
    let metrics = h.state.metrics.render();
    let throttled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ibex_sync_people_throttled_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(throttled > 0, "{metrics}");

    // The schedule: an account with sync on is queued once its interval has passed since its last run. Accounts
    // with both directions off are not even looked at.
    assert_eq!(
        engine.runs.syncing_accounts().await.unwrap(),
        Vec::<String>::new()
    );
    h.configure(
        "SYNCS-FROM-PEOPLE-ONLY",
        &[
            ("api_key", "k"),
            ("api_base_url", h.shop.as_str()),
            ("people_sync_from_on", "true"),
            // Only when its admin presses Sync now.
            ("people_sync_every_minutes", "0"),
        ],
    )
    .await;
    h.configure(
        ACCOUNT,
        &[
            ("people_sync_on", "true"),
            ("people_sync_every_minutes", "1"),
        ],
    )
    .await;
    // A row edited by hand into something that is not JSON is skipped, not the end of everyone's schedule.
    sqlx::query(
        "INSERT INTO account_settings (account_key, values_json, secrets_json, version, created_at, \
         updated_at, updated_by) VALUES ('HAND-EDITED', '{\"people_sync_on\":true,', '{}', 1, 0, 0, 'psql')",
    )
    .execute(h.state.settings.store().pool())
    .await
    .unwrap();
    assert_eq!(
        engine.runs.syncing_accounts().await.unwrap(),
        vec![ACCOUNT.to_owned(), "SYNCS-FROM-PEOPLE-ONLY".to_owned()]
    );
    assert_eq!(
        engine.schedule(&h.state).await.unwrap(),
        0,
        "the last run is recent"
    );
    sqlx::query("UPDATE sync_runs SET requested_at = requested_at - 120000")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    assert_eq!(engine.schedule(&h.state).await.unwrap(), 1);
    assert_eq!(engine.schedule(&h.state).await.unwrap(), 0, "queued once");
    let scheduled = engine.runs.open(ACCOUNT, TO_PEOPLE).await.unwrap().unwrap();
    assert_eq!(scheduled.requested_by, "schedule");
    h.finish().await;
}

on_both_backends!(people_sync, sync);

/// "Retry failed": the last run's failed records are sent again, as they were read, in a run of their own;
/// those People now takes are written, the rest are that run's failures. Nothing to retry, or a run in
/// progress, is refused with the reason.
async fn retry_failed(backend: Backend) {
    use app::pages::sync_panel::SyncSource;
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    // People refuses two persons for now (as it refuses a record it cannot take).
    people_switches(
        &h,
        json!({"reads_per_sec": 0, "writes_per_sec": 0, "reject_external_ids": ["c-100", "g-000002"]}),
    )
    .await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let panel = ibex::sync::panel::ServerSync {
        state: h.state.clone(),
        runs: engine.runs.clone(),
        config: config(),
    };
    // Test People connection: the saved URL and key, one read; a wrong key is named; both are audited.
    let said = panel.test_people(ACCOUNT, "admin").await.unwrap();
    assert!(
        said.starts_with("Connected: People at 127.0.0.1:"),
        "{said}"
    );
    // The key changed by another instance (or `ibex settings set`): this instance's cache entry, filled by the
    // test above and by the sync schedule, must not answer for what the admin just saved.
    let elsewhere = app::settings::SettingsService::new(
        std::sync::Arc::new(h.state.settings.definition().clone()),
        h.state.settings.store().clone(),
        std::time::Duration::from_secs(5),
        64 << 20,
    );
    elsewhere
        .update(
            ACCOUNT,
            None,
            &[("people_api_key".to_owned(), "not-the-key".to_owned())].into(),
            "cli",
        )
        .await
        .unwrap();
    let refused = panel.test_people(ACCOUNT, "admin").await.unwrap_err();
    assert!(
        refused.contains("refused the API key (HTTP 401)"),
        "{refused}"
    );
    let probes = h.state.settings.store().probes(ACCOUNT, 5).await.unwrap();
    assert!(
        probes[0].outcome.starts_with("failed: People refused"),
        "{probes:?}"
    );
    assert!(
        probes[1].outcome.starts_with("passed: Connected"),
        "{probes:?}"
    );
    h.configure(ACCOUNT, &[("people_api_key", ibex_sim::people::API_KEY)])
        .await;

    let nothing = panel.retry(ACCOUNT, "admin").await;
    assert_eq!(
        nothing,
        Err("The last run has no failed records to retry.".to_owned())
    );

    let first = panel.start(ACCOUNT, "admin").await.unwrap();
    assert_eq!(
        panel.retry(ACCOUNT, "admin").await,
        Err("A run is in progress; retry when it has ended.".to_owned())
    );
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(first).await.unwrap().unwrap().counts;
    assert_eq!((c.read, c.created, c.failed), (10, 7, 3), "{c:?}");

    // People takes them now; the mapping's refusal (c-102's invalid number) stands.
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    let shop_lists_before = h.shop_requests().await.len();
    let retry = panel.retry(ACCOUNT, "admin").await.unwrap();
    assert_ne!(retry, first);
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let run = engine.runs.get(retry).await.unwrap().unwrap();
    let c = &run.counts;
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (3, 2, 0, 0, 1),
        "{run:?}"
    );
    assert_eq!(run.checkpoint.retry_of, Some(first));
    assert_eq!(
        h.shop_requests().await.len(),
        shop_lists_before,
        "a retry sends what was read; it does not read the source again"
    );
    let failures = engine.runs.failures(retry).await.unwrap();
    let keys: Vec<&str> = failures.iter().map(|f| f.record_key.as_str()).collect();
    assert_eq!(keys, ["c-102"]);
    let persons = common::people_state(&h).await["persons"].clone();
    let mut ids: Vec<&str> = persons
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["externalId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert!(ids.contains(&"c-100") && ids.contains(&"g-000002"));

    // The page shows the retry as such, with what is still not synced.
    let status = panel.status(ACCOUNT).await.unwrap();
    assert!(status.runs[0].retry && !status.runs[1].retry);
    assert_eq!(status.failures.len(), 1);
    assert_eq!(status.failures[0].0, "c-102");

    // A retry run claimed again after its page was committed (its holder died before finishing) has nothing
    // left to do: no record is sent twice.
    let writes = |state: &Value| {
        state["stats"]["creates"].as_u64().unwrap() + state["stats"]["updates"].as_u64().unwrap()
    };
    let before = writes(&common::people_state(&h).await);
    sqlx::query("UPDATE sync_runs SET status = 'running', lease_owner = 'dead', lease_until = 0 WHERE id = $1")
        .bind(retry)
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    assert_eq!(writes(&common::people_state(&h).await), before);
    assert_eq!(
        engine.runs.get(retry).await.unwrap().unwrap().counts.read,
        3
    );
    h.finish().await;
}

on_both_backends!(people_sync_retry_failed, retry_failed);

/// A customer as the shop lists it now.
async fn shop_customer(h: &Harness, id: &str) -> Value {
    let list: Value = client()
        .get(format!("{}/customers?page=1&size=500", h.shop))
        .header("x-api-key", common::SHOP_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn people_change(h: &Harness, change: Value) {
    let r = client()
        .post(format!("{}/_sim/people/change", h.portal))
        .json(&change)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// People → partner: persons changed in People since the last run update their customer through the partner
/// middleware; a person the partner never had is skipped; a record the partner refuses is recorded and the run
/// goes on; an unchanged person is not sent again; the checkpoint moves with `modifiedAt`.
async fn from_people(backend: Backend) {
    use ibex::sync::runs::FROM_PEOPLE;
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 7).await;
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
            ("people_sync_from_on", "true"),
        ],
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);

    // The first run back sends nothing: ibex itself wrote every person the shop has, so each holds what the shop
    // already has (no echo); a walk-in that People has but the shop never had is skipped.
    people_change(&h, json!({"firstName": "Walk-in", "tags": ["front-desk"]})).await;
    let first = engine
        .runs
        .enqueue(ACCOUNT, FROM_PEOPLE, "t")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let run = engine.runs.get(first).await.unwrap().unwrap();
    let c = &run.counts;
    assert_eq!(
        (c.read, c.updated, c.unchanged, c.skipped, c.failed),
        (10, 0, 9, 1, 0),
        "{run:?}"
    );
    assert!(run.checkpoint.since.is_some(), "{run:?}");
    assert!(!h
        .shop_requests()
        .await
        .iter()
        .any(|r| r["method"] == "PATCH"));

    // Hostile persons anyone with People access can make, read before Ana below: an externalId that would
    // climb out of /customers/{id}, and an email carrying a mail header. Each is that record's failure; the
    // run goes on to Ana.
    tokio::time::sleep(Duration::from_millis(5)).await;
    people_change(&h, json!({"externalId": ".."})).await;
    people_change(
        &h,
        json!({"externalId": "c-888", "contactInformation": {"email": [{"address": "x@example.com\r\nBcc: evil@example.com"}]}}),
    )
    .await;
    // An admin upgrades Ana in People; the shop's customer follows. Only what changed since is read.
    tokio::time::sleep(Duration::from_millis(5)).await;
    people_change(
        &h,
        json!({"externalId": "c-100", "customAttributes": {"loyaltyTier": "platinum"}}),
    )
    .await;
    // A person with a customer ID the shop does not know: the shop refuses it (404), the run goes on.
    people_change(&h, json!({"externalId": "c-999", "firstName": "Ghost"})).await;
    let second = engine
        .runs
        .enqueue(ACCOUNT, FROM_PEOPLE, "t")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let run = engine.runs.get(second).await.unwrap().unwrap();
    let c = &run.counts;
    assert_eq!((c.updated, c.failed), (1, 3), "{run:?}");
    // Read again from the previous checkpoint (`modifiedAt` at or after it): the last person of the first
    // run, unchanged, plus the four changes.
    assert_eq!((c.read, c.unchanged + c.skipped), (5, 1), "{run:?}");
    let ana = shop_customer(&h, "c-100").await;
    assert_eq!(
        (ana["tier"].as_str(), ana["phone"].as_str()),
        (Some("platinum"), Some("+385911234567"))
    );
    let failures = engine.runs.failures(second).await.unwrap();
    let reasons: std::collections::BTreeMap<&str, &str> = failures
        .iter()
        .map(|f| (f.record_key.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[".."].contains("cannot be `.` or `..`"),
        "{reasons:?}"
    );
    assert!(
        reasons["c-888"].contains("control characters"),
        "{reasons:?}"
    );
    assert!(reasons["c-999"].contains("HTTP 404"), "{reasons:?}");
    assert!(
        !h.shop_requests()
            .await
            .iter()
            .any(|r| r["path"].as_str().unwrap_or("").contains("..")
                || r["body"].as_str().unwrap_or("").contains("Bcc")),
        "neither reached the shop"
    );

    // Nothing changed: nothing is sent to the shop but the refused record, when it is still at the checkpoint
    // (it has no digest, so it is tried again).
    let writes_before = h
        .shop_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .count();
    let third = engine
        .runs
        .enqueue(ACCOUNT, FROM_PEOPLE, "t")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(third).await.unwrap().unwrap().counts;
    assert_eq!(c.updated, 0, "{c:?}");
    assert!(c.failed <= 1, "{c:?}");
    assert_eq!(
        h.shop_requests()
            .await
            .iter()
            .filter(|r| r["method"] == "PATCH")
            .count(),
        writes_before + c.failed as usize
    );

    // The shop down mid-run: the run pauses at its checkpoint and finishes once the shop is back.
    tokio::time::sleep(Duration::from_millis(5)).await;
    people_change(
        &h,
        json!({"externalId": "g-000003", "customAttributes": {"loyaltyTier": "gold"}}),
    )
    .await;
    h.shop_faults(json!({"fail_next": 10, "status": 503})).await;
    let fourth = engine
        .runs
        .enqueue(ACCOUNT, FROM_PEOPLE, "t")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(
        matches!(&outcome, Outcome::Paused(reason) if reason.contains("partner")),
        "{outcome:?}"
    );
    h.shop_faults(json!({})).await;
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let run = engine.runs.get(fourth).await.unwrap().unwrap();
    assert_eq!(run.status, "done");
    assert_eq!(shop_customer(&h, "g-000003").await["tier"], "gold");
    h.finish().await;
}

on_both_backends!(people_sync_from_people, from_people);

/// The Moments endpoint ("Change in People profile" → ibex): signed like every Exchange call, it reads the
/// person from People and writes it to the partner at once; the next run finds it unchanged. Bad calls get a
/// precise JSON error.
async fn moments_people_changed(backend: Backend) {
    use ibex::sync::runs::FROM_PEOPLE;
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 3).await;
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;

    // Before People credentials are saved: a conflict naming what is missing.
    let (status, body) = h
        .post("/sync/people-changed", r#"{"identifier": "c-100"}"#)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("people_not_configured")),
        "{body}"
    );
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    people_change(
        &h,
        json!({"externalId": "c-101", "customAttributes": {"loyaltyTier": "gold"},
               "contactInformation": {"email": [{"address": "marko@new.example.com"}]}}),
    )
    .await;
    let (status, body) = h
        .post("/sync/people-changed", r#"{"identifier": "c-101"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"written": true, "key": "c-101"}));
    let marko = shop_customer(&h, "c-101").await;
    assert_eq!(
        (marko["tier"].as_str(), marko["email"].as_str()),
        (Some("gold"), Some("marko@new.example.com"))
    );
    // The same person again (a flow fired twice): the partner already has it, nothing is sent.
    let patches = |requests: Vec<Value>| requests.iter().filter(|r| r["method"] == "PATCH").count();
    let before = patches(h.shop_requests().await);
    let (status, body) = h
        .post("/sync/people-changed", r#"{"identifier": "c-101"}"#)
        .await;
    assert_eq!(
        (status, body["written"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    assert_eq!(patches(h.shop_requests().await), before);

    // The next run finds Marko unchanged (the endpoint's write was recorded).
    let engine = SyncEngine::new(&h.state, config());
    let run = engine
        .runs
        .enqueue(ACCOUNT, FROM_PEOPLE, "t")
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(run).await.unwrap().unwrap().counts;
    assert_eq!((c.read, c.unchanged, c.updated), (1, 1, 0), "{c:?}");

    for (body, status, code) in [
        (r#"{"identifier": "c-404"}"#, 404, "person_not_found"),
        (r#"{"identifier": ""}"#, 422, "invalid_input"),
        (r#"{"person": "c-101"}"#, 422, "invalid_input"),
        (r#"["c-101"]"#, 400, "malformed_json"),
        (r#"{"identifier": -0}"#, 422, "invalid_input"),
        (r#"{"identifier": 1e3}"#, 422, "invalid_input"),
        ("not json", 400, "malformed_json"),
    ] {
        let (got, answer) = h.post("/sync/people-changed", body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} => {answer}"
        );
    }
    // Unsigned, or signed for another body: refused before anything is read.
    let (status, body) = h
        .send(
            reqwest::Method::POST,
            "/sync/people-changed",
            br#"{"identifier": "c-100"}"#,
            br#"{"identifier": "c-101"}"#,
            |_| {},
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("signature_mismatch"))
    );
    // The wrong method gets Exchange's JSON error like every function.
    let (status, body) = h.get("/sync/people-changed").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    h.finish().await;
}

on_both_backends!(people_sync_moments_endpoint, moments_people_changed);

/// An account turns a mapped field off on its page: it is not written to People (nor read back); turned on
/// again, the next run writes it.
async fn fields_turned_off(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], 0).await;
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
            ("people_field_customattributes_loyaltytier", "false"),
        ],
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let person = |state: &Value, id: &str| {
        state["persons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["externalId"] == id)
            .cloned()
            .unwrap()
    };
    engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let ana = person(&common::people_state(&h).await, "c-100");
    assert_eq!(ana["firstName"], "Ana");
    assert_eq!(ana["customAttributes"].get("loyaltyTier"), None, "{ana}");

    h.configure(
        ACCOUNT,
        &[("people_field_customattributes_loyaltytier", "true")],
    )
    .await;
    let again = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(again).await.unwrap().unwrap().counts;
    assert_eq!(
        (c.updated, c.unchanged),
        (2, 0),
        "the two valid customers change: {c:?}"
    );
    let ana = person(&common::people_state(&h).await, "c-100");
    assert_eq!(ana["customAttributes"]["loyaltyTier"], "gold");
    h.finish().await;
}

on_both_backends!(people_sync_fields_turned_off, fields_turned_off);

/// The v3 batch upsert as Infobip documents it: a page of 250 records is one call; a 207 mixing CREATED,
/// UPDATED, NOT_MODIFIED and per-person errors records exactly the refused persons, with People's message and the
/// property it names; an unchanged source sends nothing; a page larger than the batch size is split. People's
/// documented limits stay on.
async fn batch_upserts(backend: Backend) {
    let definition = common::test_definition().replace(r#"size = "100""#, r#"size = "250""#);
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        GENERATED,
        |url| url.to_owned(),
        &definition,
    )
    .await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    let documented = SyncConfig {
        reads_per_sec: 5,
        writes_per_sec: 5,
        creates_per_sec: 10,
        ..config()
    };
    let engine = SyncEngine::new(&h.state, documented.clone());
    let run = |engine: &SyncEngine| {
        let engine = engine.clone();
        let h = &h;
        async move {
            let id = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
            assert_eq!(run_to_end(&engine, h).await, Outcome::Done);
            engine.runs.get(id).await.unwrap().unwrap()
        }
    };

    let first = run(&engine).await;
    let c = &first.counts;
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (250, 246, 0, 0, 4),
        "{c:?}"
    );
    let state = common::people_state(&h).await;
    assert_eq!(upserts(&state), 1, "250 records, one call");
    assert_eq!(state["persons"].as_array().unwrap().len(), 246);

    // Unchanged: nothing is sent.
    let again = run(&engine).await;
    assert_eq!((again.counts.unchanged, again.counts.failed), (246, 4));
    assert_eq!(upserts(&common::people_state(&h).await), 1);

    // One batch that People answers with every kind of outcome: c-100's tier changed (UPDATED); g-000001 and
    // g-000002 forgotten by ibex (sent again, NOT_MODIFIED); g-000003's email is one ibex passes but People
    // refuses (no dot in the domain); g-000004 is locked in People; g-000005 was deleted in People (CREATED).
    let shop_patch = |id: &str, body: Value| {
        let url = format!("{}/customers/{id}", h.shop);
        async move {
            let r = client()
                .patch(url)
                .header("x-api-key", common::SHOP_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    shop_patch("c-100", json!({"tier": "platinum"})).await;
    shop_patch("g-000003", json!({"email": "ivana.horvat3@example"})).await;
    sqlx::query("DELETE FROM sync_records WHERE record_key IN ('g-000001', 'g-000002', 'g-000004', 'g-000005')")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    let forgot = client()
        .post(format!("{}/_sim/people/forget", h.portal))
        .json(&json!({"externalId": "g-000005"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forgot.status(), 204);
    people_switches(&h, json!({"reject_external_ids": ["g-000004"]})).await;
    let mixed = run(&engine).await;
    let c = &mixed.counts;
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (250, 1, 1, 242, 6),
        "{c:?}"
    );
    let state = common::people_state(&h).await;
    assert_eq!(upserts(&state), 2, "the six due persons in one call");
    let failures = engine.runs.failures(mixed.id).await.unwrap();
    let reasons: std::collections::BTreeMap<&str, &str> = failures
        .iter()
        .map(|f| (f.record_key.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        reasons.keys().copied().collect::<Vec<_>>(),
        ["c-102", "g-000003", "g-000004", "g-000013", "g-000110", "g-000207"]
    );
    // Sent in source order: c-100, g-000001, g-000002, g-000003 (index 3), g-000004 (index 4), g-000005.
    assert_eq!(
        reasons["g-000003"],
        "People refused it: One or more properties of the person are invalid \
         (persons[3].contactInformation[0].identifier: Email address is invalid)"
    );
    assert!(
        reasons["g-000004"].contains("(persons[4].externalId: Person g-000004 is locked"),
        "{reasons:?}"
    );
    let persons = state["persons"].as_array().unwrap();
    assert_eq!(persons.len(), 246, "g-000005 is back, once");
    let ana = persons.iter().find(|p| p["externalId"] == "c-100").unwrap();
    assert_eq!(ana["customAttributes"]["loyaltyTier"], "platinum");

    // A page larger than the batch is split: everything due again, in batches of 100.
    sqlx::query("DELETE FROM sync_records")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    people_switches(&h, json!({})).await;
    let split = SyncEngine::new(
        &h.state,
        SyncConfig {
            batch_size: 100,
            ..documented
        },
    );
    let resent = run(&split).await;
    let c = &resent.counts;
    // g-000003's email is still refused: 245 persons People takes, all as they are.
    assert_eq!((c.unchanged, c.failed), (245, 5), "{c:?}");
    assert_eq!(
        upserts(&common::people_state(&h).await),
        5,
        "246 persons: 100 + 100 + 46"
    );
    h.finish().await;
}

on_both_backends!(people_sync_batch_upserts, batch_upserts);

/// `write = "lookup_then_write"`: v2, one person at a time, as documented: `GET /people/2/persons?identifier=&type=`,
/// then `POST` (not found) or `PATCH` with the same query, bodies in v2's shape; a person People refuses (400) is
/// recorded with Infobip's text. The simulator checks the v2 query parameters and body against the document.
async fn lookup_then_write(backend: Backend) {
    let definition = common::test_definition().replacen(
        r#"write = "upsert""#,
        r#"write = "lookup_then_write""#,
        1,
    );
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        7,
        |url| url.to_owned(),
        &definition,
    )
    .await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    people_switches(
        &h,
        json!({"reads_per_sec": 0, "writes_per_sec": 0, "creates_per_sec": 0, "reject_external_ids": ["g-000001"]}),
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let first = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(first).await.unwrap().unwrap().counts;
    assert_eq!(
        (c.read, c.created, c.updated, c.unchanged, c.failed),
        (10, 8, 0, 0, 2),
        "{c:?}"
    );
    let failures = engine.runs.failures(first).await.unwrap();
    let locked = failures
        .iter()
        .find(|f| f.record_key == "g-000001")
        .unwrap();
    assert!(
        locked.reason.contains("400") && locked.reason.contains("person g-000001 is locked"),
        "{failures:?}"
    );
    let state = common::people_state(&h).await;
    let requests = &state["stats"]["requests"];
    assert_eq!(
        (
            requests["GET /people/2/persons"].as_u64(),
            requests["POST /people/2/persons"].as_u64(),
            requests.get("PATCH /people/3/persons/upsert"),
        ),
        (Some(9), Some(9), None),
        "{requests}"
    );
    let ana = state["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["externalId"] == "c-100")
        .unwrap()
        .clone();
    assert_eq!(
        ana["contactInformation"]["email"],
        json!([{"address": "ana@example.com"}]),
        "{ana}"
    );

    // A changed customer: looked up, found, patched by identifier.
    let r = client()
        .patch(format!("{}/customers/c-100", h.shop))
        .header("x-api-key", common::SHOP_KEY)
        .json(&json!({"tier": "platinum"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    people_switches(
        &h,
        json!({"reads_per_sec": 0, "writes_per_sec": 0, "creates_per_sec": 0}),
    )
    .await;
    let second = engine.runs.enqueue(ACCOUNT, TO_PEOPLE, "t").await.unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let c = engine.runs.get(second).await.unwrap().unwrap().counts;
    // g-000001 (refused last time, no digest) is created now; c-100 is updated; the rest are unchanged.
    assert_eq!(
        (c.created, c.updated, c.unchanged, c.failed),
        (1, 1, 7, 1),
        "{c:?}"
    );
    let state = common::people_state(&h).await;
    assert_eq!(
        state["stats"]["requests"]["PATCH /people/2/persons"].as_u64(),
        Some(1)
    );
    let ana = state["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["externalId"] == "c-100")
        .unwrap()
        .clone();
    assert_eq!(ana["customAttributes"]["loyaltyTier"], "platinum");
    h.finish().await;
}

on_both_backends!(people_sync_lookup_then_write, lookup_then_write);
