//! Conversations' Custom cards: Conversations calls `/custom-card` with the open conversation's variables in the
//! query (`customerNumber`, `conversationId`, `agentId` …, as the admin wrote them into the webhook URL) and the
//! account's token in `Authorization: Bearer …`, and shows what comes back. The token names the account; the
//! card's data then comes from the same `[card]` declaration and partner middleware as the framed card.
//!
//! Infobip does not publish the answer format it expects, so the JSON below is an assumption, written down in
//! docs/exchange-assumptions.md and built in this file only ([`answer`]).

use super::format::AgentLocale;
use super::partner::{partner_part, Conversation};
use crate::errors::ApiError;
use crate::state::AppState;
use app::definition::CONVERSATION_VARIABLES;
use app::pages::card::PartnerPart;
use app::settings::card_tokens;
use app::settings::SettingsError;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The URL to paste into Conversations, with Infobip's Liquid variables, URL-encoded as Conversations offers.
pub fn webhook_url(public_url: &str) -> String {
    let query: Vec<String> = CONVERSATION_VARIABLES
        .iter()
        .map(|name| format!("{name}={{{{conversation.{name} | url_encode}}}}"))
        .collect();
    format!("{public_url}/custom-card?{}", query.join("&"))
}

/// The longest conversation variable accepted (phone numbers, addresses, ids and names are far shorter).
const MAX_VARIABLE_CHARS: usize = 256;

pub async fn custom_card(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query_text): RawQuery,
) -> Result<Response, ApiError> {
    // Read leniently (never a plain-text rejection): a variable Conversations left empty is just empty. A
    // variable given twice is refused: were the URL's `url_encode` ever dropped, an end user's display name
    // could otherwise bring a second `customerNumber` that overrides the real one.
    let mut query: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query_text.unwrap_or_default().as_bytes()) {
        let name = name.into_owned();
        if value.chars().count() > MAX_VARIABLE_CHARS || value.chars().any(char::is_control) {
            return Err(ApiError::InvalidParameter {
                name,
                reason: "control characters or more than 256 characters",
            });
        }
        if query.insert(name.clone(), value.into_owned()).is_some() {
            return Err(ApiError::InvalidParameter {
                name,
                reason: "given more than once",
            });
        }
    }
    let Some(card) = &state.definition.card else {
        return Err(ApiError::UnknownFunction("/custom-card".into()));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(card_tokens::from_authorization)
        .ok_or(ApiError::CardTokenMissing)?;
    let account_key = state
        .settings
        .store()
        .card_token_account(&card_tokens::digest(token))
        .await
        .map_err(|e| ApiError::Settings(SettingsError::Store(e)))?
        .ok_or(ApiError::CardTokenUnknown)?;
    let customer = query
        .get("customerNumber")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::MissingParameter("customerNumber"))?;
    let mut conversation: Conversation = CONVERSATION_VARIABLES
        .iter()
        .map(|name| {
            (
                *name,
                Value::from(query.get(*name).cloned().unwrap_or_default()),
            )
        })
        .collect();
    conversation.insert("customerNumber", Value::from(customer));
    // Conversations names no agent locale; the admin may add `locale=…` to the URL.
    let locale = AgentLocale::from_tag(query.get("locale").map_or("", String::as_str));
    let part = partner_part(
        &state,
        card,
        &account_key,
        conversation,
        locale,
        crate::activity::Surface::CustomCard,
    )
    .await;
    Ok(answer(&state.definition.app.name, part))
}

/// The one place the Custom cards answer is shaped.
fn answer(app_name: &str, part: PartnerPart) -> Response {
    let (status, body) = match part {
        PartnerPart::Found {
            title,
            fields,
            list,
        } => (
            StatusCode::OK,
            json!({
                "status": "found",
                "title": title,
                "fields": fields.into_iter().map(|f| json!({
                    "label": f.label, "value": f.text, "url": f.link,
                })).collect::<Vec<_>>(),
                "list": list.map(|l| json!({
                    "title": l.title,
                    "items": l.rows.into_iter().map(|r| json!({
                        "title": r.title, "detail": r.detail, "values": r.values, "url": r.link,
                    })).collect::<Vec<_>>(),
                })),
            }),
        ),
        PartnerPart::NotFound { address } => (
            StatusCode::OK,
            json!({"status": "not_found", "message": format!("No customer for {address} in {app_name}.")}),
        ),
        PartnerPart::NoAddress { channel } => (
            StatusCode::OK,
            json!({"status": "no_address", "message": format!(
                "This channel ({channel}) does not share the customer's phone number or email, so {app_name} cannot look them up."
            )}),
        ),
        PartnerPart::Nothing => (
            StatusCode::OK,
            json!({"status": "not_found", "message": "Nobody has written in this conversation yet."}),
        ),
        PartnerPart::NotConfigured => (
            StatusCode::CONFLICT,
            json!({"status": "not_configured", "message": format!(
                "{app_name} is not set up for this account yet: an admin opens Exchange → My apps → {app_name} → Open and saves its settings."
            )}),
        ),
        PartnerPart::Failed { message } => (
            StatusCode::BAD_GATEWAY,
            json!({"status": "failed", "message": message}),
        ),
    };
    (status, Json(body)).into_response()
}
