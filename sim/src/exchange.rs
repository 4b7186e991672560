//! The local Exchange: a portal on its own site that frames the app's Settings URL, and the OAuth 2.0
//! authorization server of `/exchange/1/oauth/*` as Infobip's sample app uses it (authorization code with PKCE
//! S256, `state` round-tripped, a token answer carrying `accountKey` and `userKey`).
//!
//! The portal opens the app (the card beside a conversation, the configuration page under Exchange → My apps)
//! with a launch `state` it mints for the signed-in portal user. Infobip's sample app
//! (`infobip-community/restaurant-reservations-demo`, `client/src/components/AuthProvider.tsx`, commits
//! "SI-2114: Reworked OAuth to use state param" and "SI-2114: Added possibility to omit state parameter and use
//! portal credentials if user is logged in") passes that `state` unchanged to the authorize endpoint, and omits
//! it only when it has none, to "use portal credentials". So the authorization endpoint here answers a launch
//! `state` for the user it was minted for, once, without any cookie; refuses a launch `state` that is unknown,
//! expired or already used; and for any other request (no `state`, or the app's own) falls back to the portal's
//! own cookie, answering at once for a signed-in portal user. Switches under `/_sim/oauth` make it refuse, hand out
//! short-lived tokens, expire launches early or answer slowly.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::conversations::{SimConversation, CONVERSATIONS};

/// An account of the simulated Infobip, with the users who may sign in to it.
#[derive(Debug, Clone, Serialize)]
pub struct SimUser {
    pub user_key: &'static str,
    pub username: &'static str,
    pub email: &'static str,
    pub account_key: &'static str,
    pub account_name: &'static str,
    pub locale: &'static str,
    /// The user's roles in the account, answered only with `older_token_fields` (older Infobip documents show
    /// `roles` and `groups` in the token answer; the current ones do not, and none gives their values).
    pub roles: &'static [&'static str],
}

pub const USERS: &[SimUser] = &[
    SimUser {
        user_key: "U-ANA-7F21",
        username: "ana.admin",
        email: "ana@acme.example",
        account_key: "8F3A2C51D0B94E17A6C2F0D9E4B7A113",
        account_name: "Acme Retail",
        locale: "en-US",
        roles: &["ACCOUNT_ADMIN"],
    },
    SimUser {
        user_key: "U-BOB-19C4",
        username: "bob.agent",
        email: "bob@acme.example",
        account_key: "8F3A2C51D0B94E17A6C2F0D9E4B7A113",
        account_name: "Acme Retail",
        locale: "en-GB",
        roles: &["AGENT"],
    },
    SimUser {
        user_key: "U-EVE-5D80",
        username: "eve.owner",
        email: "eve@globex.example",
        account_key: "2B7E91C4A85F4D3EB0196C7D2E8F5A40",
        account_name: "Globex Travel",
        locale: "hr-HR",
        roles: &["ACCOUNT_ADMIN"],
    },
    // An account of its own for the accessibility tests, whose saves must not disturb the others'.
    SimUser {
        user_key: "U-IDA-2E93",
        username: "ida.designer",
        email: "ida@initech.example",
        account_key: "6D1E0F2A3B4C5D6E7F8091A2B3C4D5E6",
        account_name: "Initech Support",
        locale: "de-DE",
        roles: &["ACCOUNT_ADMIN"],
    },
    // A second user of Globex, an agent: who may look at the configuration page but not change it once the
    // account has an admin.
    SimUser {
        user_key: "U-FINN-8A36",
        username: "finn.agent",
        email: "finn@globex.example",
        account_key: "2B7E91C4A85F4D3EB0196C7D2E8F5A40",
        account_name: "Globex Travel",
        locale: "en-IE",
        roles: &["AGENT"],
    },
];

fn user(user_key: &str) -> Option<&'static SimUser> {
    USERS.iter().find(|u| u.user_key == user_key)
}

