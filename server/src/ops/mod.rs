//! Endpoints for whoever runs ibex: liveness, readiness (the settings database answers) and metrics.

pub mod admission;
pub mod listen;
pub mod metrics;

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.settings.store().ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "settings database unreachable" })),
            )
        }
    }
}

/// Metrics name every function and count every failure: not for whoever reaches the public listener. With
/// `IBEX_METRICS_TOKEN` set, a scraper sends `Authorization: Bearer <token>`; without it, only development
/// mode serves them.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let allowed = match state.metrics_token.as_deref() {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| {
                subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
            }),
        None => state.dev,
    };
    if !allowed {
        let message = if state.metrics_token.is_some() {
            "send the metrics token as Authorization: Bearer <IBEX_METRICS_TOKEN>"
        } else {
            "metrics are off: set IBEX_METRICS_TOKEN and send it as Authorization: Bearer <token>"
        };
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": { "code": "metrics_unauthorized", "message": message } })),
        )
            .into_response();
    }
    state
        .metrics
        .set_settings_cache(state.settings.cache_usage().await);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
