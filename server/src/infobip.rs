//! The one client for Infobip's own APIs (the context card's Conversations call today, People sync next): a
//! configured base URL, the token scheme Infobip expects, a deadline per call, 429 answered by waiting out
//! `Retry-After` once when that fits the deadline, and failures typed so a page can say what happened.

use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct InfobipConfig {
    /// `https://<account>.api.infobip.com`, or the simulator's portal in development.
    pub base_url: url::Url,
    /// The word before the token in `Authorization` (`IBSSO` for tokens from Exchange OAuth).
    pub auth_scheme: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfobipError {
    /// The token is unknown or expired: sign in again.
    #[error("Infobip did not accept the sign-in token (HTTP 401)")]
    Unauthorized,
    #[error("Infobip refused access (HTTP 403): {0}")]
    Forbidden(String),
    #[error("Infobip has no such conversation for this account")]
    NotFound,
    #[error("Infobip is rate-limiting these calls; retry in {0} s")]
    RateLimited(u64),
    #[error("Infobip could not be reached: {0}")]
    Unreachable(String),
    #[error("Infobip did not answer within {0} ms")]
    Timeout(u64),
    #[error("Infobip failed with HTTP {status}: {text}")]
    Failed { status: u16, text: String },
    #[error("Infobip's answer could not be read: {0}")]
    BadAnswer(String),
}

/// Who wrote in: the first inbound message's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// Phone number or address (`from`, else `content.sender`).
    pub address: String,
    pub display_name: Option<String>,
    pub channel: Option<String>,
}

#[derive(Clone)]
pub struct InfobipClient {
    http: reqwest::Client,
    config: InfobipConfig,
}

#[derive(Deserialize)]
struct Messages {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    direction: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    sender: Option<String>,
    #[serde(default, rename = "senderName")]
    sender_name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(rename = "requestError")]
    request_error: Option<RequestError>,
}

#[derive(Deserialize)]
struct RequestError {
    #[serde(rename = "serviceException")]
    service_exception: Option<ServiceException>,
}

#[derive(Deserialize)]
struct ServiceException {
    #[serde(default)]
    text: String,
}

/// The longest `Retry-After` waited out inside one call; a longer one is the caller's to show.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

impl InfobipClient {
    pub fn new(http: reqwest::Client, config: InfobipConfig) -> Self {
        InfobipClient { http, config }
    }

    /// The end user of a conversation, from its first inbound message; `None` when nobody has written in.
    pub async fn end_user(
        &self,
        token: &str,
        conversation_id: &str,
    ) -> Result<Option<EndUser>, InfobipError> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| {
                InfobipError::BadAnswer("the Infobip base URL cannot take a path".into())
            })?
            .pop_if_empty()
            .extend(["ccaas", "1", "conversations", conversation_id, "messages"]);
        let body = self.get(url, token).await?;
        let answer: Messages =
            serde_json::from_slice(&body).map_err(|e| InfobipError::BadAnswer(e.to_string()))?;
        Ok(answer
            .messages
            .into_iter()
            .find(|m| m.direction.eq_ignore_ascii_case("INBOUND"))
            .and_then(|m| {
                let content = m.content.unwrap_or(Content {
                    sender: None,
                    sender_name: None,
                });
                let address = m.from.filter(|f| !f.is_empty()).or(content.sender)?;
                Some(EndUser {
                    address,
                    display_name: content.sender_name.filter(|n| !n.trim().is_empty()),
                    channel: m.channel,
                })
            }))
    }

    async fn get(&self, url: url::Url, token: &str) -> Result<bytes::Bytes, InfobipError> {
        let started = Instant::now();
        let deadline = self.config.timeout;
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let mut waited = false;
        loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            let mut authorization =
                http::HeaderValue::try_from(format!("{} {token}", self.config.auth_scheme))
                    .map_err(|_| InfobipError::Unauthorized)?;
            authorization.set_sensitive(true);
            let sent = self
                .http
                .get(url.clone())
                .header(http::header::AUTHORIZATION, authorization)
                .header(http::header::ACCEPT, "application/json")
                .timeout(remaining)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) if e.is_timeout() => return Err(InfobipError::Timeout(deadline_ms)),
                // Never the URL in a message: reqwest's error text would carry it.
                Err(e) => {
                    return Err(InfobipError::Unreachable(crate::partner::chain(
                        &e.without_url(),
                    )))
                }
            };
            let status = response.status().as_u16();
            if status == 429 {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                let pause = Duration::from_secs(retry_after);
                if !waited && pause <= MAX_RETRY_WAIT && started.elapsed() + pause < deadline {
                    waited = true;
                    tokio::time::sleep(pause).await;
                    continue;
                }
                return Err(InfobipError::RateLimited(retry_after));
            }
            let body = read_capped(response).await?;
            return match status {
                200..=299 => Ok(body),
                401 => Err(InfobipError::Unauthorized),
                403 => Err(InfobipError::Forbidden(error_text(&body))),
                404 => Err(InfobipError::NotFound),
                _ => Err(InfobipError::Failed {
                    status,
                    text: error_text(&body),
                }),
            };
        }
    }
}

/// Infobip's answers the card reads are small; a larger one is refused rather than buffered.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

async fn read_capped(mut response: reqwest::Response) -> Result<bytes::Bytes, InfobipError> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| InfobipError::Unreachable(crate::partner::chain(&e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(InfobipError::BadAnswer(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Infobip's own words from `requestError.serviceException.text`, or the start of the body.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .and_then(|e| e.request_error?.service_exception)
        .map(|s| s.text)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned()
        })
}