/// What the portal knows about the one app it hosts (as App shell would).
#[derive(Debug, Clone)]
pub struct AppListing {
    pub name: String,
    pub client_id: String,
    /// Optional: a confidential client may send it; checked only when set.
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub settings_url: String,
    /// The app's context card (the Conversations manifest's `card.src`), framed beside a conversation.
    pub card_url: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct OAuthSwitches {
    /// Answer the authorization request with `error=access_denied`.
    #[serde(default)]
    pub refuse: bool,
    /// Lifetime of issued tokens in seconds (default 3600).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Delay every OAuth answer by this long.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer the Conversations messages API with this status instead (403, 429, 500...).
    #[serde(default)]
    pub messages_status: Option<u16>,
    /// `Retry-After` seconds sent with a forced 429.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Delay every messages answer by this long.
    #[serde(default)]
    pub messages_delay_ms: u64,
    /// Forget every token issued so far (as a revocation or a restart would), once, when set.
    #[serde(default)]
    pub revoke_tokens: bool,
    /// Lifetime of launch `state`s in seconds (default `LAUNCH_LIFETIME`), checked when one is used.
    #[serde(default)]
    pub launch_ttl_secs: Option<u64>,
    /// Answer the token request with `roles` and `groups` too, as older Infobip documents show it
    /// (`exchange-contract.md`, token answer): a list of the user's role names, and an empty list of groups.
    #[serde(default)]
    pub older_token_fields: bool,
}

struct Grant {
    user: &'static SimUser,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    issued: Instant,
}

/// A launch the portal started: who was signed in to the portal, for which app. Kept after use or expiry (until
/// `LAUNCH_KEPT`) so that a replay is told apart from a forgery in the refusal.
struct Launch {
    user: &'static SimUser,
    client_id: String,
    issued: Instant,
    used: bool,
}

struct Exchange {
    app: AppListing,
    launches: Mutex<HashMap<String, Launch>>,
    switches: Mutex<OAuthSwitches>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, (&'static SimUser, Instant, Duration)>>,
    /// Every token handed out, revoked or not, so a test can look for them where they must never be.
    issued: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a launch `state` may wait for its authorization request: the app sends it as it loads.
const LAUNCH_LIFETIME: Duration = Duration::from_secs(5 * 60);
const LAUNCH_KEPT: Duration = Duration::from_secs(60 * 60);
/// The simulator's launch `state`s start with this, so a made-up one is told from an app's own `state` (which the
/// sample sends none of, and which this server treats like a missing one). Infobip's format is not published.
pub const LAUNCH_PREFIX: &str = "ibl1.";
const SESSION_COOKIE: &str = "sim_portal_user";

pub fn router(app: AppListing) -> Router {
    let state = Arc::new(Exchange {
        app,
        launches: Mutex::new(HashMap::new()),
        switches: Mutex::new(OAuthSwitches::default()),
        grants: Mutex::new(HashMap::new()),
        tokens: Mutex::new(HashMap::new()),
        issued: Mutex::new(Vec::new()),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/exchange/my-apps") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/exchange/my-apps", get(my_apps))
        .route("/exchange/my-apps/configure", get(configure))
        .route("/exchange/1/oauth/authorize", get(authorize))
        .route("/exchange/1/oauth/token", post(token))
        .route("/exchange/1/oauth/tokeninfo", get(token_info))
        .route("/_sim/oauth", post(set_switches).get(get_switches))
        .route("/_sim/oauth/issued", get(issued_tokens))
        .route("/conversations", get(workspace))
        .with_state(state.clone())
        .merge(crate::conversations::router(state))
        // Infobip's People API lives on the same account base URL as Conversations.
        .merge(crate::people::router(crate::people::API_KEY))
}

pub async fn serve(addr: std::net::SocketAddr, app: AppListing) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        "simulated Exchange portal on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router(app)).await
}

fn signed_in(headers: &HeaderMap) -> Option<&'static SimUser> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .find_map(user)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, user: Option<&SimUser>, body: &str) -> Html<String> {
    let who = match user {
        Some(u) => format!(
            "<span>{} · {}</span><form method=post action=/logout><button class=link>Sign out</button></form>",
            escape(u.username),
            escape(u.account_name)
        ),
        None => String::new(),
    };
    Html(format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Infobip (simulated)</title><style>{STYLE}</style></head>
<body><header class="top"><strong>infobip</strong><span class="sim">simulated portal</span><div class="who">{who}</div></header>
<div class="shell"><nav><a>Home</a><a href="/exchange/my-apps">Exchange</a><a>Answers</a><a>Moments</a><a href="/conversations">Conversations</a><a>People</a></nav>
<main>{body}</main></div></body></html>"#,
        title = escape(title),
    ))
}

const STYLE: &str = "body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1b2430;background:#eef1f5}\
.top{display:flex;gap:12px;align-items:center;padding:0 20px;height:52px;background:#1b2430;color:#fff}\
.top strong{color:#ff8a3d;font-size:18px}.sim{font-size:12px;opacity:.7}.who{margin-left:auto;display:flex;gap:12px;align-items:center}\
.who form{margin:0}.link{background:none;border:0;color:#cfd6df;cursor:pointer;font:inherit;text-decoration:underline}\
.shell{display:flex;min-height:calc(100vh - 52px)}nav{width:180px;background:#fff;border-right:1px solid #dde2e8;padding:12px 0}\
nav a{display:block;padding:8px 20px;color:#5b6675;text-decoration:none}nav a.on{color:#1b2430;font-weight:600;border-left:3px solid #e8590c}\
main{flex:1;padding:20px 24px;min-width:0}h1{font-size:20px;margin:0 0 16px}.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:16px;max-width:720px}\
.button{display:inline-block;background:#e8590c;color:#fff;border:0;border-radius:6px;padding:6px 14px;text-decoration:none;font:inherit;cursor:pointer}\
iframe{width:100%;height:calc(100vh - 150px);border:1px solid #dde2e8;border-radius:8px;background:#fff}\
label{display:block;margin:8px 0}\
.workspace{display:grid;grid-template-columns:260px 1fr 360px;gap:16px;align-items:start}\
.conversations{list-style:none;margin:0;padding:0;background:#fff;border:1px solid #dde2e8;border-radius:8px}\
.conversations a{display:block;padding:10px 14px;color:#1b2430;text-decoration:none;border-bottom:1px solid #eef1f5}\
.conversations a[aria-current]{background:#fff4ec;font-weight:600}.conversations small{display:block;color:#5b6675;font-weight:400}\
.chat{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:16px;min-height:300px}.chat h2{margin:0 0 12px;font-size:16px}\
.bubble{background:#eef1f5;border-radius:12px;padding:8px 12px;display:inline-block;margin:0}\
#card-frame{height:calc(100vh - 150px)}";

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/exchange/my-apps".into())
}

