//! The one place where failures of every layer become HTTP answers: `{"error": {"code", "message"}}`, a precise
//! status, and a message written for the developer or bot designer who has to fix the cause.

use crate::partner::{BuildError, PartnerError};
use crate::signed::inputs::InputError;
use crate::signed::mapping::MappingError;
use crate::signed::signature::SignatureError;
use app::settings::store::StoreError;
use app::settings::SettingsError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("this signed request was already received; a signature is accepted once (IBEX_REPLAY_GUARD)")]
    Replayed,
    #[error("request body is larger than the {limit} bytes allowed")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("no function at {0}; the manifest in App shell lists the URIs this app serves")]
    UnknownFunction(String),
    #[error("{0}; path parameters must be UTF-8 text once percent-decoded")]
    InvalidPath(String),
    #[error("function `{function}` is called with {expected}, not {got}")]
    MethodNotAllowed {
        function: String,
        expected: &'static str,
        got: String,
    },
    #[error("send the account's custom card token as `Authorization: Bearer ibexcc_…`; an admin issues it on the app's configuration page")]
    CardTokenMissing,
    #[error("this custom card token is not (or no longer) issued: the token on the app's configuration page replaces any earlier one")]
    CardTokenUnknown,
    #[error("query parameter `{0}` is missing or empty")]
    MissingParameter(&'static str),
    #[error("query parameter `{name}`: {reason}")]
    InvalidParameter { name: String, reason: &'static str },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Partner(#[from] PartnerError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("body field `{0}`: {1}")]
    InvalidField(&'static str, &'static str),
    #[error("{0}")]
    PeopleTarget(#[from] crate::sync::people::TargetError),
    #[error(transparent)]
    People(#[from] crate::sync::people::WriteError),
    #[error("People has no person with {kind} `{identifier}`")]
    PersonNotFound {
        kind: &'static str,
        identifier: String,
    },
    #[error("this app does not write People's changes to the partner ([sync.from_people])")]
    NoFromPeople,
    #[error("the person in People cannot be written to the partner: {0}")]
    PersonUnusable(String),
    #[error("People sync is paused for this account; nothing is written to the partner until an admin resumes it")]
    SyncPaused,
    #[error("ibex is serving as many requests as it is configured for; retry shortly")]
    Overloaded,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Signature(e) => match e {
                SignatureError::MissingHeader(_) => (S::UNAUTHORIZED, "missing_header"),
                SignatureError::HeaderNotText(_) => (S::BAD_REQUEST, "invalid_header"),
                SignatureError::BadAccountKey => (S::BAD_REQUEST, "invalid_account_key"),
                SignatureError::TimestampNotNumeric(_) => (S::BAD_REQUEST, "invalid_timestamp"),
                SignatureError::TimestampInSeconds(_) => (S::BAD_REQUEST, "timestamp_in_seconds"),
                SignatureError::Stale { .. } => (S::UNAUTHORIZED, "stale_timestamp"),
                SignatureError::Future { .. } => (S::UNAUTHORIZED, "future_timestamp"),
                SignatureError::MalformedSignature => (S::UNAUTHORIZED, "malformed_signature"),
                SignatureError::Mismatch => (S::UNAUTHORIZED, "signature_mismatch"),
            },
            ApiError::Replayed => (S::CONFLICT, "replayed"),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BodyUnreadable => (S::BAD_REQUEST, "body_unreadable"),
            ApiError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnknownFunction(_) => (S::NOT_FOUND, "unknown_function"),
            ApiError::InvalidPath(_) => (S::BAD_REQUEST, "invalid_path"),
            ApiError::CardTokenMissing => (S::UNAUTHORIZED, "missing_card_token"),
            ApiError::CardTokenUnknown => (S::UNAUTHORIZED, "unknown_card_token"),
            ApiError::MissingParameter(_) => (S::BAD_REQUEST, "missing_parameter"),
            ApiError::InvalidParameter { .. } => (S::BAD_REQUEST, "invalid_parameter"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Input(InputError::MalformedJson(_) | InputError::NotAnObject) => {
                (S::BAD_REQUEST, "malformed_json")
            }
            ApiError::Input(_) => (S::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::Settings(SettingsError::NotConfigured { .. }) => {
                (S::CONFLICT, "account_not_configured")
            }
            ApiError::Settings(SettingsError::Unreadable(_)) => (S::CONFLICT, "secrets_unreadable"),
            ApiError::Settings(SettingsError::Invalid(_)) => {
                (S::UNPROCESSABLE_ENTITY, "invalid_settings")
            }
            ApiError::Settings(SettingsError::Store(StoreError::Crypto(_))) => {
                (S::INTERNAL_SERVER_ERROR, "settings_unreadable")
            }
            ApiError::Settings(SettingsError::Store(_)) => {
                (S::SERVICE_UNAVAILABLE, "settings_unavailable")
            }
            ApiError::Partner(e) => match e {
                PartnerError::Build(BuildError::DotSegment(_) | BuildError::PathSeparator(_)) => {
                    (S::UNPROCESSABLE_ENTITY, "invalid_input")
                }
                PartnerError::Build(_) => (S::CONFLICT, "partner_request_invalid"),
                PartnerError::Forbidden(_) => (S::CONFLICT, "partner_address_forbidden"),
                PartnerError::Unreachable(_) => (S::BAD_GATEWAY, "partner_unreachable"),
                PartnerError::Timeout(_) => (S::GATEWAY_TIMEOUT, "partner_timeout"),
                PartnerError::ClientError { .. } => (S::BAD_GATEWAY, "partner_client_error"),
                PartnerError::ServerError { .. } => (S::BAD_GATEWAY, "partner_server_error"),
                PartnerError::NotJson(_) | PartnerError::TooLarge(_) => {
                    (S::BAD_GATEWAY, "partner_bad_answer")
                }
            },
            ApiError::Mapping(_) => (S::BAD_GATEWAY, "partner_bad_answer"),
            ApiError::InvalidField(..) => (S::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::PeopleTarget(_) => (S::CONFLICT, "people_not_configured"),
            ApiError::People(e) => match e {
                crate::sync::people::WriteError::Invalid(_) => (S::BAD_GATEWAY, "people_refused"),
                crate::sync::people::WriteError::Refused(_) => (S::CONFLICT, "people_key_refused"),
                crate::sync::people::WriteError::Outage(_) => {
                    (S::SERVICE_UNAVAILABLE, "people_unavailable")
                }
            },
            ApiError::PersonNotFound { .. } => (S::NOT_FOUND, "person_not_found"),
            ApiError::NoFromPeople => (S::NOT_FOUND, "unknown_function"),
            ApiError::PersonUnusable(_) => (S::UNPROCESSABLE_ENTITY, "person_unusable"),
            ApiError::SyncPaused => (S::CONFLICT, "sync_paused"),
            ApiError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded"),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Settings(SettingsError::NotConfigured { missing, .. }) => format!(
                "this Infobip account has not configured the app yet ({} missing): an admin of the account should \
                 open the app's configuration page (Exchange → My Apps → Open) and save the settings",
                missing.join(", ")
            ),
            ApiError::Settings(SettingsError::Unreadable(fields)) => format!(
                "this account's stored secret(s) {} cannot be opened with ibex's encryption keys: an admin of the \
                 account enters them again on the app's configuration page (or the operator restores the key \
                 that sealed them)",
                fields.join(", ")
            ),
            // Internal details stay in the log; the caller learns only what it can act on.
            ApiError::Settings(SettingsError::Store(StoreError::Crypto(_))) => {
                "this account's stored secrets cannot be opened with the configured encryption keys".into()
            }
            ApiError::Settings(SettingsError::Store(_)) => "the settings database is unavailable; retry shortly".into(),
            other => other.to_string(),
        }
    }

    /// Whether this refusal came before the request's signature (or card token) was checked, or names an account
    /// that does not exist: the account key it carries proves nothing.
    pub fn before_verification(&self) -> bool {
        matches!(
            self,
            ApiError::Signature(_)
                | ApiError::Replayed
                | ApiError::BodyTooLarge { .. }
                | ApiError::BodyUnreadable
                | ApiError::BodyTimeout { .. }
                | ApiError::UnknownFunction(_)
                | ApiError::InvalidPath(_)
                | ApiError::MethodNotAllowed { .. }
                | ApiError::CardTokenMissing
                | ApiError::CardTokenUnknown
                | ApiError::Overloaded
                // A key nobody ever saved settings under: the signature covers the body, not the key, so a
                // request captured within the replay window could name any account.
                | ApiError::Settings(SettingsError::NotConfigured { stored: false, .. })
        )
    }

    /// The partner's or People's HTTP status behind this error, when one of them answered: what the activity
    /// view counts failures by, beside the code.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            ApiError::Partner(e) => e.partner_status(),
            ApiError::People(crate::sync::people::WriteError::Refused(status)) => Some(*status),
            _ => None,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Partner(e) => e.partner_status().map(|s| json!({ "partner_status": s })),
            ApiError::Settings(SettingsError::NotConfigured { missing, .. }) => {
                Some(json!({ "missing": missing }))
            }
            ApiError::Settings(SettingsError::Invalid(fields)) => Some(json!({ "fields": fields })),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut error = json!({ "code": code, "message": self.message() });
        if let Some(details) = self.details() {
            error["details"] = details;
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if matches!(
            self,
            ApiError::BodyTooLarge { .. } | ApiError::BodyUnreadable | ApiError::BodyTimeout { .. }
        ) {
            // The rest of the body is left unread, so the connection cannot carry another request: say so, or a
            // client reuses it and its next request fails on the closed socket (seen as a flaky test).
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if matches!(self, ApiError::Overloaded) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response.extensions_mut().insert(ErrorReport {
            code,
            unverified: self.before_verification(),
            status: self.upstream_status(),
            detail: self.to_string(),
        });
        response
    }
}

/// Carried on an error response to the call log (`calls::Call::log`), which knows the request id,
/// method and path: the full cause, which the JSON body may leave out, goes to the log only.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub code: &'static str,
    /// The partner's or People's HTTP status, when one of them answered with an error.
    pub status: Option<u16>,
    /// Refused before the caller was known to hold the signing secret (or a card token): the account key it
    /// named proves nothing.
    pub unverified: bool,
    pub detail: String,
}
