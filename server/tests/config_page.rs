//! The configuration page's sign-in through the simulated Exchange OAuth server, over real HTTP: the flow ends
//! on the page with a session for the signed-in account, refusals end on an explicit page, the session cannot be
//! forged, and framing is allowed only from the portal.

mod common;

use common::{client, follow, follow_withholding_cookie, param, portal_launch, Backend, Harness};
use ibex_sim::exchange::USERS;

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
    let (_, outcome) = test_connection(
        &h,
        &session,
        serde_json::json!({"api_base_url": dead, "api_key": common::SHOP_KEY}),
    )
    .await;
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

    // Six tests so far this minute; four more are sent, the eleventh is refused without a request or a row.
    for _ in 0..4 {
        let (_, outcome) = test_connection(&h, &session, serde_json::json!({})).await;
        assert_eq!(outcome["Passed"]["status"], 200, "{outcome}");
    }
    let (before, rows) = (
        h.shop_requests().await.len(),
        h.state
            .settings
            .store()
            .probes(ana.account_key, 1000)
            .await
            .unwrap()
            .len(),
    );
    let (status, outcome) = test_connection(&h, &session, serde_json::json!({})).await;
    assert_eq!(status, 200);
    let message = outcome["Failed"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("wait a minute"), "{outcome}");
    assert_eq!(
        h.shop_requests().await.len(),
        before,
        "a refused test sent a request"
    );
    let store = h.state.settings.store();
    assert_eq!(
        store.probes(ana.account_key, 1000).await.unwrap().len(),
        rows
    );

    // Old rows are pruned as new ones are recorded: an account keeps its newest 100.
    for i in 0..120 {
        let record = app::settings::store::ProbeRecord {
            tested_fields: vec!["api_key".into()],
            destination: format!("probe-{i}"),
            outcome: "passed".into(),
            tested_by: "test".into(),
            tested_at: 1_000 + i,
        };
        store.record_probe(ana.account_key, &record).await.unwrap();
    }
    let kept = store.probes(ana.account_key, 1000).await.unwrap();
    assert_eq!(kept.len(), 100);
    assert_eq!(kept[0].destination, "probe-119");

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
            serde_json::json!({"api_key": "eve-key", "api_base_url": "https://globex.example"})
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
                    ibex::signed::signature::sign(common::SECRET, &ts, b"")
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
    assert!(
        csp.ends_with(&format!("; frame-ancestors {}", h.portal)),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let final_url = trail.last().unwrap().clone();
    assert!(trail
        .iter()
        .any(|u| u.contains("/exchange/1/oauth/authorize") && u.contains("code_challenge=")));
    let session = session_in(&final_url);
    let html = page.text().await.unwrap();
    // Only scripts carrying this response's nonce run: every inline script has it, and the policy names it.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {csp}"));
    for directive in ["object-src 'none'", "base-uri 'none'", "default-src 'self'"] {
        assert!(csp.contains(directive), "{directive}: {csp}");
    }
    let scripts = html.matches("<script").count();
    assert!(scripts > 0);
    assert_eq!(
        html.matches(&format!("<script nonce=\"{nonce}\"")).count()
            + html
                .matches(&format!("<script type=\"module\" nonce=\"{nonce}\""))
                .count(),
        scripts,
        "every script carries the nonce"
    );
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

    // The page with a valid session, opened as a page of its own (a link someone sent: it would put the victim in
    // the sender's account, where a key they type is saved) is not shown; inside a frame it is.
    let page_as = |dest: &'static str| {
        client()
            .get(format!("{}/settings", h.ibex))
            .query(&[("session", &session)])
            .header("sec-fetch-dest", dest)
            .send()
    };
    let response = page_as("document").await.unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(text.contains("opened outside Infobip"), "{text}");
    assert_eq!(page_as("iframe").await.unwrap().status(), 200);

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

    // Sign-in returns only to this app's pages: a `next` with a control character (which browsers strip, making
    // `/\t/evil.example` read as `//evil.example`) or any other target is refused before Infobip is asked.
    for hostile in [
        "/%09/evil.example",
        "/%0D%0A/evil.example",
        "//evil.example",
        "https://evil.example/",
        "/%5Cevil.example",
        "/settings/../x",
    ] {
        let response = client()
            .get(format!("{}/oauth/start?next={hostile}", h.ibex))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "next={hostile}");
        assert!(
            response.headers().get("location").is_none(),
            "next={hostile}"
        );
    }
    let response = client()
        .get(format!("{}/oauth/start?attempt={}", h.ibex, u32::MAX))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "the attempt counter saturates");

    // Pages that are not meant to be framed say so.
    let home = client().get(format!("{}/", h.ibex)).send().await.unwrap();
    let home_csp = home.headers()["content-security-policy"].to_str().unwrap();
    assert!(home_csp.ends_with("; frame-ancestors 'none'"), "{home_csp}");
    assert!(home_csp.contains("'nonce-"), "{home_csp}");
    let missing = client()
        .get(format!("{}/no-such-page", h.ibex))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing_csp = missing.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        missing_csp.ends_with("; frame-ancestors 'none'"),
        "{missing_csp}"
    );
    // The sign-in's own pages run no script at all.
    let refused = client()
        .get(format!("{}/oauth/start?next=//x", h.ibex))
        .send()
        .await
        .unwrap();
    let refused_csp = refused.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(refused_csp.contains("script-src 'none'"), "{refused_csp}");
    assert_eq!(refused.headers()["cache-control"], "no-store");
    h.finish().await;
}