async fn login_page(Query(q): Query<NextQuery>) -> Html<String> {
    let options: String = USERS
        .iter()
        .map(|u| {
            format!(
                "<label><input type=radio name=user_key value=\"{}\" required> {} ({}) — {}</label>",
                u.user_key,
                escape(u.username),
                escape(u.email),
                escape(u.account_name)
            )
        })
        .collect();
    page(
        "Sign in",
        None,
        &format!(
            "<h1>Sign in to the simulated portal</h1><form class=card method=post action=/login>\
             <input type=hidden name=next value=\"{}\">{options}<p><button class=button>Sign in</button></p></form>",
            escape(&safe_next(q.next))
        ),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    user_key: String,
    next: Option<String>,
}

async fn login(Form(form): Form<LoginForm>) -> Response {
    let Some(user) = user(&form.user_key) else {
        return (StatusCode::BAD_REQUEST, "unknown user").into_response();
    };
    // SameSite=None, as any sign-in server that renews sessions silently inside iframes must set it: the
    // app's frame starts that navigation itself (its own Refresh, an expired token), and a Lax cookie is not
    // sent on a navigation a cross-site frame starts. Still first-party there (the portal frames the app), so
    // blocking third-party cookies leaves it alone. Secure is allowed on loopback http.
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=None; Secure",
        user.user_key
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(&safe_next(form.next)),
    )
        .into_response()
}

