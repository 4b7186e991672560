//! Signing in to the embedded pages (the configuration page and the context card) with Exchange's OAuth
//! (authorization code + PKCE S256), which tells ibex the Infobip account and user behind the iframe. One flow
//! serves both pages; only what it hands over differs.
//!
//! Infobip opens both pages with a launch `state` of its own, and its sample app passes it unchanged to the
//! authorize endpoint, which then knows the launch (the signed-in portal user) without the portal's cookie; so
//! ibex passes it on unchanged too, and keeps its own sign-in data (PKCE verifier, return page, conversation) on
//! the server under that `state` (`flows`). Only a start without a launch `state` (a renewal, "Try again", a
//! partner's own tab in `--dev`) gets a `state` ibex makes, and Infobip's authorize falls back to its portal
//! cookie, as the sample's commit says. No cookie of ibex's is used (a cross-site iframe loses them): the
//! configuration page gets a sealed session token; the card, which must act with Infobip's token, gets the id of a
//! server-side session that holds the token (`card_sessions`). A failed sign-in ends on an explicit error page,
//! and a sign-in that keeps bouncing stops after a few attempts instead of looping.

use crate::signin::flows;
use crate::state::AppState;
use app::auth::{OAuthState, Session};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use serde::Deserialize;
use std::time::Duration;

/// Sign-in attempts in a row before giving up with an explanation.
const MAX_ATTEMPTS: u32 = 3;
/// How long an authorization round-trip may take.
const STATE_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// The longest launch `state` passed on (Infobip documents no length; a URL stays well under browsers' limits).
const MAX_STATE_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub authorize_url: url::Url,
    pub token_url: url::Url,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub redirect_url: String,
    /// The CSP `frame-ancestors` header value for the pages Exchange frames, checked at start-up so that no
    /// page is ever served without it.
    pub frame_policy: HeaderValue,
    pub session_ttl: Duration,
    /// Space-separated OAuth scopes asked for (`conversations` by default: the sample's, since Infobip
    /// documents none).
    pub scope: String,
}

fn now_ms() -> i64 {
    app::settings::store::now_ms()
}

/// The pages a sign-in may return to. `next` is compared with these exactly, never parsed: a check of its
/// shape ("starts with one `/`") let `/\t/evil.example` through, which browsers read as `//evil.example` and
/// so sent the fresh session token to another site.
pub const SIGN_IN_PAGES: &[&str] = &["/settings", "/card"];

/// Where the sign-in returns to: the page named by `next` if it is one of ours, `/settings` when none is
/// named, `None` for anything else.
fn return_page(next: Option<&str>) -> Option<&'static str> {
    match next {
        None => Some(SIGN_IN_PAGES[0]),
        Some(next) => SIGN_IN_PAGES.iter().copied().find(|page| *page == next),
    }
}

/// A sign-in without Infobip's launch `state` (a renewal, "Try again"): Infobip's authorize endpoint then relies on
/// its portal cookie.
pub fn start_url(next: &str, attempt: u32, conversation: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("next", next);
    query.append_pair("attempt", &attempt.to_string());
    if let Some(conversation) = conversation {
        query.append_pair("conversation", conversation);
    }
    format!("/oauth/start?{}", query.finish())
}

/// Infobip's launch `state` is opaque: anything printable (no spaces, no control characters) of a sane length is
/// passed on, since Infobip decides whether it is good.
fn valid_launch_state(state: &str) -> bool {
    (1..=MAX_STATE_LEN).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_graphic())
}

/// A conversation id as Infobip writes them (UUID-like); anything else is refused before it reaches a URL.
pub fn valid_conversation_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && !id.bytes().all(|b| b == b'.')
}

