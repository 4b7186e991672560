//! The Conversations context card over real HTTP, through the simulated portal's OAuth server and
//! Conversations API, on both settings backends: the card learns the account, the agent and the end user; the
//! Infobip token stays on the server (encrypted at rest, never in a URL or a body); an expired sign-in is renewed
//! without a stop; another account's conversation is not shown; Infobip's refusals become the card's states.

mod common;

use common::{client, follow, follow_as, portal_launch, Backend, Harness, PortalCookie};
use ibex_sim::conversations::CONVERSATIONS;
use ibex_sim::exchange::USERS;
use sqlx::Row;

/// Opens the card as Infobip launches it for `conversation`, signed in to the portal as `user`: with a launch
/// `state` the portal minted for `user` (the conversation is set here, so a test can name any).
async fn open_card(h: &Harness, user: &str, conversation: &str) -> (u16, String, Vec<String>) {
    open_card_as(h, user, conversation, PortalCookie::Sent).await
}

async fn open_card_as(
    h: &Harness,
    user: &str,
    conversation: &str,
    cookie: PortalCookie,
) -> (u16, String, Vec<String>) {
    let (page, trail) = follow_as(
        h,
        &card_launch(h, user, conversation).await,
        Some(user),
        cookie,
    )
    .await;
    let status = page.status().as_u16();
    (status, page.text().await.unwrap(), trail)
}

/// The card's address as the portal frames it (a fresh launch `state` for `user`), for `conversation`.
async fn card_launch(h: &Harness, user: &str, conversation: &str) -> String {
    let framed = portal_launch(h, "/conversations", user).await;
    let mut url = url::Url::parse(&framed).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    url.query_pairs_mut()
        .clear()
        .append_pair("state", &state)
        .append_pair("conversationId", conversation);
    url.to_string()
}

/// The card session id of a fresh card for `conversation`.
async fn h_last(h: &Harness, user: &str, conversation: &str) -> String {
    let (_, _, trail) = open_card(h, user, conversation).await;
    trail.last().cloned().unwrap_or_default()
}

fn card_id(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "card")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn sim_switches(h: &Harness, switches: serde_json::Value) {
    let response = client()
        .post(format!("{}/_sim/oauth", h.portal))
        .json(&switches)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// Everything this test binary logs, at debug level, in a buffer: installed once, shared by both backends' runs.
fn captured_log() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        struct Append(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Append {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || Append(sink.clone()))
            .with_ansi(false)
            .init();
        log
    })
    .clone()
}

