//! The activity view (issue 28), on both settings backends: real signed calls through ibex are counted per
//! function with their outcomes and the partner's status, the last failed calls hold nothing secret, the
//! credentials' state follows the partner's 401s, counters written by a restarted instance add to the same
//! minute, an unproven account key counts for nobody, and only the account's admins can read the view.

mod common;

use common::{configuration_session, server_fn, Backend, Harness, ACCOUNT, SECRET, SHOP_KEY};
use ibex::activity::flush::Writer;
use ibex::activity::store::{ActivityStore, MINUTE_MS};
use ibex::activity::view::{Period, ServerActivity};
use ibex::activity::{Activity, ActivityConfig, CallRecord, Surface, Upstream};
use serde_json::{json, Value};
use sqlx::Row;
use std::time::Duration;

fn writer(h: &Harness) -> std::sync::Arc<Writer> {
    Writer::new(
        h.state.activity.clone(),
        ActivityStore::new(h.state.settings.store().clone()),
    )
}

fn source(h: &Harness) -> ServerActivity {
    ServerActivity {
        store: ActivityStore::new(h.state.settings.store().clone()),
        settings: h.state.settings.store().clone(),
    }
}

/// Every row of the activity tables, as text: what a database dump would give away.
async fn dump(h: &Harness) -> String {
    let mut out = String::new();
    for (table, columns) in [
        (
            "activity_calls",
            "account_key || '|' || surface || '|' || function",
        ),
        (
            "activity_outcomes",
            "account_key || '|' || function || '|' || code",
        ),
        (
            "activity_failures",
            "account_key || '|' || request_id || '|' || function || '|' || code",
        ),
    ] {
        for row in sqlx::query(&format!("SELECT {columns} FROM {table}"))
            .fetch_all(h.state.settings.store().pool())
            .await
            .unwrap()
        {
            out.push_str(&row.try_get::<String, _>(0).unwrap());
            out.push('\n');
        }
    }
    out
}

async fn calls_counted(backend: Backend) {
    // With a webhook endpoint, so the credentials' changes write their events (nobody delivers them here).
    let h = Harness::start_with(
        backend,
        &[
            "--allow-loopback-partners",
            "--webhook-url",
            "http://127.0.0.1:9/webhooks",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("/fn/order-status/1001").await.0, 200);
    }
    // The partner refuses the account's key twice.
    h.shop_faults(json!({"fail_next": 2, "status": 401})).await;
    for _ in 0..2 {
        let (status, body) = h.get("/fn/order-status/1001").await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["details"]["partner_status"], 401, "{body}");
    }
    // A body with a secret-looking value, sent with a wrong signature under the known account.
    let secret_body = r#"{"order_id": "1001", "password": "hunter2-in-a-body"}"#;
    let (status, _) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"something else",
            secret_body.as_bytes(),
            |_| {},
        )
        .await;
    assert_eq!(status, 401);
    // A made-up account with a wrong signature counts for nobody.
    let (status, _) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"x",
            b"",
            |headers| {
                headers.insert(
                    "x-ib-exchange-req-accountkey",
                    reqwest::header::HeaderValue::from_static("GHOST-ACCOUNT"),
                );
            },
        )
        .await;
    assert_eq!(status, 401);

    let changes = writer(&h).flush().await.unwrap();
    // The window ended with the key refused: the partner's credentials are failing since the first 401.
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].failing && changes[0].source == "partner");
    assert_eq!(changes[0].status, Some(401));

    let view = source(&h)
        .view(ACCOUNT, Period::parse("hour").unwrap())
        .await
        .unwrap();
    assert_eq!((view.calls, view.failures), (6, 3), "{view:#?}");
    let row = view
        .functions
        .iter()
        .find(|f| f.function == "order-status")
        .unwrap();
    assert_eq!((row.calls, row.failures), (6, 3));
    assert_eq!(row.surface, "Answers or Flow");
    assert_ne!(row.p50, "–");
    let codes: Vec<(&str, i64)> = view
        .outcomes
        .iter()
        .map(|o| (o.code.as_str(), o.calls))
        .collect();
    assert!(
        codes.contains(&("partner_client_error (401)", 2)),
        "{codes:?}"
    );
    assert!(codes.contains(&("signature_mismatch", 1)), "{codes:?}");

    // The refused signature is counted by its code, but not listed: anyone knowing the key could send it.
    assert_eq!(view.failed.len(), 2, "{:#?}", view.failed);
    assert!(view
        .failed
        .iter()
        .all(|f| f.request_id.len() == 36 && f.function == "order-status"));
    assert_eq!(
        view.failed.iter().filter(|f| f.status == Some(401)).count(),
        2
    );
    assert_eq!(view.chart.iter().map(|(c, _)| c).sum::<i64>(), 6);
    let partner = &view.health[0];
    assert!(partner.failing, "{partner:?}");
    assert!(partner.text.starts_with("Refused since"), "{partner:?}");

    // Nothing secret anywhere: not in the view, not in the tables.
    let shown = serde_json::to_string(&view).unwrap() + &dump(&h).await;
    for secret in [SHOP_KEY, SECRET, "hunter2-in-a-body", &h.encryption_key] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The made-up account has nothing, and neither has another account.
    assert!(!shown.contains("GHOST-ACCOUNT"), "{shown}");
    let other = source(&h)
        .view("ACCT-OTHER", Period::parse("week").unwrap())
        .await
        .unwrap();
    assert_eq!((other.calls, other.failed.len()), (0, 0));

    // The key works again: the next window says so, once.
    assert_eq!(h.get("/fn/order-status/1001").await.0, 200);
    let changes = writer(&h).flush().await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(!changes[0].failing);
    let view = source(&h)
        .view(ACCOUNT, Period::parse("day").unwrap())
        .await
        .unwrap();
    assert_eq!(view.calls, 7);
    assert!(!view.health[0].failing);
    assert!(
        view.health[0].text.contains("last refusal: HTTP 401"),
        "{:?}",
        view.health
    );
    assert!(writer(&h).flush().await.unwrap().is_empty());

    // Each change wrote its event, once, with what the partner needs to act on it.
    let events: Vec<(String, Value)> = sqlx::query(
        "SELECT event_type, payload FROM webhook_outbox WHERE event_type LIKE 'account.credentials%' ORDER BY created_at",
    )
    .fetch_all(h.state.settings.store().pool())
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get(0).unwrap(),
            serde_json::from_str(&row.try_get::<String, _>(1).unwrap()).unwrap(),
        )
    })
    .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "account.credentials_failed",
            "account.credentials_recovered"
        ],
        "{events:?}"
    );
    for (_, payload) in &events {
        assert_eq!(payload["data"]["account_key"], ACCOUNT, "{payload}");
        assert_eq!(payload["data"]["source"], "partner", "{payload}");
        assert_eq!(payload["data"]["status"], 401, "{payload}");
        assert!(payload["data"]["failing_since"].is_string(), "{payload}");
    }
    h.finish().await;
}
on_both_backends!(counted, calls_counted);

