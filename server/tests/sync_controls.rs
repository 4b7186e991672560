//! Sync controls and deletes (issue 28), on both settings backends against the simulators: a paused account gets
//! no scheduled or requested runs and a run in progress stops at its next page, until it is resumed; "Resync
//! everything" sends every record again; a person ibex wrote to People is not written back to the partner
//! unchanged; a record gone from the source is tagged (or deleted, where the account opted in) after a complete
//! run only, never after a paused or capped one; only admins pause, resume and resync on the page; the operator
//! does on the command line.

mod common;

use app::pages::sync_panel::SyncSource;
use common::{client, configuration_session, server_fn, Backend, Harness, ACCOUNT};
use ibex::sync::controls::ControlError;
use ibex::sync::engine::{Outcome, SyncEngine};
use ibex::sync::panel::ServerSync;
use ibex::sync::runs::{Runs, FROM_PEOPLE, TO_PEOPLE};
use ibex::sync::SyncConfig;
use ibex_sim::exchange::USERS;
use serde_json::{json, Value};
use std::time::Duration;

const TAG: &str = "deleted-in-shop";

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

/// The test definition with `[sync]` keys added (`on_delete`, `delete_tag`).
fn defined(keys: &str) -> String {
    let definition = common::test_definition();
    assert!(definition.contains("[sync]\nidentifier"));
    definition.replace("[sync]\nidentifier", &format!("[sync]\n{keys}\nidentifier"))
}

/// A harness whose shop lists `customers - 3` generated customers after the seeded three, serving `definition`,
/// with People set up for the test account and its documented limits lifted.
async fn start(backend: Backend, customers: usize, definition: &str) -> Harness {
    let h = Harness::start_defined(
        backend,
        &["--allow-loopback-partners"],
        customers - 3,
        |url| url.to_owned(),
        definition,
    )
    .await;
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
            ("people_sync_on", "true"),
            ("people_sync_every_minutes", "1"),
        ],
    )
    .await;
    h
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

