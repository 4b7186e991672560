//! The signed function path, top to bottom: verified request → account settings → inputs → partner request →
//! partner answer → mapped outputs; then the call is counted and, if it failed, logged. One handler does all of
//! it, so no extractor can answer on its own (in plain text) and no middleware wraps the call.

use crate::errors::ApiError;
use crate::partner::PartnerError;
use crate::signed::answer::Answer;
use crate::signed::calls::Call;
use crate::signed::functions::FunctionPlan;
use crate::signed::inputs::{Inputs, Scope};
use crate::signed::mapping::map_outputs;
use crate::signed::request::SignedRequest;
use crate::signin::oauth;
use crate::state::AppState;
use app::settings::ResolvedSettings;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

pub async fn serve(state: AppState, plan: Arc<FunctionPlan>, request: Request) -> Response {
    let started = Instant::now();
    let call = Call::of(&request);
    let outcome = invoke(&state, &plan, request).await;
    finish(&state, &plan, &call, started, outcome)
}

/// Counts the call in the function's metrics and the account's activity, and logs it (failures at INFO or
/// WARN, the rest at DEBUG).
pub fn finish(
    state: &AppState,
    plan: &FunctionPlan,
    call: &Call,
    started: Instant,
    outcome: Result<Response, ApiError>,
) -> Response {
    let mut response = outcome.into_response();
    oauth::protect(response.headers_mut(), oauth::NOT_FRAMED);
    let elapsed = started.elapsed();
    plan.metrics
        .observe_call(response.status().as_u16(), elapsed);
    call.count(&state.activity, &plan.function.name, elapsed, &response);
    call.log(&response);
    response
}

async fn invoke(
    state: &AppState,
    plan: &FunctionPlan,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // As the router decoded them, shared: `Path` would copy each name and value into a `String` of its own.
    let path = match RawPathParams::from_request_parts(&mut parts, state).await {
        Ok(path) => path,
        Err(e) => {
            // Answered before the body is read: the client must still get the answer, not a reset.
            crate::routes::drain(Request::from_parts(parts, body), state.body_timeout).await;
            return Err(ApiError::InvalidPath(e.body_text()));
        }
    };
    let query = parts.uri.query().map(str::to_owned);
    let signed = SignedRequest::from_request(Request::from_parts(parts, body), state).await?;
    let settings = state.settings.resolved(&signed.account_key).await?;
    let inputs = Inputs::collect(&plan.function, &path, query.as_deref(), &signed.body)?;
    let answer = partner_answer(state, plan, &settings, &inputs).await?;
    Ok(Json(map_outputs(&plan.outputs, &answer)?).into_response())
}

/// Inputs and the account's settings → partner request → partner answer → mapped outputs, as a map: the context
/// card's and People sync's calls. They reach the partner by the signed calls' own path (`partner_answer`);
/// only a signed call writes its outputs straight into its answer instead.
pub async fn call_partner(
    state: &AppState,
    plan: &FunctionPlan,
    settings: &ResolvedSettings,
    inputs: &Inputs,
) -> Result<Map<String, Value>, ApiError> {
    let answer = partner_answer(state, plan, settings, inputs).await?;
    Ok(map_outputs(&plan.outputs, &answer)?.into_map())
}

/// Inputs and the account's settings → partner request → partner answer, only the parts the outputs read
/// (`answer.rs`).
async fn partner_answer(
    state: &AppState,
    plan: &FunctionPlan,
    settings: &ResolvedSettings,
    inputs: &Inputs,
) -> Result<Answer, ApiError> {
    let request = plan
        .request
        .build(&Scope { inputs, settings })
        .map_err(PartnerError::from)?;
    let started = Instant::now();
    let answer = state
        .partner
        .call(&request, &plan.answer, plan.deadline)
        .await;
    plan.metrics
        .observe_partner_call(answer.is_ok(), started.elapsed());
    Ok(answer?)
}