/// Two recorders (an instance, then the same instance restarted) count calls of one minute: the minute's row holds
/// both, because each write adds to it.
async fn restart_within_a_minute(backend: Backend) {
    let h = Harness::start(backend).await;
    let store = ActivityStore::new(h.state.settings.store().clone());
    let now = app::settings::store::now_ms();
    let minute = now - now.rem_euclid(MINUTE_MS);
    let call = |function| CallRecord {
        account: ACCOUNT,
        surface: Surface::Card,
        function,
        elapsed: Duration::from_millis(4),
        code: None,
        status: None,
        request_id: "",
        verified: true,
        upstream: Upstream::Partner,
    };
    for (instance, calls) in [(1, 2), (2, 3)] {
        let activity = Activity::new(ActivityConfig::default(), Default::default());
        for _ in 0..calls {
            activity
                .recorder
                .record(&call("customer-lookup"), minute + instance);
        }
        Writer::new(activity, store.clone()).flush().await.unwrap();
    }
    let row = sqlx::query(
        "SELECT calls, lat4 FROM activity_calls WHERE account_key = $1 AND span_ms = $2 AND at_ms = $3",
    )
    .bind(ACCOUNT)
    .bind(MINUTE_MS)
    .bind(minute)
    .fetch_one(h.state.settings.store().pool())
    .await
    .unwrap();
    assert_eq!(row.try_get::<i64, _>(0).unwrap(), 5);
    // 4 ms falls in (2.83, 4] ms.
    assert_eq!(row.try_get::<i64, _>(1).unwrap(), 5);
    h.finish().await;
}
on_both_backends!(restart, restart_within_a_minute);