/// Infobip's launch `state` reaches its authorize endpoint unchanged, so the configuration page signs in where
/// the browser withholds the portal's cookie from the frame (third-party cookies blocked); a launch signs in once;
/// the callback takes only a `state` this server started, once, on whichever instance it lands.
async fn launch_sign_in(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];
    let configure = "/exchange/my-apps/configure";
    let launch = portal_launch(&h, configure, ana.user_key).await;
    assert!(
        launch.starts_with(&format!("{}/settings?state=", h.ibex)),
        "{launch}"
    );
    let state = param(&launch, "state").unwrap();

    // Without a launch, a browser that withholds the cookie leaves Infobip not knowing who signs in: the setting
    // the rest of this test runs in.
    let (page, trail) =
        follow_withholding_cookie(&h, &format!("{}/settings", h.ibex), Some(ana.user_key)).await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("not signed in to Infobip"));

    // Opened as a page of its own (someone's launch handed over in a link), the sign-in does not start, and the
    // launch is not spent.
    let response = client()
        .get(format!("{}/settings?state={state}", h.ibex))
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("location").is_none());

    let (page, trail) = follow_withholding_cookie(&h, &launch, Some(ana.user_key)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    let authorize = trail
        .iter()
        .find(|u| u.contains("/exchange/1/oauth/authorize"))
        .unwrap();
    assert_eq!(
        param(authorize, "state").as_deref(),
        Some(state.as_str()),
        "Infobip's state goes to authorize unchanged"
    );
    let session = session_in(trail.last().unwrap());
    let response = client()
        .post(format!("{}/api/load_settings", h.ibex))
        .form(&[("session", session)])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["account_key"], ana.account_key, "{body}");

    // The callback's `state` is good once: the same answer again is refused, and no session is handed out.
    let callback = trail
        .iter()
        .find(|u| u.contains("/oauth/callback"))
        .unwrap();
    let again = client()
        .get(callback)
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.headers().get("location").is_none());
    assert!(again
        .text()
        .await
        .unwrap()
        .contains("This sign-in is not valid"));

    // The same launch replayed (the frame's address opened again) is refused by Infobip, and said so.
    let (page, trail) = follow_withholding_cookie(&h, &launch, Some(ana.user_key)).await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Sign-in was refused") && text.contains("launch state already used"),
        "{text}"
    );
    assert!(trail.iter().all(|u| !u.contains("session=")), "{trail:#?}");

    // A `state` this server did not start: a launch taken to Infobip by someone else, whose answer (a good code)
    // is brought to ibex's callback. Refused, as is a made-up one.
    let stolen = param(&portal_launch(&h, configure, ana.user_key).await, "state").unwrap();
    let redirect_uri = format!("{}/oauth/callback", h.ibex);
    let challenge = "A".repeat(43);
    let answer = client()
        .get(format!("{}/exchange/1/oauth/authorize", h.portal))
        .query(&[
            ("response_type", "code"),
            ("client_id", "ibex-test-client"),
            ("redirect_uri", redirect_uri.as_str()),
            ("state", stolen.as_str()),
            ("code_challenge", challenge.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let callback = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(param(&callback, "code").is_some(), "{callback}");
    for url in [
        callback,
        format!("{}/oauth/callback?code=x&state=made-up", h.ibex),
    ] {
        let response = client()
            .get(&url)
            .header("sec-fetch-dest", "iframe")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{url}");
        assert!(response.headers().get("location").is_none(), "{url}");
    }

    // Several instances share the database: a sign-in started by one finishes on another.
    let b = ibex::state::AppState::build(
        &<ibex::cli::config::Cli as clap::Parser>::try_parse_from(h.args.clone())
            .unwrap()
            .options,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_b = format!("http://{}", listener.local_addr().unwrap());
    let router_b = ibex::routes::router(b);
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(router_b)).await
    });
    let launch = portal_launch(&h, configure, ana.user_key).await;
    // The page Infobip opened takes its launch straight to Infobip's authorize endpoint.
    let started = client()
        .get(&launch)
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    let authorize = started.headers()["location"].to_str().unwrap().to_owned();
    let answer = client().get(&authorize).send().await.unwrap();
    let callback = answer.headers()["location"].to_str().unwrap().to_owned();
    let on_b = callback.replacen(&h.ibex, &base_b, 1);
    assert_ne!(on_b, callback);
    let response = client()
        .get(&on_b)
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{on_b}");
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/settings?session="), "{location}");
    h.finish().await;
}