async fn card(backend: Backend) {
    let log = captured_log();
    let h = Harness::start(backend).await;
    let ana = &USERS[0];
    let by_phone = &CONVERSATIONS[0];

    // The account has not configured the app yet: the card names the end user and says what is missing.
    let (status, html, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    assert_eq!(status, 200, "{trail:#?}\n{html}");
    assert!(
        html.contains("Ana Horvat") && html.contains("+385911234567"),
        "{html}"
    );
    assert!(html.contains("ana.admin"), "the agent is named: {html}");
    assert!(html.contains("not set up for this account yet"), "{html}");

    // Configured: the partner's record of the end user, found by phone, and their recent orders, through the
    // signed path's partner middleware with this account's settings.
    h.configure(
        ana.account_key,
        &[
            ("api_base_url", &h.shop),
            ("api_key", common::SHOP_KEY),
            ("max_orders", "2"),
        ],
    )
    .await;
    let (status, html, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    assert_eq!(status, 200, "{trail:#?}\n{html}");
    for expected in [
        "c-100",
        "gold",
        "Recent orders",
        "1 × Headlamp",
        "delivered",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }
    let seen = h.shop_requests().await;
    let list = seen.iter().rev().find(|r| r["path"] == "/orders").unwrap();
    assert!(
        list["query"]
            .as_str()
            .unwrap()
            .contains("customer_id=c-100"),
        "{list}"
    );
    assert!(
        list["query"].as_str().unwrap().contains("limit=2"),
        "settings apply: {list}"
    );

    // Values in the agent's locale: Ana's token says en-US, so money and dates are American; only http(s)
    // links become links, in a new tab.
    assert!(
        html.contains("EUR\u{a0}35.00 · 08/30/2026"),
        "en-US money and date: {html}"
    );
    h.configure(ana.account_key, &[("max_orders", "3")]).await;
    let (_, html, _) = open_card(&h, ana.user_key, by_phone.id).await;
    assert!(
        html.contains(
            r#"<a href="https://track.example.com/1001" target="_blank" rel="noopener noreferrer">"#
        ),
        "the shipped order links to its tracking page: {html}"
    );

    // The row's action: the card offers "Add note" on each order, and the server fills in the order itself.
    assert!(html.contains("Add note"), "{html}");
    let session_id = card_id(h_last(&h, ana.user_key, by_phone.id).await.as_str());
    let act = |key: serde_json::Value, typed: serde_json::Value| {
        let request =
            client()
                .post(format!("{}/api/card_action", h.ibex))
                .json(&serde_json::json!({
                    "card": session_id, "conversation_id": by_phone.id, "key": key, "typed": typed,
                }));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let done = act(
        serde_json::json!({"order_id": "1006"}),
        serde_json::json!({"text": "Called back about the headlamp"}),
    )
    .await;
    let message = done["Ok"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Note ") && message.ends_with("added to order 1006."),
        "{done}"
    );
    let sent = notes_sent(&h).await;
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["path"], "/orders/1006/notes");
    assert!(sent[0]["body"]
        .as_str()
        .unwrap()
        .contains("Called back about the headlamp"));
    // Hostile: another customer's order (1003 is Marko's), a key field the agent made up, an input the action
    // does not ask for, an empty note. None reaches the partner.
    for (key, typed, expected) in [
        (
            serde_json::json!({"order_id": "1003"}),
            serde_json::json!({"text": "x"}),
            "no longer in Order desk's list",
        ),
        (
            serde_json::json!({"order_id": "1006", "extra": "1"}),
            serde_json::json!({"text": "x"}),
            "no longer in Order desk's list",
        ),
        (
            serde_json::json!({"order_id": "1006"}),
            serde_json::json!({"text": "x", "order_id": "1003"}),
            "`order_id` cannot be typed",
        ),
        (
            serde_json::json!({"order_id": "1006"}),
            serde_json::json!({"text": "  "}),
            "text",
        ),
    ] {
        let answer = act(key.clone(), typed.clone()).await;
        let refused = answer["Err"].as_str().unwrap_or_default();
        assert!(refused.contains(expected), "{key} {typed}: {answer}");
    }
    assert_eq!(notes_sent(&h).await.len(), 1, "nothing more was sent");
    // Too long a note is refused before anything is sent.
    let answer = act(
        serde_json::json!({"order_id": "1006"}),
        serde_json::json!({"text": "x".repeat(2001)}),
    )
    .await;
    assert!(
        answer["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("longer than 2000"),
        "{answer}"
    );
    // The same confirmation sent five times at once (a double click, a retry) reaches the partner once, and
    // every copy gets the same answer.
    let same = || {
        act(
            serde_json::json!({"order_id": "1002"}),
            serde_json::json!({"text": "Sent once"}),
        )
    };
    let (a, b, c, d, e) = tokio::join!(same(), same(), same(), same(), same());
    let answers = [a, b, c, d, e];
    assert!(
        answers
            .iter()
            .all(|a| a == &answers[0] && a["Ok"].is_string()),
        "{answers:?}"
    );
    assert_eq!(notes_sent(&h).await.len(), 2, "one more note, not five");
    // The same across serving threads: each builds its own router (`IBEX_SERVE_THREADS`), and a copy accepted
    // by the other thread still finds the first.
    let other_thread = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = ibex::routes::router(h.state.for_serving_thread().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, axum::ServiceExt::into_make_service(router)).await
        });
        format!("http://{addr}")
    };
    let via = |base: String| {
        let request = client()
            .post(format!("{base}/api/card_action"))
            .json(&serde_json::json!({
                "card": session_id, "conversation_id": by_phone.id,
                "key": {"order_id": "1002"}, "typed": {"text": "Sent once, two threads"},
            }));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let (here, there) = tokio::join!(via(h.ibex.clone()), via(other_thread));
    assert!(here["Ok"].is_string() && here == there, "{here} {there}");
    assert_eq!(notes_sent(&h).await.len(), 3, "one more note, not two");
    // A card session of another conversation cannot act on this one.
    let answer = client()
        .post(format!("{}/api/card_action", h.ibex))
        .json(&serde_json::json!({
            "card": session_id, "conversation_id": CONVERSATIONS[1].id,
            "key": {"order_id": "1003"}, "typed": {"text": "x"},
        }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(
        answer["Err"]
            .as_str()
            .unwrap_or_default()
            .contains("sign-in to the card has ended"),
        "{answer}"
    );
    assert_eq!(notes_sent(&h).await.len(), 3);

    // An end user the shop does not know is said so, with the address.
    let (_, html, _) = open_card(&h, ana.user_key, CONVERSATIONS[2].id).await;
    assert!(
        html.contains("No customer for +15550100999 in Order desk"),
        "{html}"
    );
    let last = trail.last().unwrap();
    assert!(
        last.contains("/card?") && last.contains(by_phone.id),
        "{trail:#?}"
    );

    // The token is on the server only: not in any URL of the flow, not in the page, sealed at rest.
    let id = card_id(last);
    let sign_in = h.state.card_sessions.load(&id).await.unwrap().unwrap();
    assert_eq!(sign_in.account_key, ana.account_key);
    assert_eq!(
        (sign_in.email.as_str(), sign_in.locale.as_str()),
        (ana.email, ana.locale)
    );
    assert!(!sign_in.token.is_empty());
    assert!(
        trail.iter().all(|u| !u.contains(&sign_in.token)),
        "{trail:#?}"
    );
    assert!(!html.contains(&sign_in.token));
    assert!(
        !format!("{sign_in:?}").contains(&sign_in.token),
        "Debug shows no token"
    );
    let stored: Vec<Vec<u8>> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&h.db.url).await.unwrap();
            let rows = sqlx::query("SELECT data FROM card_sessions")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.iter().map(|r| r.get::<Vec<u8>, _>(0)).collect()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
            let rows = sqlx::query("SELECT data FROM tower_sessions.card_sessions")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.iter().map(|r| r.get::<Vec<u8>, _>(0)).collect()
        }
    };
    assert!(!stored.is_empty());
    for record in &stored {
        let record = String::from_utf8_lossy(record);
        assert!(
            record.contains(ana.user_key),
            "the records are the sign-ins'"
        );
        assert!(
            !record.contains(&sign_in.token),
            "the token is sealed at rest"
        );
    }

    // Switching the conversation switches the card; the email one is found by its address.
    let (_, html, _) = open_card(&h, ana.user_key, CONVERSATIONS[1].id).await;
    assert!(
        html.contains("Marko") && html.contains("marko@example.com"),
        "{html}"
    );
    assert!(html.contains("c-101") && html.contains("silver"), "{html}");

    // The partner failing is the card's state, not a broken page.
    h.shop_faults(serde_json::json!({"status": 500, "fail_next": 5}))
        .await;
    let (status, html, _) = open_card(&h, ana.user_key, by_phone.id).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Order desk is not answering right now"),
        "{html}"
    );
    h.shop_faults(serde_json::json!({})).await;

    // Another account's conversation is not shown, whatever the URL says.
    let (_, html, _) = open_card(&h, ana.user_key, CONVERSATIONS[3].id).await;
    assert!(
        html.contains("Conversation not found") && !html.contains("Jane"),
        "{html}"
    );

    // A made-up or tampered card session starts a new sign-in instead of showing anything.
    let forged = format!(
        "{}/card?conversationId={}&card=AAAAAAAAAAAAAAAAAAAAAA",
        h.ibex, by_phone.id
    );
    let response = client()
        .get(&forged)
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/oauth/start?next=%2Fcard"));

    // Without Infobip's launch parameters the card says where it is opened from.
    for url in [
        format!("{}/card", h.ibex),
        format!("{}/card?conversationId={}", h.ibex, by_phone.id),
        format!("{}/card?state=s&conversationId=..%2Fx", h.ibex),
    ] {
        let response = client()
            .get(&url)
            .header("sec-fetch-dest", "iframe")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{url}");
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("Open the card from a conversation"));
    }

    // An expired token is renewed without the agent doing anything: the card comes back, with a new session.
    sim_switches(&h, serde_json::json!({"expires_in": 1})).await;
    let (_, _, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    let short = card_id(trail.last().unwrap());
    sim_switches(&h, serde_json::json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (page, trail) = follow(
        &h,
        &format!(
            "{}/card?conversationId={}&card={short}",
            h.ibex, by_phone.id
        ),
        Some(ana.user_key),
    )
    .await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    assert!(page.text().await.unwrap().contains("Ana Horvat"));
    assert_ne!(card_id(trail.last().unwrap()), short, "{trail:#?}");

    // Infobip refusing a token that has not expired (revoked) is renewed just as silently: a real redirect
    // through a new sign-in, and the card again.
    let (_, _, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    let before = card_id(trail.last().unwrap());
    sim_switches(&h, serde_json::json!({"revoke_tokens": true})).await;
    let (page, trail) = follow(
        &h,
        &format!(
            "{}/card?conversationId={}&card={before}",
            h.ibex, by_phone.id
        ),
        Some(ana.user_key),
    )
    .await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    assert!(page.text().await.unwrap().contains("c-100"));
    assert!(
        trail.iter().any(|u| u.contains("/oauth/start")),
        "{trail:#?}"
    );
    assert_ne!(card_id(trail.last().unwrap()), before);
    // A token Infobip keeps refusing ends, after a few silent tries, on a message instead of a loop.
    sim_switches(&h, serde_json::json!({"messages_status": 401})).await;
    let (status, html, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    assert_eq!(status, 200, "{trail:#?}");
    assert!(html.contains("keeps refusing"), "{html}");
    sim_switches(&h, serde_json::json!({})).await;

    // A card session shows the conversation it was opened for, and no other of the account's.
    let (_, _, trail) = open_card(&h, ana.user_key, by_phone.id).await;
    let id = card_id(trail.last().unwrap());
    let other = client()
        .get(format!(
            "{}/card?conversationId={}&card={id}",
            h.ibex, CONVERSATIONS[1].id
        ))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        303,
        "another conversation needs its own sign-in"
    );
    let direct = client()
        .post(format!("{}/api/load_card", h.ibex))
        .form(&[
            ("card", id.as_str()),
            ("conversation_id", CONVERSATIONS[1].id),
            ("attempt", "0"),
        ])
        .send()
        .await
        .unwrap();
    let body = direct.text().await.unwrap();
    assert!(!body.contains("Marko") && !body.contains("c-101"), "{body}");
    for bad in ["..", "../../people/2/persons", &"x".repeat(500)] {
        let response = client()
            .post(format!("{}/api/load_card", h.ibex))
            .form(&[
                ("card", id.as_str()),
                ("conversation_id", bad),
                ("attempt", "0"),
            ])
            .send()
            .await
            .unwrap();
        let body = response.text().await.unwrap();
        assert!(body.contains("ConversationNotFound"), "{bad}: {body}");
    }

    // A callback opened as a page of its own (a link someone sent) is not used: sign-in finishes in the frame.
    let response = client()
        .get(format!("{}/oauth/callback?code=x&state=y", h.ibex))
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // So is the card itself, whatever it carries.
    let response = client()
        .get(format!(
            "{}/card?state=s&conversationId={}",
            h.ibex, by_phone.id
        ))
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("opened outside Infobip"));

    // Infobip refusing or rate-limiting is said plainly, with a way to try again.
    sim_switches(&h, serde_json::json!({"messages_status": 403})).await;
    let (status, html, _) = open_card(&h, ana.user_key, by_phone.id).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Infobip refused the card") && html.contains("Try again"),
        "{html}"
    );
    sim_switches(
        &h,
        serde_json::json!({"messages_status": 429, "retry_after_secs": 30}),
    )
    .await;
    let (_, html, _) = open_card(&h, ana.user_key, by_phone.id).await;
    assert!(html.contains("Try again in 30 s"), "{html}");
    sim_switches(&h, serde_json::json!({})).await;

    // The card may be framed by the portal only.
    let (page, _) = follow(
        &h,
        &card_launch(&h, ana.user_key, by_phone.id).await,
        Some(ana.user_key),
    )
    .await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.ends_with(&format!("; frame-ancestors {}", h.portal)),
        "{csp}"
    );

    // Not one of the tokens Infobip issued in all of the above (sign-ins, renewals, refusals, partner calls) is
    // in any line logged at debug level.
    let issued = h.issued_tokens().await;
    assert!(issued.len() >= 5, "{issued:?}");
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        logged.contains("/oauth/callback"),
        "the log was captured: {logged}"
    );
    for token in &issued {
        assert!(
            !logged.contains(token.as_str()),
            "a token in the log:\n{logged}"
        );
    }
    h.finish().await;
}