/// A page a customer admin can act on, shown inside Infobip's iframe.
pub fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    retry: Option<String>,
) -> Response {
    let escape = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let retry = retry
        .map(|href| {
            format!(
                "<p><a class=\"button\" href=\"{}\">Try again</a></p>",
                escape(&href)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{title}</title><link rel=\"stylesheet\" \
         href=\"/pkg/ibex.css\"></head><body><main><section class=\"notice\" role=\"alert\"><h1>{title}</h1>\
         <p>{message}</p>{retry}</section></main></body></html>",
        title = escape(title),
        message = escape(message),
    );
    (status, Html(html)).into_response()
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
    attempt: Option<u32>,
    conversation: Option<String>,
    /// Refused: Infobip's launch `state` is taken only by the page Infobip opened with it.
    state: Option<String>,
}

pub async fn start(State(state): State<AppState>, Query(q): Query<StartQuery>) -> Response {
    // Infobip's launch `state` is taken only by the page Infobip opened with it (`require_session`,
    // `require_card_session`), which fixes the page it signs in to: here, where anyone may name any `next`, a
    // card's launch would otherwise become a configuration-page sign-in.
    if q.state.is_some() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "Infobip's launch request (`state`) is used only by the page Infobip opened with it. Open the app              again from Infobip.",
            None,
        );
    }
    let Some(next) = return_page(q.next.as_deref()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "It asks to return to a page this app does not have. Open the app again from Infobip.",
            None,
        );
    };
    let conversation = q.conversation.filter(|c| valid_conversation_id(c));
    begin(&state, next, q.attempt.unwrap_or(0), conversation, None).await
}

/// Sends the browser to Infobip's authorize endpoint for `next`, with Infobip's `launch` state when the page was
/// opened with one (the sample app's way), or a `state` of ibex's own (then Infobip relies on its portal cookie).
/// The sign-in's own data is recorded under that `state` for the callback.
async fn begin(
    state: &AppState,
    next: &'static str,
    attempt: u32,
    conversation: Option<String>,
    launch: Option<String>,
) -> Response {
    if next == "/card" && conversation.is_none() {
        return not_from_a_conversation(
            "This card shows the customer of one conversation: open it from the conversation in Infobip \
             Conversations.",
        );
    }
    let Some(client_id) = state.oauth.client_id.clone() else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is not set up",
            "This app's server has no OAuth client ID yet. The app's operator must set IBEX_OAUTH_CLIENT_ID to the \
             Client ID shown in Infobip's App shell.",
            None,
        );
    };
    let attempt = attempt.saturating_add(1);
    if attempt > MAX_ATTEMPTS {
        return error_page(
            StatusCode::CONFLICT,
            "Signing in keeps failing",
            "Infobip sent this page back without a usable sign-in several times in a row. Reload Infobip's page; \
             if it happens again, the app's OAuth settings (redirect URL, client ID) do not match App shell.",
            Some(start_url(next, 0, conversation.as_deref())),
        );
    }
    // Infobip's launch `state` goes to its authorize endpoint unchanged (the sample app's way); without one, ibex
    // makes its own and Infobip falls back to its portal cookie.
    let oauth_state =
        match launch {
            Some(launch) if valid_launch_state(&launch) => launch,
            Some(_) => return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                "Infobip's launch request (`state`) is malformed. Open the app again from Infobip.",
                None,
            ),
            None => CsrfToken::new_random().secret().clone(),
        };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let now = now_ms();
    let flow = OAuthState {
        verifier: verifier.secret().clone(),
        next: next.to_owned(),
        conversation,
        attempt,
        expires_at: now + STATE_LIFETIME_MS,
    };
    let Ok(redirect) = RedirectUrl::new(state.oauth.redirect_url.clone()) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in could not start",
            "The server could not prepare the sign-in request.",
            None,
        );
    };
    // Each start writes a row, and needs no sign-in: bounded per instance, so a script cannot fill the table or
    // keep the settings database (which signed calls read too) busy with them.
    if state.sign_in_starts.check().is_err() {
        let mut page = error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in could not start",
            "Too many sign-ins are starting on this server right now. Try again in a moment.",
            Some(start_url(next, 0, flow.conversation.as_deref())),
        );
        page.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return page;
    }
    let store = state.settings.store();
    match flows::put(store, &state.keys, &oauth_state, &flow, now).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                StatusCode::CONFLICT,
                "This sign-in is already under way",
                "This page was opened with a sign-in that has already started. Open the app again from Infobip.",
                None,
            )
        }
        Err(e) => {
            tracing::error!("{e}");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in could not start",
                "The server could not record the sign-in. Try again in a moment.",
                Some(start_url(next, 0, flow.conversation.as_deref())),
            );
        }
    }
    let client = BasicClient::new(ClientId::new(client_id))
        .set_auth_uri(AuthUrl::from_url(state.oauth.authorize_url.clone()))
        .set_redirect_uri(redirect);
    let (url, _) = client
        .authorize_url(|| CsrfToken::new(oauth_state))
        .add_scopes(
            state
                .oauth
                .scope
                .split_whitespace()
                .map(|s| Scope::new(s.to_owned())),
        )
        .set_pkce_challenge(challenge)
        .url();
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Infobip's token answer (not RFC 6749: `token`, plus who signed in), every field of it. The token itself is
/// kept only for the card, which calls Infobip with it.
/// Lenient where Infobip's documentation is silent: a field may be `null`, and `expires_in` a number or a
/// numeric string, without failing the sign-in of every page.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    /// The scheme the card sends the token with, unless the operator set one (`IBEX_INFOBIP_AUTH_SCHEME`): then
    /// the setting wins, and a mismatch is logged once.
    #[serde(default)]
    token_type: Option<String>,
    /// Seconds; absent means the configured session lifetime.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(rename = "accountKey")]
    account_key: String,
    #[serde(rename = "userKey")]
    user_key: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    /// Older Infobip documents show `roles` and `groups` in this answer, without their shape: read leniently
    /// (`settings::admins::role_names`) for `IBEX_ADMIN_ROLE`.
    #[serde(default)]
    roles: Option<serde_json::Value>,
    #[serde(default)]
    groups: Option<serde_json::Value>,
}

