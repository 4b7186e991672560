//! The signed routes' log: one line per call, written when the answer is known, under the target
//! `ibex::calls` (named, not this module's path, so the documented `IBEX_LOG` filter outlives a move).

use crate::activity::{Activity, CallRecord, Surface, Upstream};
use crate::errors::ErrorReport;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// What the signed routes' one log line says of a call: its request id, method and path (never the query,
/// which could carry something private). These routes open no tracing span per call: the JSON formatter renders
/// a span's fields when the span opens, ~10,000 instructions on every call for lines only failures write
/// (docs/benchmarks.md). Nothing else logs on these routes, so no line lacks its request id.
pub struct Call {
    id: Option<HeaderValue>,
    method: http::Method,
    uri: http::Uri,
    /// The account key the request names (proven only once its signature checks out).
    account: Option<HeaderValue>,
}

impl Call {
    pub fn of(request: &Request) -> Self {
        Call {
            id: request.headers().get(REQUEST_ID).cloned(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            account: request
                .headers()
                .get(crate::signed::signature::ACCOUNT_KEY_NAME)
                .cloned(),
        }
    }

    /// Counts the call in the account's activity (`activity`): its function, outcome and time, never its body.
    pub fn count(
        &self,
        activity: &Activity,
        function: &str,
        elapsed: std::time::Duration,
        response: &Response,
    ) {
        let Some(account) = self.account.as_ref().and_then(|v| v.to_str().ok()) else {
            return;
        };
        let report = response.extensions().get::<ErrorReport>();
        activity.record(&CallRecord {
            account,
            surface: Surface::Signed,
            function,
            elapsed,
            code: report.map(|r| r.code),
            status: report.and_then(|r| r.status),
            request_id: self
                .id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            verified: report.is_none_or(|r| !r.unverified),
            upstream: Upstream::Partner,
        });
    }

    /// One line for a refused or failed call, from the report `ApiError` left on the response; a successful
    /// call only at DEBUG (`IBEX_LOG=info,ibex::calls=debug`), which costs nothing while disabled.
    pub fn log(&self, response: &Response) {
        let request_id = || {
            self.id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        let (method, path) = (self.method.as_str(), self.uri.path());
        let status = response.status().as_u16();
        let Some(report) = response.extensions().get::<ErrorReport>() else {
            tracing::debug!(
                target: "ibex::calls",
                request_id = request_id(),
                method,
                path,
                status,
                "function call"
            );
            return;
        };
        let (request_id, code, error) = (request_id(), report.code, report.detail.as_str());
        if response.status().is_server_error() {
            tracing::warn!(
                target: "ibex::calls",
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
                target: "ibex::calls",
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

/// Set on every request by the outermost layer and sent back with the answer.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A random UUID for a request that brings no id of its own, as tower-http's `MakeRequestUuid` makes, written
/// into a buffer on the stack: `MakeRequestUuid` formats it into a `String` through `Display` first, about 280
/// instructions more per call (docs/benchmarks.md).
#[derive(Clone, Copy, Default)]
pub struct MakeRequestId;

impl tower_http::request_id::MakeRequestId for MakeRequestId {
    fn make_request_id<B>(
        &mut self,
        _: &http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_http::request_id::MakeRequestId as _;

    #[test]
    fn new_request_ids_are_distinct_random_uuids() {
        let request = http::Request::new(());
        let ids: std::collections::HashSet<String> = (0..100)
            .map(|_| {
                let id = MakeRequestId.make_request_id(&request).unwrap();
                let text = id.header_value().to_str().unwrap().to_owned();
                let parsed = uuid::Uuid::parse_str(&text).unwrap();
                assert_eq!(parsed.get_version_num(), 4);
                assert_eq!(parsed.hyphenated().to_string(), text);
                text
            })
            .collect();
        assert_eq!(ids.len(), 100);
    }
}