/// The page's view is the admins': a user who may only look gets 403 and no figure.
async fn admins_only(backend: Backend) {
    let h = Harness::start(backend).await;
    let account = ibex_sim::exchange::USERS[0].account_key;
    h.state
        .settings
        .store()
        .add_admin(account, ibex_sim::exchange::USERS[0].user_key, "", "test")
        .await
        .unwrap();
    let ana = configuration_session(&h, ibex_sim::exchange::USERS[0].user_key).await;
    let bob = configuration_session(&h, ibex_sim::exchange::USERS[1].user_key).await;
    let (status, view) = server_fn(
        &h,
        "load_activity",
        &[("session", &ana), ("period", "week")],
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["period"], "week");
    let (status, body) = server_fn(
        &h,
        "load_activity",
        &[("session", &ana), ("period", "year")],
    )
    .await;
    assert_ne!(status, 200, "{body}");
    let (status, body) =
        server_fn(&h, "load_activity", &[("session", &bob), ("period", "day")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("admins"), "{body}");
    h.finish().await;
}
on_both_backends!(admins, admins_only);

/// What nobody can prove is the account's stays out of its list and its bounds: refused signatures naming the
/// account are counted by code only (their request ids never listed), and a never-saved account key, which a
/// captured request could carry, gets no place in memory.
async fn unproven_calls(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, _) = h.get("/fn/order-status/999").await;
    assert_eq!(status, 502);
    for _ in 0..60 {
        let (status, _) = h
            .send(
                reqwest::Method::GET,
                "/fn/order-status/1001",
                b"x",
                b"",
                |headers| {
                    headers.insert(
                        "x-request-id",
                        reqwest::header::HeaderValue::from_static("CALL-+1-555-0100-TO-FIX"),
                    );
                },
            )
            .await;
        assert_eq!(status, 401);
    }
    // A valid signature under a key nobody saved settings for.
    let (status, _) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            |headers| {
                headers.insert(
                    "x-ib-exchange-req-accountkey",
                    reqwest::header::HeaderValue::from_static("NEVER-SAVED"),
                );
            },
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(h.state.activity.recorder.accounts(), 1);
    writer(&h).flush().await.unwrap();
    let view = source(&h)
        .view(ACCOUNT, Period::parse("hour").unwrap())
        .await
        .unwrap();
    assert_eq!((view.calls, view.failures), (61, 61));
    assert_eq!(view.failed.len(), 1, "{:#?}", view.failed);
    assert_eq!(view.failed[0].status, Some(404));
    assert!(!serde_json::to_string(&view).unwrap().contains("TO-FIX"));
    let never = source(&h)
        .view("NEVER-SAVED", Period::parse("hour").unwrap())
        .await
        .unwrap();
    assert_eq!(never.calls, 0);
    h.finish().await;
}
on_both_backends!(unproven, unproven_calls);

/// Two instances see one account's credentials at different moments: a refusal recorded by one is not undone by
/// the other's older accepted call, and an older refusal does not mark newer working credentials as failing.
async fn credentials_across_instances(backend: Backend) {
    let h = Harness::start(backend).await;
    let store = ActivityStore::new(h.state.settings.store().clone());
    let call = |code: Option<&'static str>, status: Option<u16>| CallRecord {
        account: ACCOUNT,
        surface: Surface::Signed,
        function: "order-status",
        elapsed: Duration::from_millis(2),
        code,
        status,
        request_id: "r",
        verified: true,
        upstream: Upstream::Partner,
    };
    let t = app::settings::store::now_ms();
    let flush_one = |record: CallRecord<'static>, at: i64| {
        let store = store.clone();
        async move {
            let activity = Activity::new(ActivityConfig::default(), Default::default());
            activity.recorder.record(&record, at);
            Writer::new(activity, store).flush().await.unwrap()
        }
    };
    // B saw a 401 at t+105 and writes first; A saw an accepted call at t+100 and writes after.
    let changes = flush_one(call(Some("partner_client_error"), Some(401)), t + 105).await;
    assert!(changes.len() == 1 && changes[0].failing, "{changes:?}");
    let changes = flush_one(call(None, None), t + 100).await;
    assert!(
        changes.is_empty(),
        "an older accepted call recovered: {changes:?}"
    );
    // A newer accepted call does recover them; an older refusal then changes nothing.
    let changes = flush_one(call(None, None), t + 200).await;
    assert!(changes.len() == 1 && !changes[0].failing, "{changes:?}");
    let changes = flush_one(call(Some("partner_client_error"), Some(403)), t + 150).await;
    assert!(
        changes.is_empty(),
        "an older refusal failed them again: {changes:?}"
    );
    h.finish().await;
}
on_both_backends!(credentials_order, credentials_across_instances);

/// A signed key the operator linked to an account's settings counts for that account: in its view, and in the
/// events the partner gets, which name the account it configured.
async fn linked_keys(backend: Backend) {
    let h = Harness::start_with(
        backend,
        &[
            "--allow-loopback-partners",
            "--webhook-url",
            "http://127.0.0.1:9/webhooks",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
    )
    .await;
    h.state
        .settings
        .store()
        .link("SIGNED-KEY", ACCOUNT, "test")
        .await
        .unwrap();
    h.shop_faults(json!({"fail_next": 1, "status": 401})).await;
    let (status, _) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            |headers| {
                headers.insert(
                    "x-ib-exchange-req-accountkey",
                    reqwest::header::HeaderValue::from_static("SIGNED-KEY"),
                );
            },
        )
        .await;
    assert_eq!(status, 502);
    let changes = writer(&h).flush().await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].account_key, ACCOUNT);
    let view = source(&h)
        .view(ACCOUNT, Period::parse("hour").unwrap())
        .await
        .unwrap();
    assert_eq!(view.calls, 1);
    let own = source(&h)
        .view("SIGNED-KEY", Period::parse("hour").unwrap())
        .await
        .unwrap();
    assert_eq!(own.calls, 0);
    let payload: String = sqlx::query(
        "SELECT payload FROM webhook_outbox WHERE event_type = 'account.credentials_failed'",
    )
    .fetch_one(h.state.settings.store().pool())
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    assert!(
        payload.contains(ACCOUNT) && !payload.contains("SIGNED-KEY"),
        "{payload}"
    );
    h.finish().await;
}
on_both_backends!(linked, linked_keys);