impl TokenAnswer {
    fn expires_in_secs(&self) -> Option<u64> {
        match self.expires_in.as_ref()? {
            serde_json::Value::Number(n) => {
                n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
            }
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

pub async fn callback(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    // Sign-in finishes inside Infobip's frame only, in development too (the simulator's portal frames it).
    if opened_outside_a_frame(&headers, state.dev) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-in finishes inside Infobip",
            "This sign-in link was opened outside Infobip's web interface, so it is not used. Open the app \
             from Infobip.",
            None,
        );
    }
    // Only a `state` this server started a sign-in under, once: the row is deleted as it is read.
    let taken = match q.state.as_deref() {
        Some(s) if valid_launch_state(s) => {
            flows::take(state.settings.store(), &state.keys, s, now_ms()).await
        }
        _ => Ok(None),
    };
    let flow = match taken {
        Ok(Some(flow)) => flow,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in is not valid",
                "The sign-in answer is missing its state, has expired, was used already or was not started \
                 here. Open the app again from Infobip.",
                Some(start_url("/settings", 0, None)),
            )
        }
        Err(e) => {
            tracing::error!("{e}");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in could not be completed",
                "The server could not read the sign-in it started. Open the app again from Infobip in a \
                 moment.",
                None,
            );
        }
    };
    // Stored by this server, so it was checked at the start; checked again so that no key compromise or future
    // change can turn the session hand-over into a redirect elsewhere.
    let Some(next) = return_page(Some(&flow.next)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is not valid",
            "Open the app again from Infobip.",
            None,
        );
    };
    let conversation = flow.conversation.as_deref();
    let retry = Some(start_url(next, 0, conversation));
    if let Some(error) = q.error {
        let message = match error.as_str() {
            "access_denied" => "Infobip refused access to this app for your user.".to_owned(),
            "login_required" => {
                "You are not signed in to Infobip. Sign in to Infobip, then open the app again."
                    .into()
            }
            other => format!(
                "Infobip answered the sign-in with `{other}`{}. Open the app again from Infobip (reload its \
                 page): each launch signs in once.",
                q.error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        };
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-in was refused",
            &message,
            retry,
        );
    }
    let Some(code) = q.code else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in answer without a code",
            "Open the app again from Infobip.",
            retry,
        );
    };
    let answer = match exchange_code(&state, &code, &flow.verifier).await {
        Ok(answer) => answer,
        Err(message) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                "Infobip did not complete the sign-in",
                &message,
                retry,
            )
        }
    };
    let ttl_ms = i64::try_from(state.oauth.session_ttl.as_millis()).unwrap_or(i64::MAX);
    if next == "/card" {
        return card_signed_in(&state, answer, ttl_ms, conversation, flow.attempt, retry).await;
    }
    let names = app::settings::admins::role_names(answer.roles.as_ref(), answer.groups.as_ref());
    if state.admin_policy.role.is_some() && names.is_none() {
        static NO_ROLES_LOGGED: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        if !NO_ROLES_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!("IBEX_ADMIN_ROLE is set, but Infobip's token answer carries no roles or groups: each account's admin list decides who configures it");
        }
    }
    let session = Session {
        admin_role: state.admin_policy.role_decision(names.as_deref()),
        account_key: answer.account_key,
        user_key: answer.user_key,
        username: answer.username.unwrap_or_default(),
        expires_at: now_ms().saturating_add(ttl_ms),
    };
    let Ok(token) = session.seal(&state.keys) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in could not be completed",
            "Try again.",
            retry,
        );
    };
    tracing::info!(account_key = %session.account_key, user_key = %session.user_key, "configuration page sign-in");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("session", &token)
        .append_pair("attempt", &flow.attempt.to_string())
        .finish();
    Redirect::to(&format!("{next}?{query}")).into_response()
}

