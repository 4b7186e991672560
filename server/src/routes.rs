//! The whole HTTP surface in one table: signed function routes generated from the app definition, operational
//! endpoints, and the Leptos pages.

use crate::errors::ApiError;
use crate::ops;
use crate::signed::calls::{Call, MakeRequestId, REQUEST_ID};
use crate::signed::functions::FunctionPlan;
use crate::signed::invoke::{finish, serve};
use crate::signin::oauth;
use crate::state::AppState;
use app::definition::Method;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::routing::{any, get, MethodFilter, MethodRouter};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

/// What serves ibex's whole HTTP surface (`router`): one service per serving thread, cloned per connection.
pub trait HttpService:
    tower::Service<
        Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

pub fn router(state: AppState) -> impl HttpService {
    let state_slots = state.slots.clone();
    let routes = Router::new()
        .merge(signed_routes(&state))
        .merge(
            operations()
                .merge(custom_card())
                // Only pages read a body (forms, server-function arguments): the probes and the Custom cards
                // webhook answer from their headers and leave any body unread, so a slow one cannot hold their
                // slot (taken from the signed calls' pool) until its deadline.
                .merge(pages(&state).layer(middleware::from_fn_with_state(
                    state.clone(),
                    ops::admission::page_body,
                )))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    oauth::frame_policy,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            // The path only: a query string could carry something private.
                            tracing::info_span!(
                                "request",
                                request_id = request_id(request),
                                method = request.method().as_str(),
                                path = request.uri().path()
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG)),
                ),
        )
        .with_state(state);
    // Around the whole router, once. `Router::layer` would wrap every route in each layer on its own, and a
    // call then clones that nest of boxed services: 15 allocations per signed call (docs/benchmarks.md). Served
    // as it is, not as a `Router`'s fallback: that second router would route and clone the stack on every call.
    ServiceBuilder::new()
        .layer(ops::admission::AdmissionLayer(state_slots))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .service(routes)
}

/// Every function of the app definition at the URI its manifest names; anything else under `/fn` is an
/// unknown function. These routes pass none of the pages' layers (request span, frame policy, sign-in gate,
/// page body): their answers go to Infobip's servers, never into a browser frame, and a signed call pays
/// only for what it uses. A body is read within the body timeout where it is read (`SignedRequest`, `drain`),
/// so a signed GET, which has none, arms no timer for it.
fn signed_routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    let body_timeout = state.body_timeout;
    for plan in state.functions.iter() {
        router = router.route(
            &plan.function.route_path(),
            function_route(plan.clone(), body_timeout),
        );
    }
    if state
        .definition
        .sync
        .as_ref()
        .is_some_and(|s| s.from_people.is_some())
    {
        let wrong_method = move |request: Request| async move {
            let call = Call::of(&request);
            let got = request.method().to_string();
            drain(request, body_timeout).await;
            let mut response =
                axum::response::IntoResponse::into_response(ApiError::MethodNotAllowed {
                    function: "people-changed".into(),
                    expected: "POST",
                    got,
                });
            oauth::protect(response.headers_mut(), oauth::NOT_FRAMED);
            call.log(&response);
            response
        };
        router = router.route(
            crate::sync::moments::PATH,
            axum::routing::post(crate::sync::moments::people_changed).fallback(wrong_method),
        );
    }
    let unknown = any(unknown_function).layer(middleware::from_fn(log_call));
    router
        .route("/fn", unknown.clone())
        .route("/fn/", unknown.clone())
        .route("/fn/{*rest}", unknown)
}