async fn delete_customers(h: &Harness, ids: &[&str]) {
    let r = client()
        .post(format!("{}/_sim/customers/delete", h.shop))
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Runs due runs until one has ended this attempt; its outcome.
async fn run_to_end(engine: &SyncEngine, h: &Harness) -> Outcome {
    for _ in 0..50 {
        match engine.work_once(&h.state).await.unwrap() {
            Some((_, outcome)) => return outcome,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("no run came due");
}

/// Queues a run of `direction` and works it to its end; the run as it ended.
async fn sync_once(engine: &SyncEngine, h: &Harness, direction: &str) -> ibex::sync::runs::Run {
    let id = engine
        .runs
        .enqueue(ACCOUNT, direction, "test")
        .await
        .unwrap();
    let outcome = run_to_end(engine, h).await;
    assert_eq!(outcome, Outcome::Done, "run {id}");
    engine.runs.get(id).await.unwrap().unwrap()
}

fn person<'a>(state: &'a Value, external: &str) -> Option<&'a Value> {
    state["persons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["externalId"] == external)
}

fn tagged(state: &Value, external: &str) -> bool {
    person(state, external)
        .and_then(|p| p["tags"].as_array())
        .is_some_and(|tags| tags.iter().any(|t| t == TAG))
}

/// The customer updates the shop received (`PATCH /customers/{id}`): People → partner's writes.
async fn partner_writes(h: &Harness) -> usize {
    h.shop_requests()
        .await
        .iter()
        .filter(|r| {
            r["method"] == "PATCH" && r["path"].as_str().unwrap_or("").starts_with("/customers/")
        })
        .count()
}

fn upserts(state: &Value) -> u64 {
    state["stats"]["requests"]["PATCH /people/3/persons/upsert"]
        .as_u64()
        .unwrap_or(0)
}

/// Pause stops scheduled and requested runs and a run in progress (at its next page, which then decides nothing
/// about deletes); resume lets it go on from its checkpoint. A record gone from the source is tagged after a
/// complete run, and left alone after a paused or a capped one.
async fn pause_resume_and_deletes(backend: Backend) {
    let h = start(
        backend,
        250,
        &defined(&format!("on_delete = \"tag\"\ndelete_tag = \"{TAG}\"")),
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    let first = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(
        (
            first.counts.created,
            first.counts.tagged,
            first.counts.failed
        ),
        (246, 0, 4)
    );
    delete_customers(&h, &["g-000001", "g-000002"]).await;

    // Paused: the schedule queues nothing, "Sync now" is refused, and a run queued before the pause waits.
    let admin = "ana.admin (U-ANA-7F21)";
    let paused = engine
        .controls
        .pause(ACCOUNT, &[TO_PEOPLE], admin)
        .await
        .unwrap();
    assert_eq!(paused, [TO_PEOPLE]);
    sqlx::query("UPDATE sync_runs SET requested_at = 0")
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    assert_eq!(engine.schedule(&h.state).await.unwrap(), 0);
    assert!(engine
        .runs
        .open(ACCOUNT, TO_PEOPLE)
        .await
        .unwrap()
        .is_none());
    let panel = ServerSync {
        state: h.state.clone(),
        runs: Runs::new(h.state.settings.store().clone()),
        config: config(),
    };
    let refused = panel.start(ACCOUNT, "bob").await.unwrap_err();
    assert!(refused.contains("paused"), "{refused}");
    assert!(engine
        .runs
        .open(ACCOUNT, TO_PEOPLE)
        .await
        .unwrap()
        .is_none());
    let waiting = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "queued before the pause")
        .await
        .unwrap();
    assert!(engine.work_once(&h.state).await.unwrap().is_none());

    // Resumed: the waiting run is claimed. People answers each upsert 300 ms late, so the run is paused again while
    // its second page is in People's hands: it stops before its third page, keeping what it committed.
    engine
        .controls
        .resume(ACCOUNT, &[TO_PEOPLE], admin)
        .await
        .unwrap();
    people_switches(
        &h,
        json!({"reads_per_sec": 0, "writes_per_sec": 0, "delay_ms": 300}),
    )
    .await;
    sqlx::query(
        "DELETE FROM sync_records WHERE direction = 'to_people' AND record_key LIKE 'g-0001%'",
    )
    .execute(h.state.settings.store().pool())
    .await
    .unwrap();
    let worker = {
        let (engine, state) = (engine.clone(), h.state.clone());
        tokio::spawn(async move { engine.work_once(&state).await.unwrap() })
    };
    for _ in 0..200 {
        let run = engine.runs.get(waiting).await.unwrap().unwrap();
        if run.counts.read >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine
        .controls
        .pause(ACCOUNT, &[TO_PEOPLE], admin)
        .await
        .unwrap();
    let (run, outcome) = worker.await.unwrap().unwrap();
    assert_eq!(run.id, waiting);
    assert_eq!(outcome, Outcome::Held(format!("paused by {admin}")));
    let held = engine.runs.get(waiting).await.unwrap().unwrap();
    assert_eq!(held.status, "paused");
    // Stopped at a page boundary: usually after page 2 (in People's hands when the pause came), after page 1 if
    // the pause came between page 1's commit and the look before page 2. What it committed stays; the rest waits.
    assert!(
        matches!(held.counts.read, 100 | 200),
        "whole pages committed, the last not read: {held:?}"
    );
    assert_eq!(
        held.checkpoint.page,
        Some(held.counts.read as u64 / 100 + 1)
    );
    assert!(
        engine.work_once(&h.state).await.unwrap().is_none(),
        "a paused direction's run is not claimed"
    );
    assert_eq!(engine.schedule(&h.state).await.unwrap(), 0);

    // Resumed again: the run goes on from page 3 and ends; read in two passes, it decides nothing about the two
    // customers gone from the shop.
    people_switches(&h, json!({"reads_per_sec": 0, "writes_per_sec": 0})).await;
    engine
        .controls
        .resume(ACCOUNT, &[TO_PEOPLE], admin)
        .await
        .unwrap();
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let resumed = engine.runs.get(waiting).await.unwrap().unwrap();
    assert_eq!(
        (
            resumed.status.as_str(),
            resumed.attempts,
            resumed.counts.read
        ),
        ("done", 2, 248)
    );
    assert_eq!((resumed.counts.tagged, resumed.counts.deleted), (0, 0));
    let state = common::people_state(&h).await;
    assert!(!tagged(&state, "g-000001") && !tagged(&state, "g-000002"));

    // A run stopped by the page cap decides nothing either.
    delete_customers(&h, &["g-000003"]).await;
    let capped = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_pages: 2,
            ..config()
        },
    );
    let id = capped
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&capped, &h).await;
    assert!(
        matches!(&outcome, Outcome::Failed(reason) if reason.contains("IBEX_SYNC_MAX_PAGES")),
        "{outcome:?}"
    );
    assert_eq!(capped.runs.get(id).await.unwrap().unwrap().counts.tagged, 0);
    assert!(!tagged(&common::people_state(&h).await, "g-000003"));

    // A complete run in one pass tags the three persons whose customers are gone, and only them; the next
    // complete run does not tag them again.
    let complete = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(
        (
            complete.counts.read,
            complete.counts.tagged,
            complete.counts.deleted
        ),
        (247, 3, 0),
        "{complete:?}"
    );
    let state = common::people_state(&h).await;
    for gone in ["g-000001", "g-000002", "g-000003"] {
        assert!(tagged(&state, gone), "{gone}: {:?}", person(&state, gone));
        assert_eq!(
            person(&state, gone).unwrap()["tags"],
            json!(["order-desk", TAG]),
            "the tag is added to the person's own"
        );
    }
    let tagged_count = state["persons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == TAG))
        })
        .count();
    assert_eq!(tagged_count, 3);
    assert_eq!(
        state["stats"]["requests"]["PATCH /people/2/persons"],
        json!(3),
        "one v2 partial update per gone person"
    );
    let again = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(again.counts.tagged, 0);

    // The history says who did what.
    let log = engine.controls.log(ACCOUNT, 10).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("resume", admin),
            ("pause", admin),
            ("resume", admin),
            ("pause", admin)
        ]
    );
    assert!(log
        .iter()
        .all(|e| e.direction.as_deref() == Some(TO_PEOPLE)));
    let status = panel.status(ACCOUNT).await.unwrap();
    assert!(status.paused.is_empty());
    assert_eq!(status.controls.len(), 4);
    assert!(
        status.controls[0].contains("ana.admin (U-ANA-7F21) resumed sync (partner → People)"),
        "{:?}",
        status.controls
    );
    assert_eq!(status.runs[0].tagged, 0);
    assert_eq!(status.runs[1].tagged, 3);
    assert!(
        status.deletes.as_deref().unwrap_or("").contains(TAG),
        "{:?}",
        status.deletes
    );
    h.finish().await;
}
on_both_backends!(pause_resume, pause_resume_and_deletes);