/// The card's sign-in: the token goes into a server-side session (never lasting longer than the token), and
/// the card's URL gets only that session's id.
async fn card_signed_in(
    state: &AppState,
    answer: TokenAnswer,
    ttl_ms: i64,
    conversation: Option<&str>,
    attempt: u32,
    retry: Option<String>,
) -> Response {
    static MISMATCH_LOGGED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    if let (Some(kind), Some(scheme)) = (
        answer.token_type.as_deref(),
        state.infobip.scheme_override(),
    ) {
        if !kind.eq_ignore_ascii_case(scheme)
            && !MISMATCH_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                token_type = %kind,
                scheme = %scheme,
                "Infobip's token answer names another token type than IBEX_INFOBIP_AUTH_SCHEME, which the card sends: if Infobip refuses the card's calls, unset it"
            );
        }
    }
    let token_ms = answer
        .expires_in_secs()
        .and_then(|s| i64::try_from(s.saturating_mul(1000)).ok())
        .unwrap_or(ttl_ms);
    let sign_in = crate::signin::card_sessions::CardSignIn {
        account_key: answer.account_key,
        user_key: answer.user_key,
        username: answer.username.unwrap_or_default(),
        email: answer.email.unwrap_or_default(),
        locale: answer.locale.unwrap_or_default(),
        token: answer.token.unwrap_or_default(),
        token_type: answer.token_type.unwrap_or_default(),
        token_expires_at: now_ms().saturating_add(token_ms.min(ttl_ms)),
        conversation_id: conversation.unwrap_or_default().to_owned(),
    };
    if sign_in.token.is_empty() {
        return error_page(
            StatusCode::BAD_GATEWAY,
            "Infobip did not complete the sign-in",
            "The token answer has no token.",
            retry,
        );
    }
    let id = match state.card_sessions.create(&sign_in).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("{e}");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The card could not be opened",
                "Its sign-in could not be stored. Try again in a moment.",
                retry,
            );
        }
    };
    tracing::info!(account_key = %sign_in.account_key, user_key = %sign_in.user_key, "context card sign-in");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(conversation) = conversation {
        query.append_pair("conversationId", conversation);
    }
    query.append_pair("card", &id);
    query.append_pair("attempt", &attempt.to_string());
    Redirect::to(&format!("/card?{}", query.finish())).into_response()
}

async fn exchange_code(
    state: &AppState,
    code: &str,
    verifier: &str,
) -> Result<TokenAnswer, String> {
    let oauth = &state.oauth;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", oauth.redirect_url.as_str()),
    ];
    if let Some(id) = &oauth.client_id {
        form.push(("client_id", id));
    }
    if let Some(secret) = &oauth.client_secret {
        form.push(("client_secret", secret));
    }
    let response = state
        .http
        .post(oauth.token_url.clone())
        .form(&form)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "the token endpoint could not be reached ({})",
                e.without_url()
            )
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let excerpt: String = body.chars().take(200).collect();
        return Err(format!(
            "the token endpoint answered HTTP {status}: {excerpt}"
        ));
    }
    serde_json::from_str(&body)
        .map_err(|e| format!("the token answer lacks accountKey or userKey ({e})"))
}

