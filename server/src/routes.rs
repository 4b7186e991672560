//! The whole HTTP surface in one table: signed function routes generated from the app definition, operational
//! endpoints, and the Leptos pages.

use crate::errors::{ApiError, ErrorReport};
use crate::functions::FunctionPlan;
use crate::invoke::invoke;
use crate::oauth;
use crate::ops;
use crate::signed::SignedRequest;
use crate::state::AppState;
use app::definition::Method;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::routing::{any, get, MethodFilter, MethodRouter};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use std::sync::Arc;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(signed_routes(&state))
        .merge(
            operations()
                .merge(pages(&state))
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
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Every function of the app definition at the URI its manifest names; anything else under `/fn` is an
/// unknown function. These routes pass none of the pages' layers (request span, frame policy, sign-in gate):
/// their answers go to Infobip's servers, never into a browser frame, and a signed call pays only for what it
/// uses.
fn signed_routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for plan in state.functions.iter() {
        router = router.route(&plan.function.route_path(), function_route(plan.clone()));
    }
    let unknown = any(unknown_function).layer(middleware::from_fn(log_failure));
    router
        .route("/fn", unknown.clone())
        .route("/fn/{*rest}", unknown)
}

fn operations() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

/// The configuration page, its sign-in and the static files; `/settings` needs a signed-in Infobip user.
fn pages(state: &AppState) -> Router<AppState> {
    let definition = state.definition.clone();
    let keys = state.keys.clone();
    let settings = state.settings.clone();
    let probe = state.probe.clone();
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
                if let Some(probe) = &probe {
                    provide_context(probe.clone());
                }
            },
            move || app::shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), gate_settings))
}

fn function_route(plan: Arc<FunctionPlan>) -> MethodRouter<AppState> {
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
        move |State(state): State<AppState>,
              Path(path): Path<Vec<(String, String)>>,
              RawQuery(query): RawQuery,
              signed: SignedRequest| invoke(state, plan, path, query, signed)
    };
    let wrong_method = move |request: Request| async move {
        ApiError::MethodNotAllowed {
            function: name,
            expected: method.as_str(),
            got: request.method().to_string(),
        }
    };
    axum::routing::on(filter, handler)
        .fallback(wrong_method)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let plan = plan.clone();
            async move {
                let started = Instant::now();
                let call = Call::of(&request);
                let response = next.run(request).await;
                plan.metrics
                    .observe_call(response.status().as_u16(), started.elapsed());
                call.log_failure(&response);
                response
            }
        }))
}

fn request_id(request: &Request) -> &str {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// What the signed routes' one log line says of a call: its request id, method and path (never the query,
/// which could carry something private). These routes open no tracing span per call: the JSON formatter renders
/// a span's fields when the span opens, ~10,000 instructions on every call for lines only failures write
/// (docs/benchmarks.md). Nothing else logs on these routes, so no line lacks its request id.
struct Call {
    id: Option<HeaderValue>,
    method: http::Method,
    uri: http::Uri,
}

impl Call {
    fn of(request: &Request) -> Self {
        Call {
            id: request.headers().get(&REQUEST_ID).cloned(),
            method: request.method().clone(),
            uri: request.uri().clone(),
        }
    }

    /// One line for a refused or failed call, from the report `ApiError` left on the response.
    fn log_failure(&self, response: &axum::response::Response) {
        let Some(report) = response.extensions().get::<ErrorReport>() else {
            return;
        };
        let request_id = self
            .id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (method, path) = (self.method.as_str(), self.uri.path());
        let (status, code, error) = (
            response.status().as_u16(),
            report.code,
            report.detail.as_str(),
        );
        if response.status().is_server_error() {
            tracing::warn!(
                request_id,
                method,
                path,
                status,
                code,
                error,
                "function call failed"
            );
        } else {
            tracing::info!(
                request_id,
                method,
                path,
                status,
                code,
                error,
                "function call refused"
            );
        }
    }
}

async fn log_failure(request: Request, next: Next) -> axum::response::Response {
    let call = Call::of(&request);
    let response = next.run(request).await;
    call.log_failure(&response);
    response
}

async fn unknown_function(request: Request) -> ApiError {
    ApiError::UnknownFunction(request.uri().path().to_owned())
}

/// The configuration page needs a signed-in Infobip user; other routes pass through.
async fn gate_settings(
    state: State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    if request.uri().path() == "/settings" {
        oauth::require_session(state, request, next).await
    } else {
        next.run(request).await
    }
}
