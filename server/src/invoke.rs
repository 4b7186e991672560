//! The signed function path, top to bottom: verified request → account settings → inputs → partner request →
//! partner answer → mapped outputs.

use crate::errors::ApiError;
use crate::functions::FunctionPlan;
use crate::inputs::{Inputs, Scope};
use crate::mapping::map_outputs;
use crate::partner::PartnerError;
use crate::signed::SignedRequest;
use crate::state::AppState;
use axum::Json;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

pub async fn invoke(
    state: AppState,
    plan: Arc<FunctionPlan>,
    path: Vec<(String, String)>,
    query: Option<String>,
    signed: SignedRequest,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let settings = state.settings.resolved(&signed.account_key).await?;
    let inputs = Inputs::collect(&plan.function, &path, query.as_deref(), &signed.body)?;
    let request = plan
        .request
        .build(&Scope {
            inputs: &inputs,
            settings: settings.as_ref(),
        })
        .map_err(PartnerError::from)?;
    let started = Instant::now();
    let answer = state
        .partner
        .call(&request, &plan.answer, plan.deadline)
        .await;
    plan.metrics
        .observe_partner_call(answer.is_ok(), started.elapsed());
    let outputs = map_outputs(&plan.outputs, &answer?)?;
    Ok(Json(outputs))
}
