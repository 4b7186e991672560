//! Lifecycle webhooks to the partner, end to end on SQLite and PostgreSQL: events written with the changes they
//! report, delivered signed (Standard Webhooks) to the simulator's receiver, which verifies every attempt; retried
//! under the same id; shared by two instances without double sending; surviving a kill -9 of the instance that
//! was sending; held to the partner egress policy; and never carrying a secret, in the payload or in the
//! operator's list.

mod common;

use app::settings::outbox::{EventKind, Outbox, OutboxEvent};
use clap::Parser;
use common::{client, Backend, Harness, ACCOUNT, SECRET, SHOP_KEY};
use ibex::cli::config::Cli;
use ibex::state::AppState;
use ibex::webhooks::delivery::{Attempt, Deliverer};
use ibex_sim::webhooks::{Delivery, Faults};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The partner's receiver (the simulator's), on a loopback port: its base URL.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ibex_sim::webhooks::router(WEBHOOK_SECRET).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn webhook_args(receiver: &str) -> Vec<String> {
    [
        "--allow-loopback-partners",
        "--webhook-url",
        &format!("{receiver}/webhooks"),
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-backoff-ms",
        "100",
        "--webhook-poll-ms",
        "50",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

async fn start(backend: Backend, receiver: &str) -> Harness {
    let args = webhook_args(receiver);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Harness::start_with(backend, &args).await
}

async fn deliveries(receiver: &str) -> Vec<Delivery> {
    client()
        .get(format!("{receiver}/_sim/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn faults(receiver: &str, faults: Faults) {
    let response = client()
        .post(format!("{receiver}/_sim/webhooks/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

fn outbox(h: &Harness) -> Outbox {
    Outbox::new(h.state.settings.store().clone())
}

async fn events(h: &Harness) -> Vec<OutboxEvent> {
    outbox(h).list(None, None, 1000).await.unwrap()
}

/// Waits until every event in the outbox is delivered (at most `within`), and returns them.
async fn all_delivered(h: &Harness, within: Duration) -> Vec<OutboxEvent> {
    let started = Instant::now();
    loop {
        let events = events(h).await;
        if !events.is_empty() && events.iter().all(|e| e.state == "delivered") {
            return events;
        }
        assert!(
            started.elapsed() < within,
            "not all delivered within {within:?}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The receiver's accepted deliveries (verified, answered 2xx) of `id`.
fn accepted<'a>(seen: &'a [Delivery], id: &str) -> Vec<&'a Delivery> {
    seen.iter()
        .filter(|d| d.webhook_id.as_deref() == Some(id) && d.answered == Some(204))
        .collect()
}

async fn delivered_once_after_two_failures(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    // The harness saved ACCOUNT's settings: one event, written with the save, nothing sent yet (no worker).
    let queued = events(&h).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    let event = &queued[0];
    assert_eq!(
        (
            event.event_type.as_str(),
            event.state.as_str(),
            event.attempts
        ),
        ("account.configured", "pending", 0)
    );
    assert!(deliveries(&receiver).await.is_empty());

    faults(
        &receiver,
        Faults {
            fail_next: 2,
            status: 503,
            delay_ms: 0,
        },
    )
    .await;
    let worker = Deliverer::for_instance(&h.state).unwrap().spawn();
    let done = all_delivered(&h, Duration::from_secs(30)).await;
    // Nothing more comes once it is delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(worker);

    assert_eq!(done[0].attempts, 3);
    let seen = deliveries(&receiver).await;
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for d in &seen {
        assert!(d.verified, "every attempt's signature verifies: {d:?}");
        assert_eq!(d.webhook_id.as_deref(), Some(event.event_id.as_str()));
        assert!(!d.duplicate);
    }
    let answers: Vec<Option<u16>> = seen.iter().map(|d| d.answered).collect();
    assert_eq!(answers, [Some(503), Some(503), Some(204)]);
    assert_eq!(accepted(&seen, &event.event_id).len(), 1);

    // The payload: Standard Webhooks' shape, what changed, who changed it, never a value.
    let body = &seen[2].event;
    assert_eq!(body["type"], "account.configured");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{timestamp}"
    );
    let data = &body["data"];
    assert_eq!(data["account_key"], ACCOUNT);
    assert_eq!(data["version"], 1);
    assert_eq!(data["changed_by"], "test");
    let fields: Vec<&str> = data["changed_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(fields.contains(&"api_key"), "{fields:?}");
    let text = body.to_string();
    assert!(!text.contains(SHOP_KEY) && !text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    let metrics = h.state.metrics.render();
    assert!(
        metrics.contains("ibex_webhook_attempts_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ibex_webhook_attempts_total{outcome=\"failed\"} 2"));
    h.finish().await;
}
on_both_backends!(
    an_event_is_delivered_once_to_a_receiver_that_fails_twice,
    delivered_once_after_two_failures
);

async fn two_instances(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    for n in 0..19 {
        h.configure(
            &format!("ACCT-two-{n}"),
            &[("api_base_url", h.shop.as_str()), ("api_key", "k")],
        )
        .await;
    }
    assert_eq!(events(&h).await.len(), 20);
    // Slow answers, so both instances' lanes are busy at once.
    faults(
        &receiver,
        Faults {
            fail_next: 0,
            status: 503,
            delay_ms: 100,
        },
    )
    .await;
    let second = AppState::build(&Cli::try_parse_from(h.args.clone()).unwrap().options)
        .await
        .unwrap();
    let first_worker = Deliverer::for_instance(&h.state).unwrap().spawn();
    let second_worker = Deliverer::for_instance(&second).unwrap().spawn();
    let done = all_delivered(&h, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((first_worker, second_worker));

    let seen = deliveries(&receiver).await;
    assert_eq!(seen.len(), 20, "each event sent once: {seen:#?}");
    for event in &done {
        assert_eq!(event.attempts, 1, "{event:?}");
        let got = accepted(&seen, &event.event_id);
        assert_eq!(got.len(), 1, "{}: {got:?}", event.event_id);
        assert!(got[0].verified && !got[0].duplicate);
    }
    second.settings.store().close().await;
    h.finish().await;
}
on_both_backends!(two_instances_do_not_both_deliver_an_event, two_instances);

/// `ibex` as a separate process against the harness's database, with the webhook configuration.
fn ibex_command(h: &Harness, receiver: &str) -> Command {
    let definition =
        std::env::temp_dir().join(format!("ibex-hooks-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&definition, common::test_definition()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ibex"));
    command
        .env("DATABASE_URL", &h.db.url)
        .env("IBEX_APP", &definition)
        .env("IBEX_SIGNING_SECRETS", SECRET)
        .env("IBEX_ENCRYPTION_KEY", &h.encryption_key)
        .env("IBEX_ALLOW_LOOPBACK_PARTNERS", "true")
        .env("IBEX_WEBHOOK_URL", format!("{receiver}/webhooks"))
        .env("IBEX_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("IBEX_LOG", "warn");
    command
}

async fn kill_between_change_and_delivery(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    // The change, committed by a process that ends right after (the CLI, which never delivers).
    let saved = ibex_command(&h, &receiver)
        .args(["settings", "set", ACCOUNT, "currency=USD"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    let queued = events(&h).await;
    assert_eq!(queued.len(), 2, "{queued:#?}");
    assert!(queued
        .iter()
        .all(|e| e.state == "pending" && e.attempts == 0));

    // A real `ibex serve` takes the events and is killed (SIGKILL) while its attempts are in the receiver's
    // hands: no answer, no outcome written, its leases left to run out.
    faults(
        &receiver,
        Faults {
            fail_next: 0,
            status: 503,
            delay_ms: 60_000,
        },
    )
    .await;
    let mut serving = ibex_command(&h, &receiver)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--sync-worker",
            "false",
            "--webhook-timeout-secs",
            "3",
            "--webhook-poll-ms",
            "50",
        ])
        .env("IBEX_OAUTH_CLIENT_ID", "hooks-test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while deliveries(&receiver)
        .await
        .iter()
        .filter(|d| d.verified && d.answered.is_none())
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the instance did not send"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serving.kill().unwrap();
    serving.wait().unwrap();
    for event in events(&h).await {
        assert_eq!((event.state.as_str(), event.attempts), ("pending", 1));
    }

    // Another instance delivers both once the dead one's leases (3 s + 5 s) have run out, under the same ids.
    faults(&receiver, Faults::default()).await;
    let worker = Deliverer::for_instance(&h.state).unwrap().spawn();
    let done = all_delivered(&h, Duration::from_secs(40)).await;
    drop(worker);
    let seen = deliveries(&receiver).await;
    for event in &done {
        assert_eq!(event.attempts, 2);
        assert_eq!(accepted(&seen, &event.event_id).len(), 1, "{seen:#?}");
        let sent = seen
            .iter()
            .filter(|d| d.webhook_id.as_deref() == Some(event.event_id.as_str()))
            .count();
        assert_eq!(sent, 2, "the killed attempt, then the delivery: {seen:#?}");
    }
    let types: Vec<&str> = done.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["account.configured", "account.configured"]);
    h.finish().await;
}
on_both_backends!(
    a_kill_between_the_change_and_the_delivery_still_delivers,
    kill_between_change_and_delivery
);

async fn egress(backend: Backend) {
    let receiver = receiver().await;
    let h = Harness::start(backend).await;
    let port = receiver.rsplit(':').next().unwrap();
    // The harness's own command line without its loopback permission.
    let base: Vec<String> = h
        .args
        .iter()
        .filter(|a| *a != "--allow-loopback-partners")
        .cloned()
        .collect();
    let with = |url: &str, extra: &[&str]| {
        let mut args = base.clone();
        args.extend(
            ["--webhook-url", url, "--webhook-secret", WEBHOOK_SECRET]
                .iter()
                .chain(extra)
                .map(|a| a.to_string()),
        );
        Cli::try_parse_from(args).unwrap().options
    };

    // A loopback address written out is refused at start-up, naming the variable.
    let refused = AppState::build(&with(&format!("http://127.0.0.1:{port}/webhooks"), &[])).await;
    let message = refused.err().expect("refused").to_string();
    assert!(
        message.contains("IBEX_WEBHOOK_URL") && message.contains("loopback"),
        "{message}"
    );

    // A name that resolves to loopback passes the start-up check and is refused where ibex connects.
    let named = AppState::build(&with(&format!("http://localhost:{port}/webhooks"), &[]))
        .await
        .unwrap();
    let changes = [("currency".to_owned(), "EUR".to_owned())].into();
    named
        .settings
        .update(ACCOUNT, None, &changes, "test")
        .await
        .unwrap();
    let worker = Deliverer::for_instance(&named).unwrap();
    let (event, attempt) = worker.deliver_once().await.unwrap().unwrap();
    assert!(matches!(attempt, Attempt::Retry(_)), "{attempt:?}");
    let after = worker.outbox.get(&event.event_id).await.unwrap().unwrap();
    let why = after.last_error.unwrap_or_default();
    assert!(
        why.contains("loopback") && why.contains("not allowed"),
        "{why}"
    );
    assert!(deliveries(&receiver).await.is_empty(), "nothing reached it");
    named.settings.store().close().await;

    // Allowed by the operator, the same address is delivered to.
    let allowed = AppState::build(&with(
        &format!("http://localhost:{port}/webhooks"),
        &["--allow-loopback-partners"],
    ))
    .await
    .unwrap();
    let worker = Deliverer::for_instance(&allowed).unwrap();
    // Due again at once: its retry time is moved up, as `ibex webhooks replay` does.
    worker.outbox.replay(&event.event_id).await.unwrap();
    let (_, attempt) = worker.deliver_once().await.unwrap().unwrap();
    assert_eq!(attempt, Attempt::Delivered);
    assert_eq!(
        accepted(&deliveries(&receiver).await, &event.event_id).len(),
        1
    );
    allowed.settings.store().close().await;
    h.finish().await;
}
on_both_backends!(
    the_egress_policy_refuses_a_loopback_webhook_unless_allowed,
    egress
);

async fn no_secrets_and_replay(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    // A Custom cards token issued: an event without the token, its digest or its hint.
    let issued = app::settings::card_tokens::issue();
    h.state
        .settings
        .store()
        .replace_card_token(ACCOUNT, &issued.digest, &issued.hint, "admin-1")
        .await
        .unwrap();
    let queued = events(&h).await;
    assert_eq!(queued.len(), 2);
    let token_event = queued
        .iter()
        .find(|e| e.event_type == "card_token.issued")
        .unwrap();
    let payload: Value = serde_json::from_str(&token_event.payload).unwrap();
    assert_eq!(payload["data"]["account_key"], ACCOUNT);
    assert_eq!(payload["data"]["issued_by"], "admin-1");
    for event in &queued {
        for secret in [
            SHOP_KEY,
            issued.token.as_str(),
            issued.digest.as_str(),
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!event.payload.contains(secret), "{}", event.payload);
        }
    }

    // The endpoint refuses one attempt (its answer quoted in the last error).
    faults(
        &receiver,
        Faults {
            fail_next: 1,
            status: 401,
            delay_ms: 0,
        },
    )
    .await;
    let worker = Deliverer::for_instance(&h.state).unwrap();
    let (failed, attempt) = worker.deliver_once().await.unwrap().unwrap();
    assert!(matches!(attempt, Attempt::Retry(_)));
    assert_eq!(failed.event_type, "account.configured");
    let (sent, attempt) = worker.deliver_once().await.unwrap().unwrap();
    assert_eq!(
        (sent.event_type.as_str(), attempt),
        ("card_token.issued", Attempt::Delivered)
    );

    let list = ibex_command(&h, &receiver)
        .args(["webhooks", "list"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8(list.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&failed.event_id))
        .unwrap();
    assert!(
        line.contains("pending") && line.contains("1 attempt(s)") && line.contains("HTTP 401"),
        "{line}"
    );
    for secret in [
        SHOP_KEY,
        issued.token.as_str(),
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    // Narrowed to an account and a state; another account's events are not listed.
    for (account, state, expected) in [
        (ACCOUNT, "pending", vec![failed.event_id.as_str()]),
        (ACCOUNT, "delivered", vec![sent.event_id.as_str()]),
        ("ACCT-other", "pending", vec![]),
    ] {
        let narrowed = ibex_command(&h, &receiver)
            .args(["webhooks", "list", "--account", account, "--state", state])
            .output()
            .unwrap();
        let text = String::from_utf8(narrowed.stdout).unwrap();
        let ids: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("msg_"))
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        assert_eq!(ids, expected, "{account} {state}: {text}");
    }

    // Delivered, then replayed: sent again under the same id, which the receiver recognises.
    let worker_task = worker.clone().spawn();
    all_delivered(&h, Duration::from_secs(30)).await;
    let replay = ibex_command(&h, &receiver)
        .args(["webhooks", "replay", &token_event.event_id])
        .output()
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    let started = Instant::now();
    loop {
        let seen = deliveries(&receiver).await;
        let got = accepted(&seen, &token_event.event_id);
        if got.len() == 2 {
            assert!(!got[0].duplicate && got[1].duplicate);
            assert_eq!(got[0].event, got[1].event, "the same body both times");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{seen:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(worker_task);
    let unknown = ibex_command(&h, &receiver)
        .args(["webhooks", "replay", "msg_nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    h.finish().await;
}
on_both_backends!(
    no_secret_in_the_payload_nor_the_list_and_replay_keeps_the_id,
    no_secrets_and_replay
);

async fn sync_runs_report(backend: Backend) {
    use ibex::sync::runs::{Runs, TO_PEOPLE};
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    let runs = Runs::new(h.state.settings.store().clone());
    let id = runs.enqueue(ACCOUNT, TO_PEOPLE, "test").await.unwrap();
    runs.claim("owner-1", 60_000).await.unwrap().unwrap();
    assert!(runs.finish(id, "owner-1", "done", None).await.unwrap());
    let id2 = runs.enqueue(ACCOUNT, TO_PEOPLE, "test").await.unwrap();
    runs.claim("owner-1", 60_000).await.unwrap().unwrap();
    // A finish by someone who no longer holds the run writes nothing, event included.
    assert!(!runs
        .finish(id2, "owner-2", "failed", Some("x"))
        .await
        .unwrap());
    assert!(runs
        .finish(id2, "owner-1", "failed", Some("People refused the API key"))
        .await
        .unwrap());
    let events = events(&h).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "sync.run.failed",
            "sync.run.succeeded",
            "account.configured"
        ]
    );
    let failed: Value = serde_json::from_str(&events[0].payload).unwrap();
    let data = &failed["data"];
    assert_eq!(data["run_id"], id2);
    assert_eq!(data["direction"], TO_PEOPLE);
    assert_eq!(data["status"], "failed");
    assert_eq!(data["error"], "People refused the API key");
    assert_eq!(data["counts"]["read"], 0);
    assert_eq!(data["account_key"], ACCOUNT);
    let succeeded: Value = serde_json::from_str(&events[1].payload).unwrap();
    assert_eq!(succeeded["data"]["run_id"], id);
    assert_eq!(succeeded["data"]["status"], "done");
    h.finish().await;
}
on_both_backends!(a_sync_run_that_ends_writes_its_event, sync_runs_report);

async fn off_without_endpoint(backend: Backend) {
    let h = Harness::start(backend).await;
    h.configure(ACCOUNT, &[("currency", "USD")]).await;
    let store = h.state.settings.store();
    let credentials = store
        .enqueue_event(
            ACCOUNT,
            EventKind::CredentialsFailed,
            json!({"source": "partner", "status": 401}),
        )
        .await
        .unwrap();
    assert_eq!(credentials, None);
    assert!(events(&h).await.is_empty(), "no endpoint, no events");
    assert!(Deliverer::for_instance(&h.state).is_none());
    h.finish().await;
}
on_both_backends!(nothing_is_written_without_an_endpoint, off_without_endpoint);

async fn credentials_events(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    let store = h.state.settings.store();
    // On its own, or inside a caller's transaction together with what it reports.
    let failed = store
        .enqueue_event(
            ACCOUNT,
            EventKind::CredentialsFailed,
            json!({"source": "people", "status": 403}),
        )
        .await
        .unwrap()
        .unwrap();
    // Rolled back with its transaction: no event for a change that did not happen. (One write transaction at a
    // time: SQLite has one writer.)
    let mut rolled_back = store.pool().begin().await.unwrap();
    app::settings::outbox::enqueue(
        &mut rolled_back,
        ACCOUNT,
        EventKind::CredentialsRecovered,
        json!({}),
    )
    .await
    .unwrap();
    drop(rolled_back);
    let mut tx = store.pool().begin().await.unwrap();
    let recovered = app::settings::outbox::enqueue(
        &mut tx,
        ACCOUNT,
        EventKind::CredentialsRecovered,
        json!({"source": "people", "status": 200}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let worker = Deliverer::for_instance(&h.state).unwrap().spawn();
    let done = all_delivered(&h, Duration::from_secs(30)).await;
    drop(worker);
    assert_eq!(done.len(), 3, "{done:#?}");
    let seen = deliveries(&receiver).await;
    for (id, kind, status) in [
        (&failed, "account.credentials_failed", 403),
        (&recovered, "account.credentials_recovered", 200),
    ] {
        let got = accepted(&seen, id);
        assert_eq!(got.len(), 1, "{seen:#?}");
        assert_eq!(got[0].event["type"], kind);
        assert_eq!(got[0].event["data"]["source"], "people");
        assert_eq!(got[0].event["data"]["status"], status);
        assert_eq!(got[0].event["data"]["account_key"], ACCOUNT);
    }
    h.finish().await;
}
on_both_backends!(
    credentials_events_are_written_alone_or_in_a_transaction,
    credentials_events
);

async fn given_up(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    faults(
        &receiver,
        Faults {
            fail_next: 1000,
            status: 500,
            delay_ms: 0,
        },
    )
    .await;
    // An instance whose retry window is one second.
    let mut args = h.args.clone();
    args.extend(["--webhook-retry-secs".to_owned(), "1".to_owned()]);
    let state = AppState::build(&Cli::try_parse_from(args).unwrap().options)
        .await
        .unwrap();
    let worker = Deliverer::for_instance(&state).unwrap();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    loop {
        match worker.deliver_once().await.unwrap() {
            Some((_, Attempt::Dead)) => break,
            Some((_, attempt)) => outcomes.push(attempt),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{outcomes:?}");
    }
    assert!(
        outcomes.iter().all(|a| matches!(a, Attempt::Retry(_))),
        "{outcomes:?}"
    );
    let event = &events(&h).await[0];
    assert_eq!(event.state, "dead");
    assert_eq!(usize::try_from(event.attempts).unwrap(), outcomes.len() + 1);
    assert!(event.last_error.as_deref().unwrap().contains("HTTP 500"));
    // The receiver saw each attempt, and none after the window had passed.
    let seen = deliveries(&receiver).await;
    assert_eq!(seen.len(), outcomes.len() + 1);
    let metrics = state.metrics.render();
    assert!(
        metrics.contains("ibex_webhook_attempts_total{outcome=\"dead\"} 1"),
        "{metrics}"
    );
    // Nothing more is tried; replayed, it goes out again under its id.
    assert!(worker.deliver_once().await.unwrap().is_none());
    faults(&receiver, Faults::default()).await;
    let replayed = ibex_command(&h, &receiver)
        .args(["webhooks", "replay", &event.event_id])
        .output()
        .unwrap();
    assert!(replayed.status.success(), "{replayed:?}");
    let (again, attempt) = worker.deliver_once().await.unwrap().unwrap();
    assert_eq!(
        (again.event_id.as_str(), again.attempts, attempt),
        (event.event_id.as_str(), 1, Attempt::Delivered)
    );
    state.settings.store().close().await;
    h.finish().await;
}
on_both_backends!(an_event_is_given_up_after_its_retry_window, given_up);

async fn real_sync_run(backend: Backend) {
    use ibex::sync::engine::{Outcome, SyncEngine};
    use ibex::sync::runs::TO_PEOPLE;
    let receiver = receiver().await;
    let args = webhook_args(&receiver);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The seeded three customers and 20 made up, one page.
    let h = Harness::start_with_shop(backend, &args, 20).await;
    client()
        .post(format!("{}/_sim/people", h.portal))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 0}))
        .send()
        .await
        .unwrap();
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    let mut config = h.state.sync.clone();
    config.allow_loopback = true;
    let engine = SyncEngine::new(&h.state, config);
    let id = engine
        .runs
        .enqueue(ACCOUNT, TO_PEOPLE, "test")
        .await
        .unwrap();
    let (run, outcome) = engine.work_once(&h.state).await.unwrap().unwrap();
    assert_eq!((run.id, outcome), (id, Outcome::Done));
    let finished = engine.runs.get(id).await.unwrap().unwrap();

    let worker = Deliverer::for_instance(&h.state).unwrap().spawn();
    let done = all_delivered(&h, Duration::from_secs(30)).await;
    drop(worker);
    let event = done
        .iter()
        .find(|e| e.event_type == "sync.run.succeeded")
        .expect("the run's event");
    let seen = deliveries(&receiver).await;
    let got = accepted(&seen, &event.event_id);
    assert_eq!(got.len(), 1);
    let data = &got[0].event["data"];
    assert_eq!(data["run_id"], id);
    assert_eq!(data["direction"], TO_PEOPLE);
    assert_eq!(data["requested_by"], "test");
    let counts = &data["counts"];
    assert_eq!(counts["read"], finished.counts.read);
    assert_eq!(counts["created"], finished.counts.created);
    assert_eq!(counts["failed"], finished.counts.failed);
    assert_eq!(counts["skipped"], finished.counts.skipped);
    assert!(
        finished.counts.read >= 23 && finished.counts.created > 0,
        "{finished:?}"
    );
    h.finish().await;
}
on_both_backends!(a_sync_run_reports_its_counts_to_the_partner, real_sync_run);

/// What a deployment's webhook options are checked for before anything starts (no database needed).
#[test]
fn the_configuration_is_refused_with_the_variable_it_names() {
    let egress = ibex::partner::EgressPolicy::new(&Default::default(), true);
    let check = |args: &[&str]| {
        let mut all = vec!["ibex"];
        all.extend(args);
        Cli::try_parse_from(all)
            .unwrap()
            .options
            .webhooks(&egress)
            .map(|c| c.map(|c| c.url.to_string()))
            .map_err(|e| e.to_string())
    };
    assert_eq!(check(&[]), Ok(None));
    let ok = check(&[
        "--webhook-url",
        "https://hooks.partner.example/ibex",
        "--webhook-secret",
        WEBHOOK_SECRET,
    ]);
    assert_eq!(ok, Ok(Some("https://hooks.partner.example/ibex".into())));
    for (args, says) in [
        (
            &["--webhook-url", "https://hooks.partner.example/ibex"][..],
            "IBEX_WEBHOOK_SECRET is not",
        ),
        (
            &["--webhook-secret", WEBHOOK_SECRET][..],
            "IBEX_WEBHOOK_URL is not",
        ),
        (
            &[
                "--webhook-url",
                "ftp://hooks.partner.example/",
                "--webhook-secret",
                WEBHOOK_SECRET,
            ][..],
            "not an absolute http(s) URL",
        ),
        (
            &[
                "--webhook-url",
                "https://ibex:pw@hooks.partner.example/",
                "--webhook-secret",
                WEBHOOK_SECRET,
            ][..],
            "must not hold a user name or password",
        ),
        (
            &[
                "--webhook-url",
                "https://hooks.partner.example/",
                "--webhook-secret",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ][..],
            "must start with `whsec_`",
        ),
        (
            &[
                "--webhook-url",
                "https://hooks.partner.example/",
                "--webhook-secret",
                "whsec_c2hvcnQ=",
            ][..],
            "holds 5 bytes",
        ),
    ] {
        let refused = check(args).expect_err("refused");
        assert!(refused.contains(says), "{args:?}: {refused}");
        assert!(
            !refused.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{refused}"
        );
        assert!(!refused.contains("pw@"), "{refused}");
    }
}

/// A change made from a shell without the webhook configuration (`ibex settings set`) still writes its event when
/// the deployment's serving instances have an endpoint: the deployment decides, not the environment of whoever
/// made the change; and once the instances start without one, nothing is written.
async fn the_deployment_decides(backend: Backend) {
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    let mut command = ibex_command(&h, &receiver);
    command
        .env_remove("IBEX_WEBHOOK_URL")
        .env_remove("IBEX_WEBHOOK_SECRET");
    let saved = command
        .args(["settings", "set", ACCOUNT, "currency=USD"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    let configured = |events: &[OutboxEvent]| {
        events
            .iter()
            .filter(|e| e.event_type == "account.configured")
            .count()
    };
    let before = configured(&events(&h).await);
    assert_eq!(before, 2, "the harness's own save and the shell's");

    // An instance starts without an endpoint: the deployment has none now.
    let mut args = Vec::new();
    let mut given = h.args.iter();
    while let Some(arg) = given.next() {
        if arg.starts_with("--webhook") {
            given.next();
        } else {
            args.push(arg.clone());
        }
    }
    let plain = ibex::state::AppState::build(
        &<ibex::cli::config::Cli as clap::Parser>::try_parse_from(args)
            .unwrap()
            .options,
    )
    .await
    .unwrap();
    plain.settings.store().close().await;
    let mut command = ibex_command(&h, &receiver);
    command
        .env_remove("IBEX_WEBHOOK_URL")
        .env_remove("IBEX_WEBHOOK_SECRET");
    let saved = command
        .args(["settings", "set", ACCOUNT, "currency=EUR"])
        .output()
        .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    assert_eq!(configured(&events(&h).await), before);
    h.finish().await;
}
on_both_backends!(deployment_decides, the_deployment_decides);

/// A run that "Resync everything" ends is failed like any other, and writes its `sync.run.failed` event in the
/// resync's transaction.
async fn resync_ends_with_event(backend: Backend) {
    use ibex::sync::runs::{Runs, TO_PEOPLE};
    let receiver = receiver().await;
    let h = start(backend, &receiver).await;
    let runs = Runs::new(h.state.settings.store().clone());
    let id = runs.enqueue(ACCOUNT, TO_PEOPLE, "test").await.unwrap();
    let controls = ibex::sync::controls::Controls::new(h.state.settings.store().clone());
    controls.resync(ACCOUNT, TO_PEOPLE, "ana").await.unwrap();
    let events = events(&h).await;
    let failed: Vec<Value> = events
        .iter()
        .filter(|e| e.event_type == "sync.run.failed")
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["data"]["run_id"], id);
    assert_eq!(failed[0]["data"]["status"], "failed");
    assert!(failed[0]["data"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("Resync everything")));
    h.finish().await;
}
on_both_backends!(
    a_run_ended_by_a_resync_writes_its_event,
    resync_ends_with_event
);