/// Partner calls reach public addresses only: an account's URL setting cannot aim ibex at its own host, by IP
/// literal, IPv4-mapped IPv6 or a name that resolves there, neither in a signed call nor through "Test
/// connection". (Only loopback targets here: this test never sends traffic elsewhere, fixed or not. The
/// address classes themselves, metadata and private ranges among them, are tested in `partner::egress`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_addresses_are_public_only() {
    let h = Harness::start_with(Backend::Sqlite, &[]).await;
    let ana = &USERS[0];
    let session = session_for(&h, ana.user_key).await;
    let port = h.shop.rsplit(':').next().unwrap().to_owned();
    for url in [
        h.shop.clone(),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://127.9.9.9:{port}"),
        format!("http://2130706433:{port}"),
    ] {
        h.configure(
            common::ACCOUNT,
            &[("api_base_url", &url), ("api_key", common::SHOP_KEY)],
        )
        .await;
        let (status, body) = h.get("/fn/order-status/1001").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("partner_address_forbidden")),
            "{url}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("loopback"), "{url}: {body}");

        let (_, outcome) = test_connection(
            &h,
            &session,
            serde_json::json!({"api_base_url": url, "api_key": common::SHOP_KEY}),
        )
        .await;
        let message = outcome["Failed"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Not tested") && message.contains("loopback"),
            "{url}: {outcome}"
        );
    }
    assert_eq!(h.shop_requests().await, Vec::<serde_json::Value>::new());
    h.finish().await;
}