on_both_backends!(context_card, card);

/// The card signs in with Infobip's launch `state`, passed to authorize unchanged, where the browser withholds
/// the portal's cookie from the frame; a replayed launch ends on a page that says so; a `state` ibex did not start
/// is refused at the callback.
async fn card_launch_without_the_portal_cookie(backend: Backend) {
    let h = Harness::start(backend).await;
    let ana = &USERS[0];
    let by_phone = &CONVERSATIONS[0];
    let launch = card_launch(&h, ana.user_key, by_phone.id).await;
    let (page, trail) = follow_as(
        &h,
        &launch,
        Some(ana.user_key),
        PortalCookie::WithheldFromAuthorize,
    )
    .await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Ana Horvat") && html.contains("ana.admin"),
        "{html}"
    );
    let state = url::Url::parse(&launch)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let authorize = trail
        .iter()
        .find(|u| u.contains("/exchange/1/oauth/authorize"))
        .unwrap();
    assert!(
        url::Url::parse(authorize)
            .unwrap()
            .query_pairs()
            .any(|(k, v)| k == "state" && v == state),
        "Infobip's state goes to authorize unchanged: {authorize}"
    );
    let id = card_id(trail.last().unwrap());
    let sign_in = h.state.card_sessions.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (sign_in.user_key.as_str(), sign_in.conversation_id.as_str()),
        (ana.user_key, by_phone.id)
    );

    // The same launch again (the frame reloaded at its first address): Infobip refuses it, the card says so.
    let (page, trail) = follow_as(
        &h,
        &launch,
        Some(ana.user_key),
        PortalCookie::WithheldFromAuthorize,
    )
    .await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Sign-in was refused") && text.contains("launch state already used"),
        "{text}"
    );
    assert!(trail.iter().all(|u| !u.contains("card=")), "{trail:#?}");

    // Without the portal cookie, a sign-in without a launch (a renewal) is not known to Infobip: said plainly.
    let renewal = format!(
        "{}/card?conversationId={}&card=AAAAAAAAAAAAAAAAAAAAAA",
        h.ibex, by_phone.id
    );
    let (page, trail) = follow_as(
        &h,
        &renewal,
        Some(ana.user_key),
        PortalCookie::WithheldFromAuthorize,
    )
    .await;
    assert_eq!(page.status(), 403, "{trail:#?}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("not signed in to Infobip"));

    // A `state` ibex did not start is refused at the callback, and no card session is made.
    let response = client()
        .get(format!("{}/oauth/callback?code=x&state={state}", h.ibex))
        .header("sec-fetch-dest", "iframe")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    h.finish().await;
}

