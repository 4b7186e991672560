//! The configuration page's sign-in through the simulated Exchange OAuth server, over real HTTP: the flow ends
//! on the page with a session for the signed-in account, refusals end on an explicit page, the session cannot be
//! forged, and framing is allowed only from the portal.

mod common;

use common::{Backend, Harness};
use ibex_sim::exchange::USERS;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows redirects by hand, sending the portal's sign-in cookie to the portal only (as a browser would).
async fn follow(
    h: &Harness,
    start: &str,
    portal_user: Option<&str>,
) -> (reqwest::Response, Vec<String>) {
    let http = client();
    let mut url = start.to_owned();
    let mut trail = Vec::new();
    for _ in 0..10 {
        trail.push(url.clone());
        let mut request = http.get(&url);
        if let (Some(user), true) = (portal_user, url.starts_with(&h.portal)) {
            request = request.header("cookie", format!("sim_portal_user={user}"));
        }
        let response = request.send().await.unwrap();
        if !response.status().is_redirection() {
            return (response, trail);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        url = if location.starts_with('/') {
            format!("{}{location}", h.ibex)
        } else {
            location
        };
    }
    panic!("redirect loop: {trail:#?}");
}

/// Signs in through the portal as `user` and returns the page's session token.
async fn session_for(h: &Harness, user: &str) -> String {
    let (page, trail) = follow(h, &format!("{}/settings", h.ibex), Some(user)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    session_in(trail.last().unwrap())
}

async fn stored_settings(h: &Harness, account: &str) -> app::settings::store::StoredSettings {
    h.state.settings.load(account).await.unwrap().unwrap()
}

/// The session token a finished sign-in left in the page's URL.
fn session_in(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "session")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

async fn save(
    h: &Harness,
    session: &str,
    version: i64,
    changes: serde_json::Value,
) -> serde_json::Value {
    let response = client()
        .post(format!("{}/api/save_settings", h.ibex))
        .json(&serde_json::json!({"session": session, "version": version, "changes": changes}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn test_connection(
    h: &Harness,
    session: &str,
    changes: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("{}/api/test_connection", h.ibex))
        .json(&serde_json::json!({"session": session, "changes": changes}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// "Test connection" sends the probe with the values on screen over the stored ones, saves nothing, and says
/// what to check when it fails.
async fn connection_test(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];
    let session = session_for(&h, ana.user_key).await;
    let shop = h.shop.clone();

    // Nothing stored yet: the on-screen key and URL are what is tried.
    let (status, outcome) = test_connection(
        &h,
        &session,
        serde_json::json!({"api_key": common::SHOP_KEY, "api_base_url": shop}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(outcome["Passed"]["status"], 200, "{outcome}");
    let probes: Vec<_> = h
        .shop_requests()
        .await
        .into_iter()
        .filter(|r| r["path"] == "/health")
        .collect();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert!(
        h.state
            .settings
            .load(ana.account_key)
            .await
            .unwrap()
            .is_none(),
        "a test must not save"
    );

    // A wrong key is refused by the partner; the message says to check the credentials.
    let (_, outcome) = test_connection(
        &h,
        &session,
        serde_json::json!({"api_key": "wrong", "api_base_url": shop}),
    )
    .await;
    let message = outcome["Failed"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("HTTP 401") && message.contains("credentials"),
        "{outcome}"
    );

    // Saved settings are used where the screen changes nothing; a stale secret on screen is not needed.
    assert_eq!(
        save(
            &h,
            &session,
            0,
            serde_json::json!({"api_key": common::SHOP_KEY, "api_base_url": shop})
        )
        .await,
        serde_json::json!({"Saved": {"version": 1}})
    );
    let (_, outcome) = test_connection(&h, &session, serde_json::json!({})).await;
    assert_eq!(outcome["Passed"]["status"], 200, "{outcome}");

    // Invalid values are reported per field and nothing is sent.
    let before = h.shop_requests().await.len();
    let (_, outcome) = test_connection(
        &h,
        &session,
        serde_json::json!({"api_base_url": "not a url"}),
    )
    .await;
    assert_eq!(
        outcome["Invalid"]["errors"][0]["field"], "api_base_url",
        "{outcome}"
    );
    assert_eq!(h.shop_requests().await.len(), before);

    // Nobody listening at the URL on screen.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_, outcome) =
        test_connection(&h, &session, serde_json::json!({"api_base_url": dead})).await;
    let message = outcome["Failed"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Could not reach"), "{outcome}");

    // The partner failing is told apart from a credential problem, and its body is not echoed.
    h.shop_faults(serde_json::json!({"status": 500, "fail_next": 1}))
        .await;
    let (_, outcome) = test_connection(&h, &session, serde_json::json!({})).await;
    let message = outcome["Failed"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("HTTP 500") && !message.contains("simulated"),
        "{outcome}"
    );

    // A forged session gets nothing.
    let (status, _) = test_connection(&h, &format!("{session}x"), serde_json::json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        h.state
            .settings
            .load(ana.account_key)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    h.finish().await;
}

async fn saving(backend: Backend) {
    let h = Harness::start(backend).await;
    let (ana, eve) = (&USERS[0], &USERS[2]);
    let ana_session = session_for(&h, ana.user_key).await;
    let shop = h.shop.clone();

    let outcome = save(
        &h,
        &ana_session,
        0,
        serde_json::json!({"currency": "XXX", "api_key": ""}),
    )
    .await;
    let errors = outcome["Invalid"]["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"currency") && fields.contains(&"api_key"),
        "{outcome}"
    );

    let changes =
        serde_json::json!({"api_key": common::SHOP_KEY, "api_base_url": shop, "currency": "USD"});
    assert_eq!(
        save(&h, &ana_session, 0, changes).await,
        serde_json::json!({"Saved": {"version": 1}})
    );
    // A second admin who loaded version 0 is refused, and nothing of theirs is written.
    let outcome = save(&h, &ana_session, 0, serde_json::json!({"currency": "GBP"})).await;
    assert_eq!(outcome, serde_json::json!({"Conflict": {"current": 1}}));
    let stored = stored_settings(&h, ana.account_key).await;
    assert_eq!(stored.values["currency"], "USD");
    assert!(
        stored.updated_by.contains(ana.user_key),
        "{}",
        stored.updated_by
    );

    // Another account's admin writes only to their own account.
    let eve_session = session_for(&h, eve.user_key).await;
    assert_eq!(
        save(
            &h,
            &eve_session,
            0,
            serde_json::json!({"api_key": "eve-key"})
        )
        .await,
        serde_json::json!({"Saved": {"version": 1}})
    );
    let stored = stored_settings(&h, ana.account_key).await;
    assert_eq!(
        (stored.version, stored.secrets["api_key"].as_str()),
        (1, common::SHOP_KEY)
    );

    // A signed function call for Ana's account now uses what she saved.
    let (status, body) = h
        .send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            |m| {
                let ts = m["x-ib-exchange-req-timestamp"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                m.insert(
                    "x-ib-exchange-req-accountkey",
                    ana.account_key.parse().unwrap(),
                );
                m.insert(
                    "x-ib-exchange-req-signature",
                    ibex::signature::sign(common::SECRET, &ts, b"")
                        .parse()
                        .unwrap(),
                );
            },
        )
        .await;
    assert_eq!(
        (status, body["currency"].as_str()),
        (200, Some("USD")),
        "{body}"
    );
    h.finish().await;
}

async fn sign_in(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];

    let (page, trail) = follow(&h, &format!("{}/settings", h.ibex), Some(ana.user_key)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, format!("frame-ancestors {}", h.portal));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let final_url = trail.last().unwrap().clone();
    assert!(trail
        .iter()
        .any(|u| u.contains("/exchange/1/oauth/authorize") && u.contains("code_challenge=")));
    let session = session_in(&final_url);
    let html = page.text().await.unwrap();
    let tag = |start: &str| {
        let at = html
            .find(start)
            .unwrap_or_else(|| panic!("no {start} in the page"));
        html[at..at + html[at..].find('>').unwrap()].to_owned()
    };
    // Before hydration the form is inert: a native submit would POST (typed values, a secret among them, never
    // go into a URL) and both buttons wait for the island.
    assert!(
        tag("<form").contains(r#"method="post""#),
        "{}",
        tag("<form")
    );
    assert!(tag(r#"<button type="submit""#).contains("disabled"));
    assert!(tag(r#"<button type="button""#).contains("disabled"));

    // The page's server function answers for the session's account, and only with a genuine session.
    let load = |token: String| {
        let http = client();
        let url = format!("{}/api/load_settings", h.ibex);
        async move {
            http.post(url)
                .form(&[("session", token)])
                .send()
                .await
                .unwrap()
        }
    };
    let response = load(session.clone()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["account_key"], ana.account_key);
    assert_eq!(body["username"], ana.username);
    let mut forged = session.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let response = load(forged).await;
    assert_eq!(response.status(), 401, "a tampered session must be refused");
    let response = load("v1:test1:bm90LWEtc2Vzc2lvbg".into()).await;
    assert_eq!(response.status(), 401, "a made-up session must be refused");

    // Not signed in to the portal: an explicit page, not a loop.
    let (page, trail) = follow(&h, &format!("{}/settings", h.ibex), None).await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("not signed in to Infobip"));

    // A session that never sticks stops after a few attempts with an explanation.
    let (page, _) = follow(
        &h,
        &format!("{}/settings?attempt=3", h.ibex),
        Some(ana.user_key),
    )
    .await;
    assert_eq!(page.status(), 409);

    // Pages that are not meant to be framed say so.
    let home = client().get(format!("{}/", h.ibex)).send().await.unwrap();
    assert_eq!(
        home.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    let missing = client()
        .get(format!("{}/no-such-page", h.ibex))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    h.finish().await;
}

on_both_backends!(configuration_page_sign_in, sign_in);
on_both_backends!(configuration_page_saving, saving);
on_both_backends!(configuration_page_connection_test, connection_test);