/// Pages Exchange frames may be framed only by its portal; everything else by nobody.
pub async fn frame_policy(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let embedded = path == "/settings" || path == "/card" || path.starts_with("/oauth/");
    let is_asset = path.starts_with("/pkg/") || path == "/favicon.svg";
    let mut response = next.run(request).await;
    let frame = if embedded {
        state.oauth.frame_policy.clone()
    } else {
        NOT_FRAMED
    };
    // A page rendered by Leptos set its own policy, with the nonce of its scripts (`app::shell`); every other
    // answer (the sign-in's error pages, JSON, files) runs no script at all.
    let policy = match response
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
    {
        Some(page) => format!("{page}; {}", frame.to_str().unwrap_or_default()),
        None => format!("{NO_SCRIPTS}; {}", frame.to_str().unwrap_or_default()),
    };
    let policy = HeaderValue::try_from(policy).unwrap_or(frame);
    protect(response.headers_mut(), policy);
    // Pages and server-function answers carry a session (in the URL, the form, the answer): never cached.
    if !is_asset {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The policy of answers that run no script: the sign-in's pages, JSON, static files.
const NO_SCRIPTS: &str =
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'";

pub const NOT_FRAMED: HeaderValue = HeaderValue::from_static("frame-ancestors 'none'");

/// The headers every answer carries, pages and signed calls alike (there as defence in depth: an error
/// message may echo the request path).
pub fn protect(headers: &mut axum::http::HeaderMap, frame_ancestors: HeaderValue) {
    headers.insert(header::CONTENT_SECURITY_POLICY, frame_ancestors);
    // The session token sits in the URL of the configuration page: never send it onwards.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// A browser says where a navigation goes (`Sec-Fetch-Dest`). The sign-in callback and the pages behind it
/// belong in Infobip's frame; one opened as a page of its own carries a code, session or card that someone
/// handed over in a link, and would put the victim in the sender's account (login CSRF): an API key typed on
/// such a configuration page is saved to the sender's account, for the sender's bots to use. A request without
/// the header is refused too, outside `--dev`: every browser Infobip's portal supports sends it, so its absence
/// means an old browser (which this defence cannot protect) or a script (which needs no frame).
fn opened_outside_a_frame(headers: &axum::http::HeaderMap, dev: bool) -> bool {
    match headers.get("sec-fetch-dest") {
        Some(dest) => dest.as_bytes() != b"iframe",
        None => !dev,
    }
}

/// A launch opened as a page of its own: someone's launch handed over in a link (it names the portal user it
/// was made for, so it would sign the victim in as that someone). Refused in `--dev` too, where a partner opens
/// the pages in a tab of their own, but without a launch.
fn launch_outside_a_frame(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-dest")
        .is_some_and(|dest| dest.as_bytes() != b"iframe")
}

fn launch_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Sign-in starts inside Infobip",
        "This sign-in link was opened outside Infobip's web interface, so it is not used. Open the app from \
         Infobip.",
        None,
    )
}

/// The configuration page or the card opened outside Infobip's frame. Development mode shows them anyway, so a
/// partner can open the frame's address in a tab of its own while working on the app definition.
fn page_outside_infobip(state: &AppState, request: &Request) -> Option<Response> {
    (!state.dev && opened_outside_a_frame(request.headers(), false)).then(|| {
        error_page(
            StatusCode::FORBIDDEN,
            "Open the app from Infobip",
            "This page was opened outside Infobip's web interface, so it is not shown. Open the app from \
             Infobip.",
            None,
        )
    })
}

#[derive(Deserialize)]
struct GateQuery {
    session: Option<String>,
    attempt: Option<u32>,
    /// Infobip's launch `state` (its sample app's configuration page is opened with one, like the card).
    state: Option<String>,
}

/// `/settings` without a valid session starts the sign-in, with Infobip's launch `state` when it opened the page
/// with one (counting attempts, so a session that never sticks ends on the explicit error page rather than a
/// loop).
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = page_outside_infobip(&state, &request) {
        return refused;
    }
    let query = Query::<GateQuery>::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .unwrap_or(GateQuery {
            session: None,
            attempt: None,
            state: None,
        });
    let valid = query
        .session
        .as_deref()
        .is_some_and(|t| Session::open(t, &state.keys, now_ms()).is_ok());
    if valid {
        return next.run(request).await;
    }
    let attempt = query.attempt.unwrap_or(0);
    match query.state {
        // Signed in here and now, for this page only: a launch goes nowhere `next` could be changed.
        Some(_) if launch_outside_a_frame(request.headers()) => launch_refused(),
        Some(launch) => begin(&state, "/settings", attempt, None, Some(launch)).await,
        None => Redirect::to(&start_url("/settings", attempt, None)).into_response(),
    }
}