async fn logout() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

async fn my_apps(State(ex): State<Arc<Exchange>>, headers: HeaderMap) -> Response {
    let Some(user) = signed_in(&headers) else {
        return Redirect::to("/login?next=/exchange/my-apps").into_response();
    };
    page(
        "My apps",
        Some(user),
        &format!(
            "<h1>Exchange · My apps</h1><div class=card><h2 style=margin-top:0>{}</h2>\
             <p>Installed for {}.</p><a class=button href=/exchange/my-apps/configure>Open</a></div>",
            escape(&ex.app.name),
            escape(user.account_name)
        ),
    )
    .into_response()
}

/// Exchange → My apps → the app's configuration page, framed with a launch `state` for the signed-in user, as the
/// sample's configuration page is opened (its `AuthProvider` wraps every page).
async fn configure(State(ex): State<Arc<Exchange>>, headers: HeaderMap) -> Response {
    let Some(user) = signed_in(&headers) else {
        return Redirect::to("/login?next=/exchange/my-apps/configure").into_response();
    };
    let src = url_with(&ex.app.settings_url, &[("state", &mint_launch(&ex, user))]);
    page(
        "Configure",
        Some(user),
        &format!(
            "<h1>{} · Configuration</h1><iframe id=app-frame title=\"App configuration\" src=\"{}\"></iframe>",
            escape(&ex.app.name),
            escape(&src)
        ),
    )
    .into_response()
}

/// A new launch `state` for `user` and this app: good for one authorization request within `LAUNCH_LIFETIME`.
fn mint_launch(ex: &Exchange, user: &'static SimUser) -> String {
    let state = format!("{LAUNCH_PREFIX}{}", random_token());
    let mut launches = lock(&ex.launches);
    launches.retain(|_, l| l.issued.elapsed() < LAUNCH_KEPT);
    launches.insert(
        state.clone(),
        Launch {
            user,
            client_id: ex.app.client_id.clone(),
            issued: Instant::now(),
            used: false,
        },
    );
    state
}

/// What an authorization request's `state` says about who is asking.
enum LaunchCheck {
    /// A launch the portal started, now used up.
    User(&'static SimUser),
    /// Looks like a launch `state` but is not a good one: the reason, for `error_description`.
    Refused(&'static str),
    /// No launch: no `state`, or the app's own. The portal's cookie decides.
    NotALaunch,
}

fn check_launch(ex: &Exchange, state: &str, client_id: &str) -> LaunchCheck {
    if !state.starts_with(LAUNCH_PREFIX) {
        return LaunchCheck::NotALaunch;
    }
    let ttl = lock(&ex.switches)
        .launch_ttl_secs
        .map_or(LAUNCH_LIFETIME, Duration::from_secs);
    let mut launches = lock(&ex.launches);
    let Some(launch) = launches.get_mut(state) else {
        return LaunchCheck::Refused("unknown launch state");
    };
    if std::mem::replace(&mut launch.used, true) {
        return LaunchCheck::Refused("launch state already used");
    }
    if launch.issued.elapsed() > ttl {
        return LaunchCheck::Refused("launch state expired");
    }
    if launch.client_id != client_id {
        return LaunchCheck::Refused("launch state was issued for another app");
    }
    LaunchCheck::User(launch.user)
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

async fn delay(ex: &Exchange) {
    let ms = lock(&ex.switches).delay_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn authorize(
    State(ex): State<Arc<Exchange>>,
    headers: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    delay(&ex).await;
    // Errors about the client or redirect URI are shown, never redirected: the redirect target is not trusted.
    if q.client_id.as_deref() != Some(ex.app.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    let Some(redirect_uri) = q.redirect_uri.filter(|r| ex.app.redirect_uris.contains(r)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not registered for this app",
        );
    };
    let state = q.state.unwrap_or_default();
    let back = |params: &[(&str, &str)]| {
        let mut url = url_with(&redirect_uri, params);
        if !state.is_empty() {
            url = url_with(&url, &[("state", &state)]);
        }
        Redirect::to(&url).into_response()
    };
    if q.response_type.as_deref() != Some("code") {
        return back(&[("error", "unsupported_response_type")]);
    }
    if q.code_challenge_method
        .as_deref()
        .is_some_and(|m| m != "S256")
    {
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "only S256 is supported"),
        ]);
    }
    let Some(challenge) = q.code_challenge.filter(|c| c.len() >= 43) else {
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "code_challenge (S256) is required"),
        ]);
    };
    if lock(&ex.switches).refuse {
        return back(&[("error", "access_denied")]);
    }
    // A launch `state` names its user (the sample passes it unchanged); without one, the portal cookie does (the
    // sample omits `state` "to use portal credentials if user is logged in").
    let user = match check_launch(&ex, &state, &ex.app.client_id) {
        LaunchCheck::User(user) => user,
        LaunchCheck::Refused(reason) => {
            return back(&[("error", "invalid_request"), ("error_description", reason)])
        }
        LaunchCheck::NotALaunch => match signed_in(&headers) {
            Some(user) => user,
            None => {
                return back(&[
                    ("error", "login_required"),
                    ("error_description", "no portal session"),
                ])
            }
        },
    };
    let code = random_token();
    lock(&ex.grants).insert(
        code.clone(),
        Grant {
            user,
            client_id: ex.app.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            challenge,
            issued: Instant::now(),
        },
    );
    back(&[("code", &code)])
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
}