/// The secrets an account stored were given for one address: a change of the setting that decides where
/// requests go (the base URL) needs them entered again, for a save and for "Test connection" alike, so an
/// admin (or a stolen session) cannot send the stored API key to a server of their own. Probes are audited.
async fn secrets_follow_the_address(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];
    let session = session_for(&h, ana.user_key).await;
    let shop = h.shop.clone();
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
    // A listener of the "attacker's": it must never see the key.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = format!("http://{}", trap.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = trap.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    let (_, outcome) =
        test_connection(&h, &session, serde_json::json!({"api_base_url": elsewhere})).await;
    let errors = outcome["Invalid"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{outcome}");
    assert_eq!(errors[0]["field"], "api_key", "{outcome}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("again"),
        "{outcome}"
    );
    let outcome = save(
        &h,
        &session,
        1,
        serde_json::json!({"api_base_url": elsewhere}),
    )
    .await;
    assert_eq!(
        outcome["Invalid"]["errors"][0]["field"], "api_key",
        "{outcome}"
    );
    assert_eq!(stored_settings(&h, ana.account_key).await.version, 1);

    // The same URL again is no change; a new URL with the key typed again is the admin's own choice.
    let (_, outcome) =
        test_connection(&h, &session, serde_json::json!({"api_base_url": shop})).await;
    assert_eq!(outcome["Passed"]["status"], 200, "{outcome}");
    let (_, outcome) = test_connection(
        &h,
        &session,
        serde_json::json!({"api_base_url": elsewhere, "api_key": "typed-again"}),
    )
    .await;
    assert!(outcome.get("Failed").is_some(), "{outcome}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the probe with the key typed again reached the new address"
    );

    // Every probe is in the audit log: who, which fields were tried from the screen, and the outcome.
    let probes = h
        .state
        .settings
        .store()
        .probes(ana.account_key, 10)
        .await
        .unwrap();
    assert_eq!(probes.len(), 3, "{probes:?}");
    assert!(
        probes.iter().all(|p| p.tested_by.contains(ana.user_key)),
        "{probes:?}"
    );
    assert_eq!(probes[0].tested_fields, vec!["api_base_url", "api_key"]);
    assert!(probes[0].outcome.starts_with("failed"), "{probes:?}");
    assert!(probes[1].outcome.starts_with("passed"), "{probes:?}");
    assert!(probes[2].outcome.starts_with("invalid"), "{probes:?}");
    assert_eq!(probes[2].destination, "", "a refused probe is sent nowhere");
    assert_eq!(
        probes[0].destination,
        elsewhere.trim_start_matches("http://")
    );

    // People sync's address holds its own key the same way: moved, the People API key must be typed again.
    let version = stored_settings(&h, ana.account_key).await.version;
    let people = |url: &str, key: Option<&str>| {
        let mut changes = serde_json::json!({ "people_base_url": url });
        if let Some(key) = key {
            changes["people_api_key"] = key.into();
        }
        changes
    };
    let outcome = save(
        &h,
        &session,
        version,
        people("https://a1.api.infobip.com", Some("people-key")),
    )
    .await;
    assert_eq!(
        outcome,
        serde_json::json!({"Saved": {"version": version + 1}})
    );
    let outcome = save(
        &h,
        &session,
        version + 1,
        people("https://b2.api.infobip.com", None),
    )
    .await;
    let fields: Vec<&str> = outcome["Invalid"]["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["people_api_key"], "{outcome}");
    let outcome = save(
        &h,
        &session,
        version + 1,
        people("https://b2.api.infobip.com", Some("people-key-2")),
    )
    .await;
    assert_eq!(
        outcome,
        serde_json::json!({"Saved": {"version": version + 2}})
    );
    h.finish().await;
}

on_both_backends!(
    configuration_page_secrets_follow_the_address,
    secrets_follow_the_address
);
on_both_backends!(configuration_page_sign_in, sign_in);
on_both_backends!(configuration_page_launch_sign_in, launch_sign_in);
on_both_backends!(configuration_page_saving, saving);
on_both_backends!(configuration_page_connection_test, connection_test);