on_both_backends!(
    context_card_launch_state,
    card_launch_without_the_portal_cookie
);

/// Conversations' Custom cards: the account's bearer token picks the account, and the answer is that account's
/// card data, from the same `[card]` declaration and partner middleware as the framed card.
async fn custom_cards(backend: Backend) {
    let h = Harness::start(backend).await;
    let (acme, globex) = (USERS[0].account_key, USERS[2].account_key);
    let call = |token: Option<String>, query: &'static str| {
        let request = client().get(format!("{}/custom-card?{query}", h.ibex));
        let request = match token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let ana = "customerNumber=%2B385911234567&conversationId=c1&locale=de-DE";

    let (status, body) = call(None, ana).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_card_token"))
    );
    let issue = |account: &'static str| {
        let store = h.state.settings.store().clone();
        async move {
            let issued = app::settings::card_tokens::issue();
            store
                .replace_card_token(account, &issued.digest, &issued.hint, "test")
                .await
                .unwrap();
            issued.token
        }
    };
    let acme_token = issue(acme).await;
    let (status, body) = call(Some(format!("{acme_token}x")), ana).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unknown_card_token"))
    );
    let (status, body) = call(Some(acme_token.clone()), "conversationId=c1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("missing_parameter"))
    );
    let (status, body) = call(Some(acme_token.clone()), ana).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("not_configured"))
    );

    h.configure(
        acme,
        &[
            ("api_base_url", &h.shop),
            ("api_key", common::SHOP_KEY),
            ("max_orders", "3"),
        ],
    )
    .await;
    let (status, body) = call(Some(acme_token.clone()), ana).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "found");
    assert_eq!(body["title"], "Ana Horvat");
    assert!(
        body["fields"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"label": "Customer ID", "value": "c-100", "url": null})),
        "{body}"
    );
    let items = body["list"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{body}");
    assert_eq!(
        items[2]["values"],
        serde_json::json!(["59,90\u{a0}€", "18.11.2026"]),
        "de-DE money and date: {body}"
    );
    assert_eq!(items[2]["url"], "https://track.example.com/1001");

    // A live chat's customerNumber is the visitor's id: said so, and not sent to the shop as a phone number.
    let (status, body) = call(
        Some(acme_token.clone()),
        "customerNumber=5f1c9a7e-2d4b&channel=LIVE_CHAT&conversationId=c2",
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("no_address")),
        "{body}"
    );
    assert!(
        !serde_json::to_string(&h.shop_requests().await)
            .unwrap()
            .contains("5f1c9a7e-2d4b"),
        "no partner call"
    );

    // Hostile queries: a second customerNumber (as an unencoded display name could bring), control characters.
    for query in [
        "customerNumber=%2B385911234567&customerNumber=marko%40example.com",
        "customerNumber=%2B3859%0d%0aX",
        "customerNumber=%2B385911234567&customerDisplayName=%00",
    ] {
        let (status, body) = call(Some(acme_token.clone()), query).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{query}: {body}"
        );
    }

    // Another account's token opens that account's settings only: Globex has configured nothing, so Ana's data
    // (Acme's customer) is not shown whatever number is asked for.
    let globex_token = issue(globex).await;
    let (status, body) = call(Some(globex_token), ana).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("not_configured"))
    );

    // A new token replaces the old one at once.
    let newer = issue(acme).await;
    let (status, _) = call(Some(acme_token), ana).await;
    assert_eq!(status, 401);
    let (status, _) = call(Some(newer), "customerNumber=nobody%40example.com").await;
    assert_eq!(status, 200);
    h.finish().await;
}

