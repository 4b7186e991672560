//! People → partner for one person, at once: a Moments flow started by "Change in People profile" calls this
//! signed endpoint (listed in the Flow manifest) with the person's identifier. The path reads top-down like a
//! signed function call: verify → account settings → the person from People → mapped inputs → the partner
//! function → answer. Its write is recorded like a run's, so the next scheduled run finds the person unchanged.

use super::people::PeopleWriter;
use super::person::{fields_off, person_inputs};
use super::runs::{Runs, FROM_PEOPLE};
use crate::errors::ApiError;
use crate::signed::inputs::Inputs;
use crate::signed::invoke::call_partner;
use crate::signed::request::SignedRequest;
use crate::signin::oauth;
use crate::state::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Where the endpoint is served and listed in the Flow manifest.
pub const PATH: &str = "/sync/people-changed";

/// How long the People read may take, rate-limit waits included: the caller is a flow waiting on this answer,
/// so People's 429s are not waited out for minutes as a background run does.
const PEOPLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

pub async fn people_changed(State(state): State<AppState>, request: Request) -> Response {
    let (started, call) = (
        std::time::Instant::now(),
        crate::signed::calls::Call::of(&request),
    );
    let mut response = write_person(&state, request).await.into_response();
    oauth::protect(response.headers_mut(), oauth::NOT_FRAMED);
    call.count(
        &state.activity,
        "people-changed",
        started.elapsed(),
        &response,
    );
    call.log(&response);
    response
}

async fn write_person(state: &AppState, request: Request) -> Result<Json<Value>, ApiError> {
    let signed = SignedRequest::from_request(request, state).await?;
    let settings = state.settings.resolved(&signed.account_key).await?;
    let sync = state
        .definition
        .sync
        .as_ref()
        .ok_or(ApiError::NoFromPeople)?;
    let from = sync.from_people.as_ref().ok_or(ApiError::NoFromPeople)?;
    let identifier = identifier_of(&signed.body)?;
    // The account whose settings these are (`ibex settings link` points a signed key at another account's): its
    // runs, pauses and digests are the ones this call joins.
    let account = state
        .settings
        .store()
        .linked(&signed.account_key)
        .await
        .map_err(|e| ApiError::Settings(app::settings::SettingsError::Store(e)))?
        .unwrap_or_else(|| signed.account_key.clone());
    // An admin who paused People → partner means nothing of it, a flow's call included.
    let paused = super::controls::Controls::new(state.settings.store().clone())
        .paused_by(&account, FROM_PEOPLE)
        .await
        .map_err(|e| ApiError::Settings(app::settings::SettingsError::Store(e)))?;
    if paused.is_some() {
        return Err(ApiError::SyncPaused);
    }

    let target = super::people::PeopleTarget::from_settings(&settings, &state.sync)?;
    let people = PeopleWriter {
        http: &state.http,
        limits: &state.people_limits,
        target: &target,
        account_key: &account,
        sync,
        activity: None,
    };
    let person = tokio::time::timeout(PEOPLE_DEADLINE, people.person(&identifier))
        .await
        .map_err(|_| {
            super::people::WriteError::Outage(format!(
                "People did not answer within {} s",
                PEOPLE_DEADLINE.as_secs()
            ))
        })??
        .ok_or_else(|| ApiError::PersonNotFound {
            kind: sync.identifier.as_str(),
            identifier: identifier.clone(),
        })?;
    // Found by the identifier, so the person has it: `None` cannot happen, but is answered as not found.
    let write = person_inputs(sync, &person, &fields_off(sync, &settings)).ok_or_else(|| {
        ApiError::PersonNotFound {
            kind: sync.identifier.as_str(),
            identifier: identifier.clone(),
        }
    })?;

    let plan = state
        .functions
        .iter()
        .find(|p| p.function.name == from.function)
        .ok_or(ApiError::NoFromPeople)?;
    // What the partner was last sent for this record (by a run or by this endpoint): unchanged is not sent.
    let runs = Runs::new(state.settings.store().clone());
    let known = runs
        .digests(&account, FROM_PEOPLE, std::slice::from_ref(&write.key))
        .await
        .map_err(|e| ApiError::Settings(app::settings::SettingsError::Store(e)))?;
    if known.get(&write.key) == Some(&write.digest) {
        return Ok(Json(json!({ "written": false, "key": write.key })));
    }
    let given: HashMap<String, Value> = write.inputs.into_iter().collect();
    super::engine::check_person_values(&given).map_err(ApiError::PersonUnusable)?;
    let inputs = Inputs::from_values(&plan.function, &given)?;
    call_partner(state, plan, &settings, &inputs).await?;

    if let Err(e) = runs
        .remember(&account, FROM_PEOPLE, &write.key, &write.digest)
        .await
    {
        // The partner has the change; the next run only sends it once more.
        tracing::warn!(account = %account, "people sync: the write could not be recorded: {e}");
    }
    Ok(Json(json!({ "written": true, "key": write.key })))
}

/// `{"identifier": "c-100"}`: the person's value of `[sync] identifier` (its external id by default).
fn identifier_of(body: &[u8]) -> Result<String, ApiError> {
    use crate::signed::inputs::InputError;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| InputError::MalformedJson(e.to_string()))?;
    let object = value.as_object().ok_or(InputError::NotAnObject)?;
    match object.get("identifier") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => Ok(s.trim().to_owned()),
        // Whole numbers only, written as they were: `-0` or `1e3` would be looked up as another text.
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        _ => Err(ApiError::InvalidField(
            "identifier",
            "give the person's identifier as a non-empty string of at most 256 characters",
        )),
    }
}
