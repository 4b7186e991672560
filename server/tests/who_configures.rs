//! Who may configure an account (issue 27, item 2), over real HTTP through the simulated Exchange: a card's launch
//! never becomes a configuration sign-in, a user who is not an admin of the account may look but not change, and
//! the admin list, the admin role and the operator's default decide who is one.

mod common;

use common::server_fn as call;
use common::{
    client, configuration_session, param, portal_launch, server_fn_json, Backend, Harness,
};
use ibex_sim::exchange::USERS;
use serde_json::{json, Value};

async fn save(h: &Harness, session: &str, changes: Value) -> (u16, Value) {
    let version = call(h, "load_settings", &[("session", session)]).await.1["version"]
        .as_i64()
        .unwrap_or(0);
    server_fn_json(
        h,
        "save_settings",
        &json!({"session": session, "version": version, "changes": changes}),
    )
    .await
}

/// Infobip's launch for the card is taken by the card's page only: sent to `/oauth/start` with another `next`,
/// or to the configuration page while the card's sign-in under it is under way, it signs in to nothing.
async fn a_card_launch_never_configures(backend: Backend) {
    let h = Harness::start(backend).await;
    let bob = &USERS[1];
    let framed = portal_launch(&h, "/conversations", bob.user_key).await;
    let state = param(&framed, "state").unwrap();

    // Before: `/oauth/start?next=/settings&state=<card launch>` went to Infobip's authorize with the card's
    // launch and came back with a configuration session for the agent.
    let response = client()
        .get(format!(
            "{}/oauth/start?next=%2Fsettings&state={state}",
            h.ibex
        ))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("used only by the page Infobip opened with it"));

    // The card's page takes it, for the card: its sign-in is recorded under the launch and goes to authorize.
    let response = client()
        .get(&framed)
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let authorize = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.contains("/exchange/1/oauth/authorize"),
        "{authorize}"
    );
    assert_eq!(param(&authorize, "state").as_deref(), Some(state.as_str()));

    // The same launch at the configuration page now finds its sign-in under way for the card.
    let response = client()
        .get(format!("{}/settings?state={state}", h.ibex))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert!(response.headers().get("location").is_none());
    h.finish().await;
}
on_both_backends!(card_launch, a_card_launch_never_configures);