on_both_backends!(custom_card_webhook, custom_cards);

/// The seeded conversation with this id.
fn conversation(id: &str) -> &'static ibex_sim::conversations::SimConversation {
    CONVERSATIONS.iter().find(|c| c.id == id).unwrap()
}

/// The card asks Infobip for what it needs (the first inbound message, by the document's parameters) and the
/// simulator holds it to Infobip's OpenAPI: a campaign of 12 outbound messages before the customer wrote still
/// shows the customer; a live chat, whose `from` is the widget's visitor id, is said so and never sent to the
/// partner as a phone number.
async fn messages(backend: Backend) {
    let h = Harness::start(backend).await;
    let ida = &USERS[3];
    let campaign = conversation("7a3b9c04-initech-0004");
    let live_chat = conversation("7a3b9c04-initech-0005");
    assert_eq!(
        (campaign.outbound_first, live_chat.channel),
        (12, "LIVE_CHAT")
    );
    h.configure(
        ida.account_key,
        &[("api_base_url", &h.shop), ("api_key", common::SHOP_KEY)],
    )
    .await;

    // The live chat: named by what Infobip gives, the channel said plainly, and not one request to the partner.
    let before = h.shop_requests().await.len();
    let (status, html, trail) = open_card(&h, ida.user_key, live_chat.id).await;
    assert_eq!(status, 200, "{trail:#?}\n{html}");
    assert!(
        html.contains("This channel does not share the customer")
            && html.contains("phone number or email"),
        "{html}"
    );
    assert!(
        html.contains("Website visitor") && html.contains("Chat ID"),
        "{html}"
    );
    let seen = h.shop_requests().await;
    assert_eq!(seen.len(), before, "no partner call: {seen:#?}");
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains(live_chat.from),
        "{seen:#?}"
    );

    // The campaign: the customer wrote after 12 outbound messages, and the card still finds them.
    let (status, html, trail) = open_card(&h, ida.user_key, campaign.id).await;
    assert_eq!(status, 200, "{trail:#?}\n{html}");
    assert!(
        html.contains("Jane Doe") && html.contains("+441632960961"),
        "{html}"
    );
    assert!(html.contains("c-102") && html.contains("bronze"), "{html}");
    assert!(!html.contains("Nobody has written"), "{html}");
    let seen = h.shop_requests().await;
    assert!(seen.len() > before, "the partner was asked this time");
    let lookup = seen
        .iter()
        .rev()
        .find(|r| r["path"] == "/customers/lookup")
        .unwrap();
    assert_eq!(
        lookup["headers"]["x-customer-phone"], "+441632960961",
        "{lookup}"
    );

    // The sim holds a caller to the document: the old request (no direction, no limit) gets the default page
    // of 10, all outbound, so a reader of it would find nobody; an undocumented parameter is a 400.
    let token = h.issued_tokens().await.pop().unwrap();
    let messages_url = format!(
        "{}/ccaas/1/conversations/{}/messages",
        h.portal, campaign.id
    );
    let get = |query: &'static str| {
        let request = client()
            .get(format!("{messages_url}{query}"))
            .header("Authorization", format!("IBSSO {token}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, old) = get("").await;
    assert_eq!(status, 200, "{old}");
    let page = old["messages"].as_array().unwrap();
    assert_eq!(page.len(), 10, "{old}");
    assert!(
        page.iter().all(|m| m["direction"] == "OUTBOUND"),
        "no inbound message on the default page: {old}"
    );
    assert_eq!(old["pagination"]["limit"], 10);
    let (status, asked) = get("?direction=INBOUND&limit=1&orderBy=id:asc").await;
    assert_eq!(status, 200, "{asked}");
    assert_eq!(asked["messages"][0]["from"], "+441632960961", "{asked}");
    let (status, refused) = get("?direction=INBOUND&size=1").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["requestError"]["serviceException"]["messageId"], "BAD_REQUEST",
        "{refused}"
    );
    assert!(
        refused["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap()
            .contains("`size` is not a parameter"),
        "{refused}"
    );

    // An unknown conversation is the document's 400 "Invalid id" (messageId NOT_FOUND): the card says so.
    let (status, html, _) = open_card(&h, ida.user_key, "7a3b9c04-initech-9999").await;
    assert_eq!(status, 200);
    assert!(html.contains("Conversation not found"), "{html}");

    // The documented throttling, per account: over it, Infobip's 429 and its Retry-After reach the agent.
    let throttle = |per_minute: usize| {
        client()
            .post(format!("{}/_sim/conversations", h.portal))
            .json(&serde_json::json!({"requests_per_minute": per_minute}))
            .send()
    };
    assert!(throttle(1).await.unwrap().status().is_success());
    let (_, html, _) = open_card(&h, ida.user_key, campaign.id).await;
    assert!(html.contains("c-102"), "the minute's one call: {html}");
    let (_, html, _) = open_card(&h, ida.user_key, campaign.id).await;
    assert!(
        html.contains("Infobip is limiting requests right now. Try again in"),
        "{html}"
    );
    assert!(throttle(500).await.unwrap().status().is_success());
    h.finish().await;

    // The scheme is the token answer's `token_type` unless the operator sets one: a wrong one is refused by
    // Infobip, and the card ends on its message after the silent renewals.
    let h = Harness::start_with(
        backend,
        &[
            "--allow-loopback-partners",
            "--infobip-auth-scheme",
            "Bearer",
        ],
    )
    .await;
    let (status, html, _) = open_card(&h, ida.user_key, campaign.id).await;
    assert_eq!(status, 200);
    assert!(html.contains("keeps refusing"), "{html}");
    h.finish().await;
}

on_both_backends!(conversation_messages, messages);

/// The notes the demo shop has been asked to add.
async fn notes_sent(h: &Harness) -> Vec<serde_json::Value> {
    h.shop_requests()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap_or_default().ends_with("/notes")
        })
        .collect()
}
