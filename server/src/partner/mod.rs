//! Calling the partner's API: one pooled HTTP client for the whole process, a deadline per call that covers
//! retries, and retries only where sending twice is harmless (idempotent methods, after a connection failure or
//! a gateway status).

pub mod request;

pub use request::{BuildError, PartnerRequest, RequestPlan};

use bytes::Bytes;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartnerError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the partner API could not be reached: {0}")]
    Unreachable(String),
    #[error("the partner API did not answer within {0} ms")]
    Timeout(u64),
    #[error("the partner API refused the request with HTTP {status}: {excerpt}")]
    ClientError { status: u16, excerpt: String },
    #[error("the partner API failed with HTTP {status}: {excerpt}")]
    ServerError { status: u16, excerpt: String },
    #[error("the partner API answered with something that is not JSON: {0}")]
    NotJson(String),
}

impl PartnerError {
    pub fn partner_status(&self) -> Option<u16> {
        match self {
            PartnerError::ClientError { status, .. } | PartnerError::ServerError { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub statuses: Vec<u16>,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            statuses: vec![502, 503, 504],
            backoff: Duration::from_millis(50),
        }
    }
}

#[derive(Clone)]
pub struct PartnerClient {
    http: reqwest::Client,
    retry: RetryPolicy,
}

enum Attempt {
    Done(serde_json::Value),
    Retry(PartnerError),
}

impl PartnerClient {
    pub fn new(retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3))
            // A redirect would carry the account's credentials to wherever the partner points: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ibex/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PartnerClient { http, retry })
    }

    /// Sends the request and returns the partner's JSON answer, or a typed failure, within `deadline`.
    pub async fn call(
        &self,
        request: &PartnerRequest,
        deadline: Duration,
    ) -> Result<serde_json::Value, PartnerError> {
        let started = Instant::now();
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let attempts = if request.idempotent {
            self.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut last = PartnerError::Timeout(deadline_ms);
        for attempt in 1..=attempts {
            let remaining = deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(PartnerError::Timeout(deadline_ms));
            }
            match tokio::time::timeout(remaining, self.attempt(request)).await {
                Err(_) => return Err(PartnerError::Timeout(deadline_ms)),
                Ok(Ok(Attempt::Done(value))) => return Ok(value),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Attempt::Retry(error))) => last = error,
            }
            if attempt < attempts {
                let pause = self.retry.backoff * attempt;
                if started.elapsed() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
        Err(last)
    }

    /// One attempt, no retry, any 2xx answer accepted whatever its body: whether the partner takes these
    /// credentials at all. Returns the status.
    pub async fn probe(
        &self,
        request: &PartnerRequest,
        deadline: Duration,
    ) -> Result<u16, PartnerError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let (status, body) = tokio::time::timeout(deadline, self.exchange(request))
            .await
            .map_err(|_| PartnerError::Timeout(deadline_ms))?
            .map_err(|e| PartnerError::Unreachable(e.without_url().to_string()))?;
        match status {
            200..=299 => Ok(status),
            400..=499 => Err(PartnerError::ClientError {
                status,
                excerpt: excerpt(&body),
            }),
            _ => Err(PartnerError::ServerError {
                status,
                excerpt: excerpt(&body),
            }),
        }
    }

    async fn exchange(&self, request: &PartnerRequest) -> Result<(u16, Bytes), reqwest::Error> {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?))
    }

    async fn attempt(&self, request: &PartnerRequest) -> Result<Attempt, PartnerError> {
        let (status, body) = match self.exchange(request).await {
            Ok(answer) => answer,
            // reqwest's message names the URL, whose query may hold a credential: drop it.
            Err(e) if e.is_connect() => {
                return Ok(Attempt::Retry(PartnerError::Unreachable(
                    e.without_url().to_string(),
                )))
            }
            Err(e) => return Err(PartnerError::Unreachable(e.without_url().to_string())),
        };
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map(Attempt::Done)
                .map_err(|e| {
                    PartnerError::NotJson(format!("{e}; it began with {:?}", excerpt(&body)))
                });
        }
        let excerpt = excerpt(&body);
        if (400..500).contains(&status) {
            return Err(PartnerError::ClientError { status, excerpt });
        }
        let error = PartnerError::ServerError { status, excerpt };
        if self.retry.statuses.contains(&status) {
            Ok(Attempt::Retry(error))
        } else {
            Err(error)
        }
    }
}

/// The start of the partner's answer, for an error message a bot designer can act on.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_owned()
}