/// The card opened some other way than from a conversation.
fn not_from_a_conversation(message: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Open the card from a conversation",
        message,
        None,
    )
}

#[derive(Deserialize)]
struct CardQuery {
    state: Option<String>,
    #[serde(rename = "conversationId")]
    conversation_id: Option<String>,
    card: Option<String>,
    attempt: Option<u32>,
}

/// `/card` as Infobip launches it (`state` and `conversationId`) starts the sign-in with that `state`; with a
/// card session of its own it is shown (an expired one signs in again, without a launch `state`); anything else
/// gets a page saying where the card is opened from.
pub async fn require_card_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = page_outside_infobip(&state, &request) {
        return refused;
    }
    let query = Query::<CardQuery>::try_from_uri(request.uri())
        .map(|Query(q)| q)
        .unwrap_or(CardQuery {
            state: None,
            conversation_id: None,
            card: None,
            attempt: None,
        });
    let conversation = query
        .conversation_id
        .as_deref()
        .filter(|c| valid_conversation_id(c));
    let Some(conversation) = conversation else {
        return not_from_a_conversation(
            "This card shows the customer of one conversation: open it from the conversation in Infobip \
             Conversations.",
        );
    };
    let signed_in = match query.card.as_deref() {
        Some(id) => state
            .card_sessions
            .load(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.conversation_id == conversation),
        None => false,
    };
    if signed_in {
        return next.run(request).await;
    }
    if query.state.is_none() && query.card.is_none() {
        return not_from_a_conversation(
            "Infobip opens this card with a sign-in request (`state`), which this address lacks. Open it from \
             the conversation in Infobip Conversations.",
        );
    }
    let attempt = query.attempt.unwrap_or(0);
    match query.state {
        Some(_) if launch_outside_a_frame(request.headers()) => launch_refused(),
        // The card's launch signs in to the card and nothing else, whatever the frame is sent to later.
        Some(launch) => {
            begin(
                &state,
                "/card",
                attempt,
                Some(conversation.to_owned()),
                Some(launch),
            )
            .await
        }
        None => Redirect::to(&start_url("/card", attempt, Some(conversation))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_known_pages() {
        assert_eq!(return_page(None), Some("/settings"));
        assert_eq!(return_page(Some("/settings")), Some("/settings"));
        for hostile in [
            "/\t/evil.example",
            "/%09/evil.example",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/settings",
            "/settings/../evil",
            "/settings?x=1",
            "/settings\r\nLocation: //evil.example",
            "/Settings",
            "",
            "/",
        ] {
            assert_eq!(return_page(Some(hostile)), None, "{hostile:?}");
        }
    }

    #[test]
    fn launch_states_are_passed_on_when_printable() {
        assert!(valid_launch_state("ibl1.AbC-_~.+/="));
        assert!(valid_launch_state(&"s".repeat(MAX_STATE_LEN)));
        for bad in ["", "a b", "a\tb", "a\r\nb", "é"] {
            assert!(!valid_launch_state(bad), "{bad:?}");
        }
        assert!(!valid_launch_state(&"s".repeat(MAX_STATE_LEN + 1)));
        assert_eq!(
            start_url("/card", 1, Some("c-&1")),
            "/oauth/start?next=%2Fcard&attempt=1&conversation=c-%261"
        );
    }

    #[test]
    fn token_answers_are_read_leniently() {
        let answer: TokenAnswer = serde_json::from_str(
            r#"{"token":"t","accountKey":"A","userKey":"U","email":null,"username":null,"locale":null,"expires_in":"3600"}"#,
        )
        .unwrap();
        assert_eq!(answer.expires_in_secs(), Some(3600));
        assert_eq!(answer.email, None);
        for (expires, secs) in [
            ("3600", Some(3600)),
            ("3600.0", Some(3600)),
            ("null", None),
            ("\"x\"", None),
        ] {
            let answer: TokenAnswer = serde_json::from_str(&format!(
                r#"{{"accountKey":"A","userKey":"U","expires_in":{expires}}}"#
            ))
            .unwrap();
            assert_eq!(answer.expires_in_secs(), secs, "{expires}");
        }
    }
}