/// The most of an unwanted request body read and dropped before an early error answer.
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads and drops the body of a request answered with an error without it (wrong method, unknown function,
/// a path that is not UTF-8): a client still sending it would otherwise see the connection reset instead of
/// the JSON answer. Bounded in size and in time (the body timeout).
pub(crate) async fn drain(request: Request, timeout: std::time::Duration) {
    let body = request.into_body();
    if !axum::body::HttpBody::is_end_stream(&body) {
        let _ = tokio::time::timeout(timeout, axum::body::to_bytes(body, DRAIN_BYTES)).await;
    }
}

fn operations() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

/// Conversations' Custom cards call this with the account's bearer token (card/webhook.rs).
fn custom_card() -> Router<AppState> {
    Router::new().route(
        "/custom-card",
        get(crate::card::webhook::custom_card).post(crate::card::webhook::custom_card),
    )
}

/// The configuration page, its sign-in and the static files; `/settings` needs a signed-in Infobip user.
fn pages(state: &AppState) -> Router<AppState> {
    let definition = state.definition.clone();
    let keys = state.keys.clone();
    let settings = state.settings.clone();
    let probe = state.probe.clone();
    let admin_policy = state.admin_policy.clone();
    let card: Arc<dyn app::pages::card::CardSource> =
        Arc::new(crate::card::ServerCard::new(state.clone()));
    let custom_card = state.definition.card.as_ref().map(|_| {
        app::pages::custom_card::CustomCardEndpoint(crate::card::webhook::webhook_url(
            &state.public_url,
        ))
    });
    let sync: Option<Arc<dyn app::pages::sync_panel::SyncSource>> =
        state.definition.sync.as_ref().map(|_| {
            Arc::new(crate::sync::panel::ServerSync {
                state: state.clone(),
                runs: crate::sync::runs::Runs::new(state.settings.store().clone()),
                config: state.sync.clone(),
            }) as Arc<dyn app::pages::sync_panel::SyncSource>
        });
    let activity: Arc<dyn app::pages::activity_panel::ActivitySource> =
        Arc::new(crate::activity::view::ServerActivity {
            store: crate::activity::store::ActivityStore::new(state.settings.store().clone()),
            settings: state.settings.store().clone(),
        });
    let leptos_options = (*state.leptos_options).clone();
    Router::new()
        .route("/oauth/start", get(oauth::start))
        .route("/oauth/callback", get(oauth::callback))
        .leptos_routes_with_context(
            state,
            generate_route_list(app::App),
            move || {
                provide_context(definition.clone());
                provide_context(keys.clone());
                provide_context(settings.clone());
                provide_context(admin_policy.clone());
                if let Some(probe) = &probe {
                    provide_context(probe.clone());
                }
                provide_context(card.clone());
                provide_context(activity.clone());
                if let Some(endpoint) = &custom_card {
                    provide_context(endpoint.clone());
                }
                if let Some(sync) = &sync {
                    provide_context(sync.clone());
                }
            },
            move || app::shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        // Around the fallback too: `/settings/` is served by it, and is the same page.
        .layer(middleware::from_fn_with_state(state.clone(), gate_settings))
}

fn function_route(
    plan: Arc<FunctionPlan>,
    body_timeout: std::time::Duration,
) -> MethodRouter<AppState> {
    let method = plan.function.method;
    let filter = match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Put => MethodFilter::PUT,
        Method::Patch => MethodFilter::PATCH,
        Method::Delete => MethodFilter::DELETE,
    };
    let name = plan.function.name.clone();
    let handler = {
        let plan = plan.clone();
        move |State(state): State<AppState>, request: Request| serve(state, plan, request)
    };
    let wrong_method = move |State(state): State<AppState>, request: Request| async move {
        let (started, call) = (Instant::now(), Call::of(&request));
        let got = request.method().to_string();
        drain(request, body_timeout).await;
        let error = ApiError::MethodNotAllowed {
            function: name,
            expected: method.as_str(),
            got,
        };
        finish(&state, &plan, &call, started, Err(error))
    };
    axum::routing::on(filter, handler).fallback(wrong_method)
}

fn request_id(request: &Request) -> &str {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Unknown functions have no plan to count them under; they are only logged.
async fn log_call(request: Request, next: Next) -> axum::response::Response {
    let call = Call::of(&request);
    let mut response = next.run(request).await;
    oauth::protect(response.headers_mut(), oauth::NOT_FRAMED);
    call.log(&response);
    response
}

async fn unknown_function(State(state): State<AppState>, request: Request) -> ApiError {
    let path = request.uri().path().to_owned();
    drain(request, state.body_timeout).await;
    ApiError::UnknownFunction(path)
}

/// The configuration page and the card need a signed-in Infobip user; other routes pass through.
async fn gate_settings(
    state: State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    // `/settings/` reaches the same page as `/settings`: gated alike.
    match request.uri().path().trim_end_matches('/') {
        "/settings" => oauth::require_session(state, request, next).await,
        "/card" => oauth::require_card_session(state, request, next).await,
        _ => next.run(request).await,
    }
}
