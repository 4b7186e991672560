//! The one client for Infobip's own APIs. `call` is what every Infobip call goes through, the context card's
//! Conversations call and People sync's person reads and writes alike: the `Authorization` scheme (an Exchange
//! token or an API key), a deadline, a capped answer, `Retry-After` read, errors without the URL, Infobip's error
//! text. On it, `InfobipClient` serves the card: a configured base URL, one short wait on a 429 when that fits
//! the deadline, failures typed so the card can say what happened. People sync's own policy (rate limits, long
//! waits, backoff, pausing a run) is in `sync/people.rs`.

use serde::Deserialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct InfobipConfig {
    /// `https://<account>.api.infobip.com`, or the simulator's portal in development.
    pub base_url: url::Url,
    /// The operator's word before the Exchange token in `Authorization` (`IBEX_INFOBIP_AUTH_SCHEME`); `None`
    /// sends the token answer's own `token_type`, as Infobip's sample app does.
    pub auth_scheme: Option<String>,
    pub timeout: Duration,
    /// The messages API's documented throttle per account (500 requests a minute, `IBEX_INFOBIP_MESSAGES_PER_MINUTE`):
    /// kept by ibex itself, so a busy account's agents see "retry shortly" at once instead of a 429 after a call.
    pub messages_per_minute: u32,
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
    /// `from`, else `content.sender`: a phone number or address, or on some channels an opaque id
    /// (`app::definition::OPAQUE_ID_CHANNELS`).
    pub address: String,
    pub display_name: Option<String>,
    pub channel: Option<String>,
}

#[derive(Clone)]
pub struct InfobipClient {
    http: reqwest::Client,
    config: InfobipConfig,
    /// Per account, the messages calls this instance may still make (`InfobipConfig::messages_per_minute`).
    messages: Arc<governor::DefaultKeyedRateLimiter<String>>,
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

/// The longest `Retry-After` waited out inside one call; a longer one is the caller's to show.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

impl InfobipClient {
    pub fn new(http: reqwest::Client, config: InfobipConfig) -> Self {
        let rate = NonZeroU32::new(config.messages_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        // Spread over the minute, as Infobip counts it, with the minute's worth available at once.
        let quota = governor::Quota::per_minute(rate).allow_burst(rate);
        InfobipClient {
            http,
            config,
            messages: Arc::new(governor::RateLimiter::keyed(quota)),
        }
    }

    /// The operator's override of the `Authorization` scheme, if any.
    pub fn scheme_override(&self) -> Option<&str> {
        self.config.auth_scheme.as_deref()
    }

    /// The word the card puts before a token whose answer said `token_type`: the operator's override, else
    /// that type, else `IBSSO` (a session signed in before the type was kept, or an answer without one, or with
    /// something that is not one word: a scheme is never built from arbitrary text).
    pub fn scheme_for<'a>(&'a self, token_type: &'a str) -> &'a str {
        let word =
            |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        match self.scheme_override() {
            Some(scheme) => scheme,
            None if word(token_type) => token_type,
            None => "IBSSO",
        }
    }

    /// The end user of a conversation, from its first inbound message; `None` when nobody has written in.
    /// Asks for exactly that message (Infobip's OpenAPI, Conversations 3.210.0: `direction`, `limit` default 10,
    /// `orderBy` default `id:asc`): without the filter, a conversation that opened with more than a page of
    /// outbound messages (a campaign) would show nobody.
    pub async fn end_user(
        &self,
        account_key: &str,
        token: &str,
        token_type: &str,
        conversation_id: &str,
    ) -> Result<Option<EndUser>, InfobipError> {
        if let Err(not_until) = self.messages.check_key(&account_key.to_owned()) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Err(InfobipError::RateLimited(wait.as_secs().max(1)));
        }
        let url = api_url(
            &self.config.base_url,
            &["ccaas", "1", "conversations", conversation_id, "messages"],
            &FIRST_INBOUND,
        )
        .ok_or_else(|| InfobipError::BadAnswer("the Infobip base URL cannot take a path".into()))?;
        let body = self.get(url, self.scheme_for(token_type), token).await?;
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

    async fn get(
        &self,
        url: url::Url,
        scheme: &str,
        token: &str,
    ) -> Result<bytes::Bytes, InfobipError> {
        let started = Instant::now();
        let deadline = self.config.timeout;
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let mut waited = false;
        loop {
            let answer = call(
                &self.http,
                Call {
                    method: reqwest::Method::GET,
                    url: url.clone(),
                    scheme,
                    credential: token,
                    body: None,
                    timeout: deadline.saturating_sub(started.elapsed()),
                    max_bytes: MAX_ANSWER_BYTES,
                },
            )
            .await
            .map_err(|e| match e {
                Transport::Timeout => InfobipError::Timeout(deadline_ms),
                Transport::Failed(cause) => InfobipError::Unreachable(cause),
                Transport::TooLarge(max) => {
                    InfobipError::BadAnswer(format!("the answer is larger than {max} bytes"))
                }
                Transport::BadCredential => InfobipError::Unauthorized,
            })?;
            if answer.status == 429 {
                let retry_after = answer.retry_after.unwrap_or(1);
                let pause = Duration::from_secs(retry_after);
                if !waited && pause <= MAX_RETRY_WAIT && started.elapsed() + pause < deadline {
                    waited = true;
                    tokio::time::sleep(pause).await;
                    continue;
                }
                return Err(InfobipError::RateLimited(retry_after));
            }
            return match answer.status {
                200..=299 => Ok(answer.body),
                401 => Err(InfobipError::Unauthorized),
                403 => Err(InfobipError::Forbidden(error_text(&answer.body))),
                404 => Err(InfobipError::NotFound),
                // The operation's documented answer to an unknown id ("Invalid Id"): 400 with NOT_FOUND.
                400 if error_id(&answer.body).as_deref() == Some("NOT_FOUND") => {
                    Err(InfobipError::NotFound)
                }
                status => Err(InfobipError::Failed {
                    status,
                    text: error_text(&answer.body),
                }),
            };
        }
    }
}

/// The query of the card's messages call: the first inbound message, and only it.
const FIRST_INBOUND: [(&str, &str); 3] = [
    ("direction", "INBOUND"),
    ("limit", "1"),
    ("orderBy", "id:asc"),
];

/// Infobip's answers the card reads are small; a larger one is refused rather than buffered.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// One call to an Infobip API, as the card (interactive: one short wait at most) and People sync (a batch:
/// waits, backs off, pauses) both make it; each keeps its own retry policy on top.
pub struct Call<'a> {
    pub method: reqwest::Method,
    pub url: url::Url,
    /// The word before the credential in `Authorization`: `IBSSO` for a token from Exchange OAuth, `App` for an
    /// API key.
    pub scheme: &'a str,
    pub credential: &'a str,
    pub body: Option<&'a serde_json::Value>,
    pub timeout: Duration,
    /// A larger answer is refused rather than buffered.
    pub max_bytes: usize,
}

/// What Infobip answered, whatever the status.
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when given (429).
    pub retry_after: Option<u64>,
    pub body: bytes::Bytes,
}