/// `on_delete = "delete"` deletes a gone customer's person only once the account turned it on.
async fn delete_when_opted_in(backend: Backend) {
    let h = start(backend, 50, &defined("on_delete = \"delete\"")).await;
    let engine = SyncEngine::new(&h.state, config());
    assert_eq!(sync_once(&engine, &h, TO_PEOPLE).await.counts.created, 48);
    delete_customers(&h, &["g-000001"]).await;

    let kept = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!((kept.counts.read, kept.counts.deleted), (49, 0));
    let state = common::people_state(&h).await;
    assert!(person(&state, "g-000001").is_some(), "not turned on: kept");
    assert_eq!(state["stats"]["deletes"], json!(0));

    h.configure(ACCOUNT, &[("people_sync_delete_on", "true")])
        .await;
    // The shop fails the run's first page: the run pauses before reading anything, so the attempt that resumes
    // it still reads the whole list in one pass, and decides.
    h.shop_faults(json!({"fail_next": 1000, "status": 503}))
        .await;
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(matches!(outcome, Outcome::Paused(_)), "{outcome:?}");
    h.shop_faults(json!({})).await;
    assert_eq!(run_to_end(&engine, &h).await, Outcome::Done);
    let deleted = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(deleted.attempts, 2);
    assert_eq!((deleted.counts.deleted, deleted.counts.tagged), (1, 0));
    let state = common::people_state(&h).await;
    assert!(person(&state, "g-000001").is_none());
    assert_eq!(state["persons"].as_array().unwrap().len(), 47);
    assert_eq!(state["stats"]["deletes"], json!(1));
    assert_eq!(
        sync_once(&engine, &h, TO_PEOPLE).await.counts.deleted,
        0,
        "deleted once"
    );
    h.finish().await;
}
on_both_backends!(delete_opt_in, delete_when_opted_in);