async fn token(State(ex): State<Arc<Exchange>>, Form(form): Form<TokenForm>) -> Response {
    delay(&ex).await;
    if form.grant_type.as_deref() != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code",
        );
    }
    if let Some(secret) = &ex.app.client_secret {
        if form.client_secret.as_deref().is_some_and(|s| s != secret) {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "wrong client_secret",
            );
        }
    }
    // A code is single-use: it is removed whether or not the exchange succeeds.
    let grant = form
        .code
        .as_deref()
        .and_then(|c| lock(&ex.grants).remove(c));
    let Some(grant) = grant else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or already used code",
        );
    };
    if grant.issued.elapsed() > CODE_LIFETIME {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code expired");
    }
    if form.client_id.as_deref() != Some(grant.client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code was issued to another client",
        );
    }
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        );
    }
    let verifier = form.code_verifier.unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if verifier.len() < 43 || computed != grant.challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code_verifier does not match code_challenge",
        );
    }
    let expires_in = lock(&ex.switches).expires_in.unwrap_or(3600);
    let token = random_token();
    lock(&ex.issued).push(token.clone());
    lock(&ex.tokens).insert(
        token.clone(),
        (grant.user, Instant::now(), Duration::from_secs(expires_in)),
    );
    let u = grant.user;
    let mut answer = json!({
        "token": token,
        "token_type": "IBSSO",
        "expires_in": expires_in,
        "accountKey": u.account_key,
        "userKey": u.user_key,
        "username": u.username,
        "email": u.email,
        "locale": u.locale,
    });
    if lock(&ex.switches).older_token_fields {
        answer["roles"] = json!(u.roles);
        answer["groups"] = json!([]);
    }
    Json(answer).into_response()
}

/// Lets a test or the app check a token as Infobip's APIs would (`Authorization: IBSSO <token>`).
async fn token_info(State(ex): State<Arc<Exchange>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("IBSSO "));
    let found = token.and_then(|t| {
        lock(&ex.tokens)
            .get(t)
            .map(|(u, at, life)| (*u, at.elapsed() <= *life))
    });
    match found {
        Some((u, true)) => {
            Json(json!({"accountKey": u.account_key, "userKey": u.user_key})).into_response()
        }
        Some((_, false)) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "token expired"),
        None => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown token"),
    }
}