/// The call did not get an answer. Never carries the URL (a token or key could be in a query some day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Timeout,
    Failed(String),
    TooLarge(usize),
    /// The credential cannot be carried in a header (control characters).
    BadCredential,
}

pub async fn call(http: &reqwest::Client, call: Call<'_>) -> Result<Answer, Transport> {
    let mut authorization =
        http::HeaderValue::try_from(format!("{} {}", call.scheme, call.credential))
            .map_err(|_| Transport::BadCredential)?;
    authorization.set_sensitive(true);
    let mut request = http
        .request(call.method, call.url)
        .header(http::header::AUTHORIZATION, authorization)
        .header(http::header::ACCEPT, "application/json")
        .timeout(call.timeout);
    if let Some(body) = call.body {
        request = request.json(body);
    }
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            Transport::Timeout
        } else {
            Transport::Failed(crate::partner::chain(&e.without_url()))
        }
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Once the status is in, it is the answer: a body that breaks off afterwards leaves an empty body, not a
    // transport failure (People sync would otherwise send again a write that was already made).
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > call.max_bytes {
                    return Err(Transport::TooLarge(call.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                body.clear();
                break;
            }
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body: body.freeze(),
    })
}

/// `base` with `path` appended segment by segment (each escaped, so an id cannot climb) and `query` added;
/// `None` for a segment that is `.` or `..`, or carries a control character: the `url` crate drops tab, CR and
/// LF from a segment after its own dot check, so `.\t.` would become `..`.
pub fn api_url(base: &url::Url, path: &[&str], query: &[(&str, &str)]) -> Option<url::Url> {
    if path
        .iter()
        .any(|segment| matches!(*segment, "." | "..") || segment.chars().any(char::is_control))
    {
        return None;
    }
    let mut url = base.clone();
    url.path_segments_mut().ok()?.pop_if_empty().extend(path);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Some(url)
}

/// Infobip's error id (`requestError.serviceException.messageId`), when the body is Infobip's error shape.
pub fn error_id(body: &[u8]) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_slice(body).ok()?;
    parsed["requestError"]["serviceException"]["messageId"]
        .as_str()
        .map(str::to_owned)
}