/// A person ibex itself wrote to People is not written back to the partner unchanged; a real change in People is.
async fn no_echo(backend: Backend) {
    let h = start(backend, 250, &common::test_definition()).await;
    let engine = SyncEngine::new(&h.state, config());
    let to = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(to.counts.created, 246);

    let back = sync_once(&engine, &h, FROM_PEOPLE).await;
    // Every person read (the last of each page once more: `#gte` its modifiedAt), none sent.
    assert!(back.counts.read >= 246, "{back:?}");
    assert_eq!(
        (
            back.counts.updated,
            back.counts.unchanged,
            back.counts.failed
        ),
        (0, back.counts.read, 0),
        "{back:?}"
    );
    assert_eq!(partner_writes(&h).await, 0, "nothing echoed to the partner");

    // Someone changes one person in People: exactly that one travels back.
    let r = client()
        .post(format!("{}/_sim/people/change", h.portal))
        .json(&json!({"externalId": "c-100", "customAttributes": {"loyaltyTier": "platinum"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let changed = sync_once(&engine, &h, FROM_PEOPLE).await;
    assert_eq!(changed.counts.updated, 1, "{changed:?}");
    assert_eq!(partner_writes(&h).await, 1);
    let writes: Vec<Value> = h
        .shop_requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "PATCH")
        .collect();
    assert_eq!(writes[0]["path"], "/customers/c-100");
    assert!(
        writes[0]["body"].as_str().unwrap().contains("platinum"),
        "{writes:?}"
    );
    h.finish().await;
}
on_both_backends!(echo, no_echo);

/// "Resync everything" forgets one direction's digests and checkpoints: its next run sends every record again.
async fn resync_sends_everything(backend: Backend) {
    let h = start(backend, 50, &common::test_definition()).await;
    let engine = SyncEngine::new(&h.state, config());
    assert_eq!(sync_once(&engine, &h, TO_PEOPLE).await.counts.created, 48);
    let before = upserts(&common::people_state(&h).await);
    assert_eq!(sync_once(&engine, &h, TO_PEOPLE).await.counts.unchanged, 48);
    assert_eq!(
        upserts(&common::people_state(&h).await),
        before,
        "an unchanged source sends nothing"
    );

    let by = "operator (cli:test)";
    let done = engine
        .controls
        .resync(ACCOUNT, TO_PEOPLE, by)
        .await
        .unwrap();
    assert_eq!((done.records_forgotten, done.runs_ended), (48, 0));
    let again = sync_once(&engine, &h, TO_PEOPLE).await;
    let state = common::people_state(&h).await;
    assert_eq!(upserts(&state), before + 1, "every record sent again");
    // People holds them all as sent: each comes back NOT_MODIFIED.
    assert_eq!(
        (
            again.counts.read,
            again.counts.unchanged,
            again.counts.failed
        ),
        (50, 48, 2)
    );

    // People → partner: nothing to send (ibex wrote what People holds), until its checkpoint and digests are
    // forgotten: then every person is read and sent.
    let back = sync_once(&engine, &h, FROM_PEOPLE).await;
    assert_eq!((back.counts.read, back.counts.updated), (48, 0));
    engine
        .controls
        .resync(ACCOUNT, FROM_PEOPLE, by)
        .await
        .unwrap();
    let resent = sync_once(&engine, &h, FROM_PEOPLE).await;
    assert_eq!((resent.counts.read, resent.counts.updated), (48, 48));
    assert_eq!(partner_writes(&h).await, 48);

    // An open run no worker holds is ended by a resync; one a worker holds refuses it.
    let queued = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let done = engine
        .controls
        .resync(ACCOUNT, TO_PEOPLE, by)
        .await
        .unwrap();
    assert_eq!(done.runs_ended, 1);
    let ended = engine.runs.get(queued).await.unwrap().unwrap();
    assert_eq!(ended.status, "failed");
    assert!(
        ended
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("ended by \"Resync everything\" (operator (cli:test))"),
        "{ended:?}"
    );
    engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let held = engine
        .runs
        .claim("another-instance", 60_000)
        .await
        .unwrap()
        .unwrap();
    let refused = engine.controls.resync(ACCOUNT, TO_PEOPLE, by).await;
    assert!(
        matches!(refused, Err(ControlError::Running(_))),
        "{refused:?}"
    );
    assert_eq!(
        engine.runs.get(held.id).await.unwrap().unwrap().status,
        "running"
    );
    let log = engine.controls.log(ACCOUNT, 10).await.unwrap();
    assert_eq!(log.len(), 3, "the refused resync is not logged: {log:?}");
    assert!(log.iter().all(|e| e.action == "resync" && e.actor == by));
    h.finish().await;
}
on_both_backends!(resync, resync_sends_everything);

async fn control(h: &Harness, session: &str, action: &str, direction: &str) -> (u16, Value) {
    server_fn(
        h,
        "sync_control",
        &[
            ("session", session),
            ("action", action),
            ("direction", direction),
        ],
    )
    .await
}

/// On the page, only an account's admins pause, resume and resync (403 for a user who may only look, with
/// nothing written); the history names the admin.
async fn only_admins_control(backend: Backend) {
    let h = Harness::start(backend).await;
    let (ana, bob) = (&USERS[0], &USERS[1]);
    assert_eq!(ana.account_key, bob.account_key);
    let account = ana.account_key;
    h.state
        .settings
        .store()
        .add_admin(account, ana.user_key, ana.username, "test")
        .await
        .unwrap();
    let controls = ibex::sync::controls::Controls::new(h.state.settings.store().clone());
    let bob_session = configuration_session(&h, bob.user_key).await;
    for (action, direction) in [
        ("pause", ""),
        ("resume", ""),
        ("resync", "to_people"),
        ("pause", "from_people"),
    ] {
        let (status, answer) = control(&h, &bob_session, action, direction).await;
        assert_eq!(status, 403, "{action}: {answer}");
    }
    assert!(controls.paused(account).await.unwrap().is_empty());
    assert!(controls.log(account, 10).await.unwrap().is_empty());

    let ana_session = configuration_session(&h, ana.user_key).await;
    let (status, answer) = control(&h, &ana_session, "pause", "").await;
    assert_eq!(status, 200, "{answer}");
    let paused = answer["Ok"]["paused"].as_array().unwrap();
    assert_eq!(paused.len(), 2, "both directions: {answer}");
    assert!(
        paused[0][1]
            .as_str()
            .unwrap()
            .contains("paused by ana.admin (U-ANA-7F21)"),
        "{answer}"
    );
    assert_eq!(
        answer["Ok"]["controls"][0]
            .as_str()
            .unwrap()
            .split_once(": ")
            .unwrap()
            .1,
        "ana.admin (U-ANA-7F21) paused sync"
    );
    // What the page cannot name is refused with the reason, nothing written.
    let (status, answer) = control(&h, &ana_session, "purge", "").await;
    assert_eq!(status, 200);
    assert!(answer["Err"]
        .as_str()
        .unwrap()
        .contains("pause, resume or resync"));
    let (_, answer) = control(&h, &ana_session, "resync", "sideways").await;
    assert!(answer["Err"]
        .as_str()
        .unwrap()
        .contains("no such sync direction"));
    let (status, answer) = control(&h, &ana_session, "resync", "from_people").await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Ok"]["controls"][0]
            .as_str()
            .unwrap()
            .ends_with("ana.admin (U-ANA-7F21) resynced everything (People → partner)"),
        "{answer}"
    );
    let (status, answer) = control(&h, &ana_session, "resume", "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["Ok"]["paused"].as_array().unwrap().is_empty());
    assert_eq!(controls.log(account, 10).await.unwrap().len(), 3);
    // Bob may still not look at it.
    let response = client()
        .post(format!("{}/api/load_sync", h.ibex))
        .form(&[("session", bob_session.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    h.finish().await;
}
on_both_backends!(admins_only, only_admins_control);

/// `ibex sync pause|resume|resync ACCOUNT [--direction …]` against the same database, recorded as the operator's.
async fn cli_controls(backend: Backend) {
    let h = Harness::start(backend).await;
    let ibex = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ibex"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "ops")
            .env("DATABASE_URL", &h.db.url)
            .env("IBEX_SIGNING_SECRETS", common::SECRET)
            .env("IBEX_ENCRYPTION_KEY", &h.encryption_key)
            .env("IBEX_LOG", "warn")
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let controls = ibex::sync::controls::Controls::new(h.state.settings.store().clone());

    let out = ibex(&["sync", "pause", ACCOUNT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is paused (partner → People and People → partner)"),
        "{}",
        text(&out.stdout)
    );
    let paused = controls.paused(ACCOUNT).await.unwrap();
    assert_eq!(paused.len(), 2);
    assert!(paused.iter().all(|p| p.by == "operator (cli:ops)"));

    let out = ibex(&["sync", "resume", ACCOUNT, "--direction", "to_people"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paused = controls.paused(ACCOUNT).await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].direction, FROM_PEOPLE);
    // People → partner paused: a Moments flow's call writes nothing either, and says why.
    let (status, body) = h
        .post("/sync/people-changed", r#"{"identifier": "c-100"}"#)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("sync_paused")),
        "{body}"
    );

    let out = ibex(&["sync", "resync", ACCOUNT, "--direction", "from_people"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("the next run sends everything"),
        "{}",
        text(&out.stdout)
    );

    let out = ibex(&["sync", "pause", ACCOUNT, "--direction", "sideways"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("sideways"),
        "{}",
        text(&out.stderr)
    );

    let log = controls.log(ACCOUNT, 10).await.unwrap();
    let lines: Vec<(&str, Option<&str>)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.direction.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [
            ("resync", Some(FROM_PEOPLE)),
            ("resume", Some(TO_PEOPLE)),
            ("pause", None)
        ]
    );
    assert!(log.iter().all(|e| e.actor == "operator (cli:ops)"));
    // Another account's controls are its own.
    assert!(controls.paused("OTHER").await.unwrap().is_empty());
    h.finish().await;
}
on_both_backends!(cli, cli_controls);

/// A partner whose `/customers` answers its first page with `body`, and every later one with no customers (and
/// `body`'s total): the shop at another address, as an admin who switched the partner's URL would reach it.
async fn partner_answering(body: Value) -> String {
    let app = axum::Router::new().route(
        "/customers",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let body = match q.get("page").map(String::as_str) {
                    Some("1") | None => body.clone(),
                    _ => json!({"customers": [], "total": body["total"]}),
                };
                async move { axum::Json(body) }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The account's partner now at `base` (a new address takes its secrets again).
async fn switch_partner(h: &Harness, base: &str) {
    h.configure(
        ACCOUNT,
        &[
            ("api_base_url", base),
            ("api_key", common::SHOP_KEY),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
}

fn tagged_count(state: &Value) -> usize {
    state["persons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == TAG))
        })
        .count()
}

/// A partner whose answer holds no records (no list, or an empty one, after the admin switched its address)
/// takes nothing for gone: a run that read no record tags and deletes nothing, and says why; nor does one that
/// read fewer records than the partner says it has. (`{}` lacks the required `total`: the call fails and the run
/// pauses.)
async fn empty_answers_take_nothing_for_gone(backend: Backend) {
    let h = start(
        backend,
        20,
        &defined(&format!("on_delete = \"tag\"\ndelete_tag = \"{TAG}\"")),
    )
    .await;
    // Past the share of records gone a run may take (its own test below): each answer here is caught alone.
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            delete_max_percent: 100,
            ..config()
        },
    );
    let first = sync_once(&engine, &h, TO_PEOPLE).await;
    assert!(first.counts.created > 10, "{first:?}");
    for (answer, read) in [
        (json!({"total": 0}), 0),
        (json!({"customers": [], "total": 0}), 0),
        (
            json!({"customers": [{"id": "c-100", "name": "Ana Horvat"}], "total": 20}),
            1,
        ),
    ] {
        switch_partner(&h, &partner_answering(answer.clone()).await).await;
        let id = engine
            .runs
            .enqueue(ACCOUNT, TO_PEOPLE, "test")
            .await
            .unwrap();
        let outcome = run_to_end(&engine, &h).await;
        let run = engine.runs.get(id).await.unwrap().unwrap();
        assert_eq!(
            (
                run.status.as_str(),
                run.counts.read,
                run.counts.tagged,
                run.counts.deleted
            ),
            ("done", read, 0, 0),
            "{answer}: {outcome:?} {run:?}"
        );
        assert!(
            run.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("deletes skipped:")),
            "{answer}: {run:?}"
        );
        assert_eq!(tagged_count(&common::people_state(&h).await), 0, "{answer}");
    }
    // `{}` itself is not an answer of this function (its `total` is required): the run pauses, deciding nothing.
    switch_partner(&h, &partner_answering(json!({})).await).await;
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(matches!(outcome, Outcome::Paused(_)), "{outcome:?}");
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!((run.counts.tagged, run.counts.deleted), (0, 0), "{run:?}");
    assert_eq!(tagged_count(&common::people_state(&h).await), 0);
    h.finish().await;
}
on_both_backends!(empty_answers, empty_answers_take_nothing_for_gone);

/// More records gone than `IBEX_SYNC_DELETE_MAX_PERCENT` of those synced (10 %) is taken for a partner's mistake:
/// the run tags nothing and says why; a small deletion is tagged (`pause_resume` above).
async fn too_many_gone_is_refused(backend: Backend) {
    let h = start(
        backend,
        50,
        &defined(&format!("on_delete = \"tag\"\ndelete_tag = \"{TAG}\"")),
    )
    .await;
    let engine = SyncEngine::new(&h.state, config());
    assert_eq!(sync_once(&engine, &h, TO_PEOPLE).await.counts.created, 48);
    let gone: Vec<String> = (11..=20).map(|n| format!("g-{n:06}")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    delete_customers(&h, &gone).await;
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert!(
        matches!(&outcome, Outcome::DoneWithNote(note) if note.starts_with("deletes skipped:")),
        "{outcome:?}"
    );
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.counts.read, run.counts.tagged),
        ("done", 40, 0),
        "{run:?}"
    );
    let note = run.last_error.clone().unwrap_or_default();
    assert!(
        note.starts_with("deletes skipped:")
            && note.contains("10 %")
            && note.contains("IBEX_SYNC_DELETE_MAX_PERCENT"),
        "{note}"
    );
    assert_eq!(tagged_count(&common::people_state(&h).await), 0);
    // The operator who raised the share lets the next run decide.
    let raised = SyncEngine::new(
        &h.state,
        SyncConfig {
            delete_max_percent: 50,
            ..config()
        },
    );
    let run = sync_once(&raised, &h, TO_PEOPLE).await;
    assert!(run.counts.tagged > 0, "{run:?}");
    assert_eq!(run.last_error, None);
    h.finish().await;
}
on_both_backends!(too_many_gone, too_many_gone_is_refused);

/// A record is marked seen under the key it is written under: with two email mappings, a record whose email is
/// the second one's is written under it, and not taken for gone by the next run.
async fn seen_under_the_written_key(backend: Backend) {
    let definition = defined(&format!("on_delete = \"tag\"\ndelete_tag = \"{TAG}\""));
    assert!(definition.contains("identifier = \"EXTERNAL_ID\""));
    let definition = format!(
        "{}\n[[sync.to_people.fields]]\nperson = \"email\"\nitem = \"name\"\n",
        definition.replace("identifier = \"EXTERNAL_ID\"", "identifier = \"EMAIL\"")
    );
    let h = start(backend, 3, &definition).await;
    let partner = partner_answering(json!({"total": 2, "customers": [
        {"id": "c-1", "name": "kim@example.com"},
        {"id": "c-2", "name": "", "email": "lee@example.com"},
    ]}))
    .await;
    switch_partner(&h, &partner).await;
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            delete_max_percent: 100,
            ..config()
        },
    );
    let first = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(
        (first.counts.read, first.counts.created, first.counts.failed),
        (2, 2, 0),
        "{first:?}"
    );
    let again = sync_once(&engine, &h, TO_PEOPLE).await;
    assert_eq!(
        (again.counts.read, again.counts.tagged, again.counts.failed),
        (2, 0, 0),
        "{again:?}"
    );
    assert_eq!(tagged_count(&common::people_state(&h).await), 0);
    // A record still in the source whose email cannot be derived now: its person, known by the old email, is not
    // taken for gone; the run decides nothing and says why.
    let partner = partner_answering(json!({"total": 2, "customers": [
        {"id": "c-1", "name": "kim@example.com"},
        {"id": "c-2", "name": "", "email": ""},
    ]}))
    .await;
    switch_partner(&h, &partner).await;
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        (run.counts.read, run.counts.tagged),
        (2, 0),
        "{outcome:?} {run:?}"
    );
    assert!(
        run.last_error.as_deref().is_some_and(
            |e| e.starts_with("deletes skipped: the run read 1 record(s) whose EMAIL cannot")
        ),
        "{run:?}"
    );
    assert_eq!(tagged_count(&common::people_state(&h).await), 0);
    h.finish().await;
}
on_both_backends!(seen_key, seen_under_the_written_key);

/// A Moments call signed with a key linked to another account (`ibex settings link`) is held by that account's
/// pause, as its runs are.
async fn linked_key_is_paused_with_its_account(backend: Backend) {
    let h = start(backend, 3, &defined("")).await;
    let signed_key = "SIGNED-KEY-OF-ACCT-1";
    h.state
        .settings
        .store()
        .link(signed_key, ACCOUNT, "op")
        .await
        .unwrap();
    let controls = ibex::sync::controls::Controls::new(h.state.settings.store().clone());
    controls
        .pause(ACCOUNT, &[FROM_PEOPLE], "ana.admin (U-ANA-7F21)")
        .await
        .unwrap();
    let body = br#"{"identifier": "c-100"}"#;
    let (status, answer) = h
        .send(
            reqwest::Method::POST,
            "/sync/people-changed",
            body,
            body,
            |m| {
                let ts = m["x-ib-exchange-req-timestamp"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                m.insert("x-ib-exchange-req-accountkey", signed_key.parse().unwrap());
                m.insert(
                    "x-ib-exchange-req-signature",
                    ibex::signed::signature::sign(common::SECRET, &ts, body)
                        .parse()
                        .unwrap(),
                );
            },
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("sync_paused")),
        "{answer}"
    );
    h.finish().await;
}
on_both_backends!(linked_pause, linked_key_is_paused_with_its_account);

/// On PostgreSQL, a resync that meets a worker's claim in flight (the claim's transaction not yet committed) waits
/// for it and then refuses, the run being held, instead of forgetting the digests under a run that goes on. The
/// race is PostgreSQL's only: SQLite has one writer at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_waits_for_a_claim_in_flight() {
    let h = start(Backend::Postgres, 3, &defined("")).await;
    let store = h.state.settings.store().clone();
    let runs = Runs::new(store.clone());
    let id = runs.enqueue(ACCOUNT, TO_PEOPLE, "test").await.unwrap();
    let mut claim = store.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE sync_runs SET status = 'running', lease_owner = 'worker', lease_until = $1 WHERE id = $2",
    )
    .bind(app::settings::store::now_ms() + 60_000)
    .bind(id)
    .execute(&mut *claim)
    .await
    .unwrap();
    let controls = ibex::sync::controls::Controls::new(store.clone());
    let resync = tokio::spawn(async move { controls.resync(ACCOUNT, TO_PEOPLE, "ana").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    claim.commit().await.unwrap();
    let resynced = tokio::time::timeout(Duration::from_secs(20), resync)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(resynced, Err(ControlError::Running(_))),
        "{resynced:?}"
    );
    let run = runs.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, "running", "{run:?}");
    h.finish().await;
}

/// The delete opt-in is read again before the deletes: an admin who turns it off while the run reads the source
/// has nothing deleted by that run, which says so.
async fn delete_opt_in_read_again(backend: Backend) {
    let h = start(backend, 50, &defined("on_delete = \"delete\"")).await;
    h.configure(ACCOUNT, &[("people_sync_delete_on", "true")])
        .await;
    let engine = SyncEngine::new(&h.state, config());
    assert_eq!(sync_once(&engine, &h, TO_PEOPLE).await.counts.created, 48);
    delete_customers(&h, &["g-000001"]).await;
    // Turned off while the run reads its first record (after the run read its settings).
    let mut engine = SyncEngine::new(&h.state, config());
    let (state, once) = (
        h.state.clone(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    engine.record_hook = Some(std::sync::Arc::new(move |_, _| {
        if !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let changes = std::collections::BTreeMap::from([(
                "people_sync_delete_on".to_owned(),
                "false".to_owned(),
            )]);
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(state.settings.update(ACCOUNT, None, &changes, "test"))
            })
            .unwrap();
        }
    }));
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    let run = engine.runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.counts.read, run.counts.deleted),
        ("done", 49, 0),
        "{outcome:?} {run:?}"
    );
    let state = common::people_state(&h).await;
    assert!(person(&state, "g-000001").is_some());
    assert_eq!(state["stats"]["deletes"], json!(0));
    h.finish().await;
}
on_both_backends!(delete_opt_in_again, delete_opt_in_read_again);

/// An admin's pause does not count against a run's time bound: a run held longer than `IBEX_SYNC_MAX_RUN_SECS`
/// goes on when resumed.
async fn pause_not_counted(backend: Backend) {
    let h = start(backend, 20, &defined("")).await;
    let engine = SyncEngine::new(
        &h.state,
        SyncConfig {
            max_run: Duration::from_secs(1),
            ..config()
        },
    );
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    engine
        .controls
        .pause(ACCOUNT, &[TO_PEOPLE], "ana")
        .await
        .unwrap();
    // As a run the pause stopped at a page boundary leaves it: started, waiting paused.
    sqlx::query("UPDATE sync_runs SET status = 'paused', started_at = $1 WHERE id = $2")
        .bind(app::settings::store::now_ms())
        .bind(id)
        .execute(h.state.settings.store().pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine
        .controls
        .resume(ACCOUNT, &[TO_PEOPLE], "ana")
        .await
        .unwrap();
    let outcome = run_to_end(&engine, &h).await;
    assert_eq!(outcome, Outcome::Done);
    h.finish().await;
}
on_both_backends!(pause_not_counted_in_run_time, pause_not_counted);
