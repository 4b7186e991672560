//! The extractor every signed route uses: it reads the raw body (bounded), checks the signature against it, and
//! hands the handler the account key and the very bytes that were verified.

use crate::errors::ApiError;
use crate::signed::signature::now_ms;
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;

#[derive(Debug)]
pub struct SignedRequest {
    pub account_key: String,
    pub body: Bytes,
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let limit = state.max_body_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(ApiError::BodyTooLarge { limit });
        }
        // A GET carries no body: reading it would still arm a timer and a collector, per call. The signed routes
        // pass no body-timeout layer (routes.rs) for that reason; a body that is coming gets its deadline here.
        let body = if axum::body::HttpBody::is_end_stream(&body) {
            Bytes::new()
        } else {
            let read = tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, limit));
            let Ok(read) = read.await else {
                return Err(ApiError::BodyTimeout {
                    secs: state.body_timeout.as_secs(),
                });
            };
            read.map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large || declared.is_none() {
                    ApiError::BodyTooLarge { limit }
                } else {
                    ApiError::BodyUnreadable
                }
            })?
        };
        let verified = state.verifier.verify(&parts.headers, &body, now_ms())?;
        if let Some(seen) = &state.replay_guard {
            // The signature is unique to timestamp + body: the same one twice is the same request sent again.
            let signature = parts
                .headers
                .get(crate::signed::signature::SIGNATURE_NAME)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !seen.entry(signature).or_insert(()).is_fresh() {
                return Err(ApiError::Replayed);
            }
        }
        Ok(SignedRequest {
            account_key: verified.account_key.to_owned(),
            body,
        })
    }
}