/// Once an account has an admin, everyone else sees the settings read-only (no secrets, no sync, no token
/// panel), and every change is refused with 403; the admin adds and removes admins, never the last one.
async fn admins_decide(backend: Backend) {
    let h = Harness::start(backend).await;
    let (ana, bob) = (&USERS[0], &USERS[1]);
    let ana_session = configuration_session(&h, ana.user_key).await;
    let bob_session = configuration_session(&h, bob.user_key).await;

    // No admin yet, nothing configured to decide (the default): anyone may configure, and is told so. Ana sets
    // the app up.
    let (status, view) = call(&h, "load_settings", &[("session", &bob_session)]).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["access"], json!("Open"), "{view}");
    let (status, answer) = save(
        &h,
        &ana_session,
        json!({"api_base_url": h.shop.clone(), "api_key": common::SHOP_KEY}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer.get("Saved").is_some(), "{answer}");

    // Bob may configure (the account is open) but not decide who administers it: he cannot make himself its
    // admin over the user who set it up, not even after a save of his own (review: a save made him the last
    // saver), nor list anyone.
    let (status, answer) = save(&h, &bob_session, json!({"max_orders": "4"})).await;
    assert!(answer.get("Saved").is_some(), "{status} {answer}");
    let (status, answer) = call(&h, "claim_admin", &[("session", &bob_session)]).await;
    assert_eq!(status, 200);
    assert!(
        answer["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("first saved these settings (ana.admin"),
        "{answer}"
    );
    let (status, _) = call(
        &h,
        "add_admin",
        &[("session", &bob_session), ("user_key", "U-NOBODY")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(h
        .state
        .settings
        .store()
        .admins(ana.account_key)
        .await
        .unwrap()
        .is_empty());

    // Ana, who set it up, makes herself the first admin: bob can no longer make himself one.
    let (status, answer) = call(&h, "claim_admin", &[("session", &ana_session)]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["Ok"][0]["user_key"], ana.user_key, "{answer}");
    assert_eq!(answer["Ok"][0]["username"], ana.username, "{answer}");

    // Bob may look: the settings without secrets, no sync or Custom cards panel, and who to ask.
    let (status, view) = call(&h, "load_settings", &[("session", &bob_session)]).await;
    assert_eq!(status, 200, "{view}");
    let who = view["access"]["ReadOnly"]["who"]
        .as_str()
        .unwrap_or_default();
    assert!(
        who.contains("ana.admin") && who.contains(bob.user_key),
        "{view}"
    );
    let fields: Vec<&str> = view["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"max_orders"), "{fields:?}");
    assert!(
        !fields.contains(&"api_key"),
        "no secret, not even its state: {fields:?}"
    );
    assert!(
        view["sync"].is_null() && view["custom_card"].is_null(),
        "{view}"
    );
    assert!(view["admins"].as_array().unwrap().is_empty(), "{view}");

    // Every change is refused, with nothing written.
    let before = h
        .state
        .settings
        .load(ana.account_key)
        .await
        .unwrap()
        .unwrap();
    let (status, _) = save(&h, &bob_session, json!({"max_orders": "9"})).await;
    assert_eq!(status, 403);
    for (function, form) in [
        ("issue_card_token", vec![("session", bob_session.as_str())]),
        ("sync_now", vec![("session", bob_session.as_str())]),
        ("sync_retry", vec![("session", bob_session.as_str())]),
        ("sync_test_people", vec![("session", bob_session.as_str())]),
        ("load_sync", vec![("session", bob_session.as_str())]),
        ("claim_admin", vec![("session", bob_session.as_str())]),
        (
            "add_admin",
            vec![
                ("session", bob_session.as_str()),
                ("user_key", bob.user_key),
            ],
        ),
        (
            "remove_admin",
            vec![
                ("session", bob_session.as_str()),
                ("user_key", ana.user_key),
            ],
        ),
    ] {
        let (status, answer) = call(&h, function, &form).await;
        assert_eq!(status, 403, "{function}: {answer}");
    }
    let response = client()
        .post(format!("{}/api/test_connection", h.ibex))
        .json(&json!({"session": bob_session, "changes": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let after = h
        .state
        .settings
        .load(ana.account_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.version, before.version);
    assert!(h
        .state
        .settings
        .store()
        .card_token(ana.account_key)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        h.state
            .settings
            .store()
            .admins(ana.account_key)
            .await
            .unwrap()
            .len(),
        1
    );

    // The admin saves, adds bob (who then saves), and cannot remove the last admin.
    let (status, answer) = save(&h, &ana_session, json!({"max_orders": "5"})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = call(
        &h,
        "add_admin",
        &[("session", &ana_session), ("user_key", "a b")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        answer["Err"].as_str().unwrap().contains("User key"),
        "{answer}"
    );
    let (_, answer) = call(
        &h,
        "add_admin",
        &[("session", &ana_session), ("user_key", bob.user_key)],
    )
    .await;
    assert_eq!(answer["Ok"].as_array().unwrap().len(), 2, "{answer}");
    let (status, _) = save(&h, &bob_session, json!({"max_orders": "6"})).await;
    assert_eq!(status, 200);
    let (_, answer) = call(
        &h,
        "remove_admin",
        &[("session", &bob_session), ("user_key", bob.user_key)],
    )
    .await;
    assert_eq!(answer["Ok"].as_array().unwrap().len(), 1, "{answer}");
    let (_, answer) = call(
        &h,
        "remove_admin",
        &[("session", &ana_session), ("user_key", ana.user_key)],
    )
    .await;
    assert!(
        answer["Err"]
            .as_str()
            .unwrap()
            .contains("at least one admin"),
        "{answer}"
    );
    // Removed a moment ago, bob changes nothing more (the decision is taken at every call).
    let (status, _) = save(&h, &bob_session, json!({"max_orders": "7"})).await;
    assert_eq!(status, 403);

    // Another account's admin list is its own: eve still configures Globex.
    let eve = &USERS[2];
    let eve_session = configuration_session(&h, eve.user_key).await;
    let (status, _) = save(
        &h,
        &eve_session,
        json!({"api_key": "k", "api_base_url": h.shop.clone()}),
    )
    .await;
    assert_eq!(status, 200);
    h.finish().await;
}
on_both_backends!(admins, admins_decide);

/// With `IBEX_ADMIN_ROLE` and a token answer carrying roles (older Infobip documents), the role decides; with
/// `IBEX_UNLISTED_ACCOUNTS=closed`, an account without admins cannot be changed until the operator lists one.
async fn role_and_closed_accounts(backend: Backend) {
    let (ana, bob) = (&USERS[0], &USERS[1]);
    let h = Harness::start_with(
        backend,
        &[
            "--allow-loopback-partners",
            "--admin-role",
            "account_admin",
            "--unlisted-accounts",
            "closed",
        ],
    )
    .await;
    // The current token answer has no roles: the list decides, and the account has none: closed.
    let session = configuration_session(&h, ana.user_key).await;
    let (status, _) = save(&h, &session, json!({"max_orders": "4"})).await;
    assert_eq!(status, 403);
    let (_, view) = call(&h, "load_settings", &[("session", &session)]).await;
    assert!(
        view["access"]["ReadOnly"]["who"]
            .as_str()
            .unwrap_or_default()
            .contains("operator adds one"),
        "{view}"
    );

    // The operator lists ana: she configures.
    h.state
        .settings
        .store()
        .add_admin(ana.account_key, ana.user_key, "", "cli:test")
        .await
        .unwrap();
    let (status, _) = save(&h, &session, json!({"max_orders": "4"})).await;
    assert_eq!(status, 200);

    // Token answers with roles: bob's AGENT role does not make an admin, and the list still does not name him.
    let response = client()
        .post(format!("{}/_sim/oauth", h.portal))
        .json(&json!({"older_token_fields": true}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let bob_session = configuration_session(&h, bob.user_key).await;
    let (status, _) = save(&h, &bob_session, json!({"max_orders": "5"})).await;
    assert_eq!(status, 403);
    // eve holds ACCOUNT_ADMIN (compared without case) on Globex, which lists no admin: the role is enough.
    let eve = &USERS[2];
    let eve_session = configuration_session(&h, eve.user_key).await;
    let (status, answer) = save(
        &h,
        &eve_session,
        json!({"api_key": "k", "api_base_url": h.shop.clone()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // finn, an agent on Globex, is told the role that would let him.
    let finn = &USERS[4];
    let finn_session = configuration_session(&h, finn.user_key).await;
    let (_, view) = call(&h, "load_settings", &[("session", &finn_session)]).await;
    assert!(
        view["access"]["ReadOnly"]["who"]
            .as_str()
            .unwrap_or_default()
            .contains("account_admin role"),
        "{view}"
    );
    h.finish().await;
}
on_both_backends!(role_and_closed, role_and_closed_accounts);

/// Outside `--dev`, the embedded pages and the sign-in callback need a browser's `Sec-Fetch-Dest: iframe`: a
/// request without it is refused like one opened as a page of its own.
async fn a_missing_fetch_dest_is_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let session = configuration_session(&h, USERS[0].user_key).await;
    let page = |dest: Option<&'static str>| {
        let mut request = client()
            .get(format!("{}/settings", h.ibex))
            .query(&[("session", &session)]);
        if let Some(dest) = dest {
            request = request.header("sec-fetch-dest", dest);
        }
        request.send()
    };
    assert_eq!(page(Some("iframe")).await.unwrap().status(), 200);
    // The same page behind a trailing slash is gated alike: without a session it signs in, it is not shown.
    let slash = client()
        .get(format!("{}/settings/", h.ibex))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status(), 303);
    assert!(slash.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/oauth/start?next=%2Fsettings"));
    assert_eq!(page(Some("document")).await.unwrap().status(), 403);
    assert_eq!(page(None).await.unwrap().status(), 403);
    let callback = client()
        .get(format!("{}/oauth/callback?code=c&state=s", h.ibex))
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 403);
    h.finish().await;
}
on_both_backends!(fetch_dest, a_missing_fetch_dest_is_refused);

/// Two admins removing each other at the same moment leave one: the page never empties an account's list.
async fn the_last_admin_stays(backend: Backend) {
    let h = Harness::start(backend).await;
    let store = h.state.settings.store().clone();
    for round in 0..20 {
        let account = format!("ACCT-RACE-{round}");
        store.add_admin(&account, "U-A", "", "test").await.unwrap();
        store.add_admin(&account, "U-B", "", "test").await.unwrap();
        let (a, b) = (store.clone(), store.clone());
        let (acc_a, acc_b) = (account.clone(), account.clone());
        let first = tokio::spawn(async move { a.remove_admin(&acc_a, "U-A", true).await });
        let second = tokio::spawn(async move { b.remove_admin(&acc_b, "U-B", true).await });
        let removed = [first.await.unwrap(), second.await.unwrap()];
        let left = store.admins(&account).await.unwrap();
        assert_eq!(left.len(), 1, "round {round}: {removed:?}");
    }
    h.finish().await;
}
on_both_backends!(last_admin, the_last_admin_stays);
