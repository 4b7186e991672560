//! The extractor every signed route uses: it reads the raw body (bounded), checks the signature against it, and
//! hands the handler the account key and the very bytes that were verified, with the signed call's slot
//! (`ops::admission`), held for as long as the handler holds the request.

use crate::errors::ApiError;
use crate::signed::signature::now_ms;
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;

#[derive(Debug)]
pub struct SignedRequest {
    pub account_key: String,
    pub body: Bytes,
    /// Taken once the signature checks out, so that nobody without the signing secret can hold one.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = if axum::body::HttpBody::is_end_stream(&body) {
            Bytes::new()
        } else {
            // Whoever sends a body holds an intake slot while it arrives, never a signed call's; the longest
            // read under way gives its slot up to a newcomer when all are taken (`ops::admission::Intake`).
            let ticket = state
                .slots
                .intake
                .enter()
                .await
                .ok_or(ApiError::Overloaded)?;
            tokio::select! {
                read = read_body(&parts, body, state.max_body_bytes, state.body_timeout) => read?,
                () = ticket.cut() => return Err(ApiError::Overloaded),
            }
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
        let slot = state
            .slots
            .signed
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        Ok(SignedRequest {
            account_key: verified.account_key.to_owned(),
            body,
            _slot: slot,
        })
    }
}

/// Reads a whole request body, bounded in size and in total time (not per chunk: a client trickling a byte at a
/// time would otherwise keep a request, and a concurrency slot, for as long as it likes). A declared length over
/// the limit is refused before a byte is read. Signed calls and pages (`ops::admission::page_body`) both read
/// their bodies here, so both answer in the same shape: 413 `body_too_large`, 408 `body_timeout`.
pub(crate) async fn read_body(
    parts: &http::request::Parts,
    body: axum::body::Body,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // A GET carries no body: reading it would still arm a timer and a collector, per call.
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit));
    let Ok(read) = read.await else {
        return Err(ApiError::BodyTimeout {
            secs: deadline.as_secs(),
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
    })
}