async fn set_switches(
    State(ex): State<Arc<Exchange>>,
    Json(mut s): Json<OAuthSwitches>,
) -> Json<OAuthSwitches> {
    if std::mem::take(&mut s.revoke_tokens) {
        lock(&ex.tokens).clear();
    }
    *lock(&ex.switches) = s.clone();
    Json(s)
}

/// Every token issued so far (a test tool: a real Infobip has no such thing).
async fn issued_tokens(State(ex): State<Arc<Exchange>>) -> Json<Vec<String>> {
    Json(lock(&ex.issued).clone())
}

async fn get_switches(State(ex): State<Arc<Exchange>>) -> Json<OAuthSwitches> {
    Json(lock(&ex.switches).clone())
}

#[derive(Deserialize)]
struct WorkspaceQuery {
    open: Option<String>,
}

/// Conversations → the agent's workspace: the account's conversations, and the app's card framed beside the
/// chosen one with `state` (a launch `state` for the signed-in agent) and `conversationId`, as Infobip launches it.
async fn workspace(
    State(ex): State<Arc<Exchange>>,
    headers: HeaderMap,
    Query(q): Query<WorkspaceQuery>,
) -> Response {
    let Some(user) = signed_in(&headers) else {
        return Redirect::to("/login?next=/conversations").into_response();
    };
    let mine: Vec<&SimConversation> = CONVERSATIONS
        .iter()
        .filter(|c| c.account_key == user.account_key)
        .collect();
    let open = q
        .open
        .as_deref()
        .and_then(|id| mine.iter().find(|c| c.id == id))
        .or(mine.first());
    let list: String = mine
        .iter()
        .map(|c| {
            let who = if c.sender_name.is_empty() { c.from } else { c.sender_name };
            let current = open.is_some_and(|o| o.id == c.id);
            format!(
                "<li><a href=\"/conversations?open={id}\"{aria}>{who}<small>{channel} · {from}</small></a></li>",
                id = escape(c.id),
                aria = if current { " aria-current=\"page\"" } else { "" },
                who = escape(who),
                channel = escape(c.channel),
                from = escape(c.from),
            )
        })
        .collect();
    let chat = match open {
        Some(c) => {
            let card = url_with(
                &ex.app.card_url,
                &[("state", &mint_launch(&ex, user)), ("conversationId", c.id)],
            );
            format!(
                "<section class=chat><h2>{who}</h2><p class=bubble>{text}</p></section>\
                 <iframe id=card-frame title=\"{app} context card\" src=\"{card}\"></iframe>",
                who = escape(if c.sender_name.is_empty() {
                    c.from
                } else {
                    c.sender_name
                }),
                text = escape(c.text),
                app = escape(&ex.app.name),
                card = escape(&card),
            )
        }
        None => "<p>No conversations.</p>".into(),
    };
    page(
        "Conversations",
        Some(user),
        &format!(
            "<h1>Conversations · My work</h1><div class=workspace><ul class=conversations>{list}</ul>{chat}</div>"
        ),
    )
    .into_response()
}

/// What the Conversations API (`conversations.rs`) asks of this OAuth server: whose a token is, and the
/// messages switches of `/_sim/oauth`.
impl crate::conversations::Accounts for Exchange {
    fn account_of(&self, scheme: &str, credential: &str) -> crate::conversations::Credential {
        use crate::conversations::Credential;
        // The `token_type` that `token` issues: Infobip's IBSSO scheme.
        if !scheme.eq_ignore_ascii_case("IBSSO") {
            return Credential::Unknown;
        }
        match lock(&self.tokens).get(credential) {
            Some((u, at, life)) if at.elapsed() <= *life => Credential::Account(u.account_key),
            Some(_) => Credential::Expired,
            None => Credential::Unknown,
        }
    }

    fn faults(&self) -> crate::conversations::Faults {
        let s = lock(&self.switches);
        crate::conversations::Faults {
            status: s.messages_status,
            retry_after_secs: s.retry_after_secs,
            delay_ms: s.messages_delay_ms,
        }
    }
}