/// Infobip's own words (`requestError.serviceException.text`, with its validation errors when it lists them),
/// or the start of the body.
pub fn error_text(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match parsed
        .as_ref()
        .map(|v| &v["requestError"]["serviceException"])
    {
        Some(e) if e.is_object() => {
            let mut text = e["text"].as_str().unwrap_or_default().to_owned();
            if let Some(v) = e.get("validationErrors").filter(|v| !v.is_null()) {
                text.push_str(&format!(" {v}"));
            }
            text
        }
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers `status` with a `Content-Length` of 100 and then closes after 10 bytes of body.
    async fn cut_off_after(status: u16) -> url::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\": \"12"
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        });
        format!("http://{addr}/people/2/persons").parse().unwrap()
    }

    /// A messages API answering every request with no messages, and how many requests it got.
    async fn empty_messages() -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let body = "{\"messages\": []}";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}").parse().unwrap(), count)
    }

    /// Infobip throttles the messages API at 500 requests a minute; ibex keeps to it per account itself, so a
    /// busy account's agents are told to retry at once, and another account is not held up by it.
    #[tokio::test]
    async fn the_messages_api_is_called_within_its_documented_rate_per_account() {
        let (base_url, count) = empty_messages().await;
        let client = InfobipClient::new(
            reqwest::Client::new(),
            InfobipConfig {
                base_url,
                auth_scheme: None,
                timeout: Duration::from_secs(5),
                messages_per_minute: 2,
            },
        );
        for _ in 0..2 {
            let answer = client.end_user("ACCT-A", "token", "IBSSO", "c-1").await;
            assert_eq!(answer, Ok(None));
        }
        let third = client.end_user("ACCT-A", "token", "IBSSO", "c-1").await;
        assert!(
            matches!(third, Err(InfobipError::RateLimited(secs)) if (1..=30).contains(&secs)),
            "{third:?}"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
        let other = client.end_user("ACCT-B", "token", "IBSSO", "c-2").await;
        assert_eq!(other, Ok(None));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn the_scheme_is_the_token_type_unless_the_operator_sets_one() {
        let client = |scheme: Option<&str>| {
            InfobipClient::new(
                reqwest::Client::new(),
                InfobipConfig {
                    base_url: "https://api.infobip.com".parse().unwrap(),
                    auth_scheme: scheme.map(str::to_owned),
                    timeout: Duration::from_secs(5),
                    messages_per_minute: 500,
                },
            )
        };
        let default = client(None);
        assert_eq!(default.scheme_for("IBSSO"), "IBSSO");
        assert_eq!(default.scheme_for("Bearer"), "Bearer");
        for odd in ["", " ", "IBSSO x", "IB\nSSO"] {
            assert_eq!(default.scheme_for(odd), "IBSSO", "{odd:?}");
        }
        assert_eq!(client(Some("App")).scheme_for("IBSSO"), "App");
    }

    /// A People write answered 2xx whose body then breaks off was made: it must come back as that status, not
    /// as a transport failure, or People sync would send the write again.
    #[tokio::test]
    async fn a_status_whose_body_breaks_off_is_still_the_answer() {
        let body = serde_json::json!({"firstName": "Ana"});
        for status in [200, 201, 503] {
            let url = cut_off_after(status).await;
            let answer = call(
                &reqwest::Client::new(),
                Call {
                    method: reqwest::Method::POST,
                    url,
                    scheme: "App",
                    credential: "key",
                    body: Some(&body),
                    timeout: Duration::from_secs(5),
                    max_bytes: 1024,
                },
            )
            .await;
            match answer {
                Ok(answer) => {
                    assert_eq!(answer.status, status);
                    assert!(answer.body.is_empty(), "{:?}", answer.body);
                }
                Err(e) => panic!("HTTP {status} with a broken body came back as {e:?}"),
            }
        }
    }

    #[test]
    fn an_id_cannot_climb_however_it_is_written() {
        let base: url::Url = "https://acme.api.infobip.com/".parse().unwrap();
        for id in ["..", ".", ".\t.", ".\n.", "\r..", "..\t", "a\u{0}b"] {
            assert_eq!(
                api_url(&base, &["people", "2", "persons", id], &[]),
                None,
                "{id:?}"
            );
        }
        for (id, path) in [
            ("42", "/people/2/persons/42"),
            ("a/b", "/people/2/persons/a%2Fb"),
            ("%2e%2e", "/people/2/persons/%252e%252e"),
            ("...", "/people/2/persons/..."),
        ] {
            let url = api_url(&base, &["people", "2", "persons", id], &[]).unwrap();
            assert_eq!(url.path(), path, "{id:?}");
        }
    }
}
