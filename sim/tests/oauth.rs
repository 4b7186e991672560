//! The simulated Exchange OAuth server over real HTTP: PKCE S256, state round-trip, single-use codes, the
//! redirect URI check, the switches that make it refuse or issue short-lived tokens, and the launch `state` the
//! portal frames the app with (good once, for its user, without the portal cookie).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ibex_sim::exchange::{router, AppListing, USERS};
use serde_json::Value;
use sha2::{Digest, Sha256};

const REDIRECT: &str = "http://localhost:3000/oauth/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-long-enough-verifier";

struct Sim {
    base: String,
    http: reqwest::Client,
}

async fn start() -> Sim {
    let app = AppListing {
        name: "Order desk".into(),
        client_id: "ibex-test".into(),
        client_secret: None,
        redirect_uris: vec![REDIRECT.into()],
        settings_url: "http://localhost:3000/settings".into(),
        card_url: "http://localhost:3000/card".into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(app)).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Sim { base, http }
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Sim {
    /// Runs the authorization request as the signed-in portal user (or none) and returns the redirect's query.
    async fn authorize(&self, user: Option<&str>, extra: &[(&str, &str)]) -> url::Url {
        let mut params = vec![
            ("response_type", "code".to_string()),
            ("client_id", "ibex-test".into()),
            ("redirect_uri", REDIRECT.into()),
            ("scope", "conversations".into()),
            ("state", "st-123".into()),
            ("code_challenge", challenge(VERIFIER)),
        ];
        for (k, v) in extra {
            params.retain(|(pk, _)| pk != k);
            // An empty value leaves the parameter out.
            if !v.is_empty() {
                params.push((k, v.to_string()));
            }
        }
        let mut request = self
            .http
            .get(format!("{}/exchange/1/oauth/authorize", self.base))
            .query(&params);
        if let Some(u) = user {
            request = request.header("cookie", format!("sim_portal_user={u}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 303, "{:?}", response.text().await);
        url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// Checks the token of a token answer as Infobip's APIs would (`Authorization: IBSSO <token>`).
    async fn token_info(&self, answer: &Value) -> reqwest::Response {
        let token = answer["token"].as_str().unwrap();
        self.http
            .get(format!("{}/exchange/1/oauth/tokeninfo", self.base))
            .header("authorization", format!("IBSSO {token}"))
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, code: &str, verifier: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/exchange/1/oauth/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", "ibex-test"),
                ("redirect_uri", REDIRECT),
            ])
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

impl Sim {
    /// The address the portal frames the app at, on `page` (the workspace or the configuration page), for `user`.
    async fn framed_src(&self, page: &str, user: &str) -> url::Url {
        let html = self
            .http
            .get(format!("{}{page}", self.base))
            .header("cookie", format!("sim_portal_user={user}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let frame = &html[html.find("<iframe").expect("a framed app")..];
        let start = frame.find("src=\"").unwrap() + 5;
        let src = &frame[start..start + frame[start..].find('"').unwrap()];
        url::Url::parse(&src.replace("&amp;", "&")).unwrap()
    }

    /// The launch `state` of a fresh framing of `page` for `user`.
    async fn launch(&self, page: &str, user: &str) -> String {
        param(&self.framed_src(page, user).await, "state").expect("a launch state")
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn code_flow_with_pkce_returns_account_and_user() {
    let sim = start().await;
    let ana = &USERS[0];
    let back = sim.authorize(Some(ana.user_key), &[]).await;
    assert!(back.as_str().starts_with(REDIRECT));
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));
    let code = param(&back, "code").unwrap();

    let (status, body) = sim
        .token(&code, "wrong-verifier-wrong-verifier-wrong-verifier-x")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The failed attempt used the code up: single use, whatever the outcome.
    let (status, _) = sim.token(&code, VERIFIER).await;
    assert_eq!(status, 400);

    let code = param(&sim.authorize(Some(ana.user_key), &[]).await, "code").unwrap();
    let (status, body) = sim.token(&code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accountKey"], ana.account_key);
    assert_eq!(body["userKey"], ana.user_key);
    assert_eq!(body["token_type"], "IBSSO");
    assert_eq!(body["expires_in"], 3600);
    for field in ["token", "username", "email", "locale"] {
        assert!(body[field].is_string(), "{field}: {body}");
    }
    let info: Value = sim.token_info(&body).await.json().await.unwrap();
    assert_eq!(info["accountKey"], ana.account_key);
}

#[tokio::test]
async fn refusals_come_back_to_the_app_with_state() {
    let sim = start().await;
    let back = sim.authorize(None, &[]).await;
    assert_eq!(param(&back, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"));

    let back = sim
        .authorize(
            Some(USERS[2].user_key),
            &[("code_challenge_method", "plain")],
        )
        .await;
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));

    sim.http
        .post(format!("{}/_sim/oauth", sim.base))
        .json(&serde_json::json!({"refuse": true}))
        .send()
        .await
        .unwrap();
    let back = sim.authorize(Some(USERS[2].user_key), &[]).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn unregistered_redirect_is_never_followed() {
    let sim = start().await;
    let response = sim
        .http
        .get(format!("{}/exchange/1/oauth/authorize", sim.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", "ibex-test"),
            ("redirect_uri", "https://evil.example/cb"),
            ("state", "x"),
        ])
        .header("cookie", format!("sim_portal_user={}", USERS[0].user_key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn short_lived_tokens_on_request() {
    let sim = start().await;
    sim.http
        .post(format!("{}/_sim/oauth", sim.base))
        .json(&serde_json::json!({"expires_in": 0}))
        .send()
        .await
        .unwrap();
    let code = param(&sim.authorize(Some(USERS[1].user_key), &[]).await, "code").unwrap();
    let (status, body) = sim.token(&code, VERIFIER).await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(0)));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let info = sim.token_info(&body).await;
    assert_eq!(info.status(), 401);
}

/// The portal frames the card and the configuration page with a launch `state`; the authorize endpoint takes it as
/// the sample app passes it (unchanged) and signs in the user it was minted for, with no portal cookie at all.
#[tokio::test]
async fn a_launch_state_signs_in_without_the_portal_cookie() {
    let sim = start().await;
    let (ana, bob) = (&USERS[0], &USERS[1]);

    let card = sim.framed_src("/conversations", bob.user_key).await;
    assert!(
        card.as_str().starts_with("http://localhost:3000/card?"),
        "{card}"
    );
    assert!(param(&card, "conversationId").is_some(), "{card}");
    let launch = param(&card, "state").unwrap();
    assert!(
        launch.starts_with(ibex_sim::exchange::LAUNCH_PREFIX),
        "{launch}"
    );
    let back = sim.authorize(None, &[("state", launch.as_str())]).await;
    assert_eq!(param(&back, "state").as_deref(), Some(launch.as_str()));
    let code = param(&back, "code").unwrap_or_else(|| panic!("{back}"));
    let (status, body) = sim.token(&code, VERIFIER).await;
    assert_eq!(
        (status, body["userKey"].as_str()),
        (200, Some(bob.user_key)),
        "{body}"
    );

    // The configuration page's launch likewise; the launch names the user, whoever's cookie comes along.
    let launch = sim
        .launch("/exchange/my-apps/configure", ana.user_key)
        .await;
    let back = sim
        .authorize(Some(USERS[2].user_key), &[("state", launch.as_str())])
        .await;
    let code = param(&back, "code").unwrap_or_else(|| panic!("{back}"));
    let (status, body) = sim.token(&code, VERIFIER).await;
    assert_eq!(
        (status, body["userKey"].as_str()),
        (200, Some(ana.user_key)),
        "{body}"
    );
    assert_eq!(body["accountKey"], ana.account_key);

    // Without a `state` the portal cookie decides, as before.
    let back = sim.authorize(Some(ana.user_key), &[("state", "")]).await;
    assert!(param(&back, "code").is_some(), "{back}");
    assert_eq!(param(&back, "state"), None);
    let back = sim.authorize(None, &[("state", "")]).await;
    assert_eq!(param(&back, "error").as_deref(), Some("login_required"));
}

/// A launch `state` is good once, for a while, and only as the portal minted it: a replay, an expired or a
/// made-up one is refused back to the app (with its `state`), and no portal cookie rescues it.
#[tokio::test]
async fn replayed_expired_or_forged_launch_states_are_refused() {
    let sim = start().await;
    let ana = &USERS[0];
    let launch = sim.launch("/conversations", ana.user_key).await;
    let back = sim.authorize(None, &[("state", launch.as_str())]).await;
    assert!(param(&back, "code").is_some(), "{back}");
    for cookie in [None, Some(ana.user_key)] {
        let back = sim.authorize(cookie, &[("state", launch.as_str())]).await;
        assert_eq!(param(&back, "code"), None, "{back}");
        assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
        assert_eq!(
            param(&back, "error_description").as_deref(),
            Some("launch state already used")
        );
        assert_eq!(param(&back, "state").as_deref(), Some(launch.as_str()));
    }

    let forged = format!(
        "{}{}",
        ibex_sim::exchange::LAUNCH_PREFIX,
        "made-up-by-someone"
    );
    let back = sim
        .authorize(Some(ana.user_key), &[("state", forged.as_str())])
        .await;
    assert_eq!(
        (
            param(&back, "error").as_deref(),
            param(&back, "error_description").as_deref()
        ),
        (Some("invalid_request"), Some("unknown launch state"))
    );

    sim.http
        .post(format!("{}/_sim/oauth", sim.base))
        .json(&serde_json::json!({"launch_ttl_secs": 0}))
        .send()
        .await
        .unwrap();
    let launch = sim
        .launch("/exchange/my-apps/configure", ana.user_key)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let back = sim
        .authorize(Some(ana.user_key), &[("state", launch.as_str())])
        .await;
    assert_eq!(
        (
            param(&back, "error").as_deref(),
            param(&back, "error_description").as_deref()
        ),
        (Some("invalid_request"), Some("launch state expired"))
    );
}
