//! Calling the partner's API: pooled connections (a pool per serving thread), a deadline per call that covers
//! retries, and retries only where sending twice is harmless (idempotent methods, after a connection failure or
//! a gateway status).

pub mod egress;
mod pool;
pub mod probe;
pub mod request;

pub use egress::{EgressError, EgressPolicy};
pub use request::{BuildError, PartnerRequest, RequestPlan};

use crate::signed::answer::{Answer as ParsedAnswer, AnswerShape};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
pub(crate) use pool::IdleLimits;
use pool::{Origin, Pool, SendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::filter::Filter;
use tower::timeout::Timeout;
use tower::util::BoxCloneSyncService;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PartnerError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the partner API could not be reached: {0}")]
    Unreachable(String),
    #[error("the partner URL is not allowed: {0}")]
    Forbidden(EgressError),
    #[error("the partner API did not answer within {0} ms")]
    Timeout(u64),
    #[error("the partner API refused the request with HTTP {status}: {excerpt}")]
    ClientError { status: u16, excerpt: String },
    #[error("the partner API failed with HTTP {status}: {excerpt}")]
    ServerError { status: u16, excerpt: String },
    #[error("the partner API answered with something that is not JSON: {0}")]
    NotJson(String),
    #[error("the partner API's answer is larger than {0} bytes; ibex reads no more than that")]
    TooLarge(usize),
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

/// How a new partner connection is made: the egress check, TLS and the connect timeout, boxed so that the pool
/// names one type.
type Connector = BoxCloneSyncService<
    http::Uri,
    hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>,
    tower::BoxError,
>;

/// For the whole connection set-up, DNS and TLS handshake included; a failure here is a connect error, which
/// is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Each pool's (one per serving thread, and the shared one) limits on kept connections: 64 to one origin is
/// more than a serving thread has calls in flight; 512 over all origins bounds the file descriptors idle
/// connections hold when each account has a partner host of its own (ibex raises its descriptor limit at start
/// and warns if it stays below what the pools may hold, `ops/listen.rs`); 60 s idle is under most load
/// balancers' timeouts, and a GET sent on one they dropped goes again.
pub(crate) const IDLE_LIMITS: IdleLimits = IdleLimits {
    per_origin: 64,
    total: 512,
    timeout: Duration::from_secs(60),
};

/// ibex calls partners through hyper's client connections with a pool of its own (`pool.rs`), not reqwest: per
/// call reqwest parses the URL into a `url::Url` three times and runs redirect and retry layers ibex does not
/// use, which measured 35,000 instructions of a 79,000-instruction proxy call, and hyper-util's pooled client
/// under it another 8,700 (docs/benchmarks.md). What reqwest added that ibex needs is set here: TLS with the
/// Mozilla roots, a connect timeout, TCP_NODELAY, the pool limits, the user agent, and no redirects (none is
/// ever followed). Proxy variables (`HTTPS_PROXY`) are not read, and credentials written into the base URL
/// (`https://user:key@host`) become Basic auth where the request is built.
#[derive(Clone)]
pub struct PartnerClient {
    pool: Arc<Pool>,
    retry: RetryPolicy,
    egress: Arc<EgressPolicy>,
}

/// A partner answer larger than this is refused rather than buffered: the outputs a bot block maps are small,
/// and an endless body must not exhaust memory.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("ibex/", env!("CARGO_PKG_VERSION")));
const ACCEPT_ANY: HeaderValue = HeaderValue::from_static("*/*");

/// The start of a failure answer is all an error message shows; the rest of such an answer is not read.
const MAX_FAILURE_BYTES: usize = 64 * 1024;

/// A partner answer: its status and body, `None` when the body was longer than this client reads.
struct Answer {
    status: u16,
    body: Option<Bytes>,
}

enum Attempt {
    Done(ParsedAnswer),
    Retry(PartnerError),
}

/// Why one exchange failed before an answer was read.
enum ExchangeError {
    /// No connection could be made (refused, DNS, TLS handshake): safe to retry whatever the method.
    Connect(String),
    /// The egress policy refused the address: never retried.
    Forbidden(EgressError),
    Other(String),
}

impl From<ExchangeError> for PartnerError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Connect(m) | ExchangeError::Other(m) => PartnerError::Unreachable(m),
            ExchangeError::Forbidden(e) => PartnerError::Forbidden(e),
        }
    }
}

impl PartnerClient {
    /// Every connection this client makes passes `egress` (see `egress.rs`).
    pub fn new(retry: RetryPolicy, egress: EgressPolicy) -> Result<Self, rustls::Error> {
        Self::build(retry, Arc::new(egress))
    }

    /// The same client with a connection pool of its own: a serving thread's, so that its calls use
    /// connections driven by that thread (see `ops/listen.rs`).
    pub fn with_own_pool(&self) -> Result<Self, rustls::Error> {
        Self::build(self.retry.clone(), self.egress.clone())
    }

    fn build(retry: RetryPolicy, egress: Arc<EgressPolicy>) -> Result<Self, rustls::Error> {
        Self::build_with(retry, egress, IDLE_LIMITS)
    }

    fn build_with(
        retry: RetryPolicy,
        egress: Arc<EgressPolicy>,
        idle: IdleLimits,
    ) -> Result<Self, rustls::Error> {
        let policy = egress.clone();
        let mut connector =
            HttpConnector::new_with_resolver(egress::EgressResolver::new(egress.clone()));
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(15)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        // IP literals never reach the resolver, so the URI itself is checked first.
        let checked = Filter::new(https, move |uri: http::Uri| {
            egress.check_uri(&uri).map(|()| uri)
        });
        let https = BoxCloneSyncService::new(Timeout::new(checked, CONNECT_TIMEOUT));
        Ok(PartnerClient {
            pool: Arc::new(Pool::new(https, idle)),
            retry,
            egress: policy,
        })
    }

    /// Sends the request and returns the parts of the partner's JSON answer that `shape` names, or a typed
    /// failure, within `deadline`.
    pub async fn call(
        &self,
        request: &PartnerRequest,
        shape: &AnswerShape,
        deadline: Duration,
    ) -> Result<ParsedAnswer, PartnerError> {
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
            match tokio::time::timeout(remaining, self.attempt(request, shape)).await {
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

    /// One attempt, no retry (but for a GET the partner dropped a kept connection under, see `exchange`), any
    /// 2xx answer accepted whatever its body: whether the partner takes these credentials at all. Returns the
    /// status.
    pub async fn probe(
        &self,
        request: &PartnerRequest,
        deadline: Duration,
    ) -> Result<u16, PartnerError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let Answer { status, body } = tokio::time::timeout(deadline, self.exchange(request))
            .await
            .map_err(|_| PartnerError::Timeout(deadline_ms))?
            .map_err(PartnerError::from)?;
        let excerpt = shown_excerpt(request, body.as_deref());
        match status {
            200..=299 => Ok(status),
            400..=499 => Err(PartnerError::ClientError { status, excerpt }),
            _ => Err(PartnerError::ServerError { status, excerpt }),
        }
    }

    async fn exchange(&self, request: &PartnerRequest) -> Result<Answer, ExchangeError> {
        let origin = Origin::of(&request.uri)
            .ok_or_else(|| ExchangeError::Other("the partner URL has no scheme or host".into()))?;
        let sent = match self
            .pool
            .send(&origin, &request.uri, outbound(request))
            .await
        {
            // The partner closed a kept-alive connection just as the request went out on it (its idle timeout
            // ran out first: Node.js servers close after 5 s). Whether it acted on the request is unknown (hyper
            // says the same when part of an answer head came), so only a GET or HEAD, which change nothing,
            // goes again, on a new connection, as Go's client does.
            Err(SendError::Dropped(e))
                if matches!(request.method, http::Method::GET | http::Method::HEAD) =>
            {
                tracing::debug!(error = %e, "the partner dropped a kept connection; sending again on a new one");
                self.pool.send_on_new(&request.uri, outbound(request)).await
            }
            sent => sent,
        };
        let (response, sender) = sent.map_err(|error| match error {
            SendError::Connect(e) => match egress::find_refusal(&*e) {
                Some(refusal) => ExchangeError::Forbidden(refusal),
                // Never the URL: its query may hold a credential. The source chain says what failed.
                None => ExchangeError::Connect(chain(&*e)),
            },
            SendError::Exchange(e) | SendError::Dropped(e) => ExchangeError::Other(chain(&e)),
        })?;
        let status = response.status().as_u16();
        let limit = if (200..300).contains(&status) {
            MAX_ANSWER_BYTES
        } else {
            MAX_FAILURE_BYTES
        };
        match Limited::new(response.into_body(), limit).collect().await {
            Ok(body) => {
                // Read to its end, so the connection can carry the next request.
                self.pool.put(origin, sender);
                Ok(Answer {
                    status,
                    body: Some(body.to_bytes()),
                })
            }
            Err(e) if e.is::<LengthLimitError>() => Ok(Answer { status, body: None }),
            Err(e) => Err(ExchangeError::Other(format!(
                "reading the answer failed: {}",
                chain(&*e)
            ))),
        }
    }

    async fn attempt(
        &self,
        request: &PartnerRequest,
        shape: &AnswerShape,
    ) -> Result<Attempt, PartnerError> {
        let Answer { status, body } = match self.exchange(request).await {
            Ok(answer) => answer,
            Err(error @ ExchangeError::Connect(_)) => return Ok(Attempt::Retry(error.into())),
            Err(error) => return Err(error.into()),
        };
        if (200..300).contains(&status) {
            let body = body.ok_or(PartnerError::TooLarge(MAX_ANSWER_BYTES))?;
            return shape.parse(&body).map(Attempt::Done).map_err(|e| {
                PartnerError::NotJson(format!(
                    "{e}; it began with {:?}",
                    shown_excerpt(request, Some(&body))
                ))
            });
        }
        let excerpt = shown_excerpt(request, body.as_deref());
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

/// The request as it goes out on a connection to the partner: ibex's default headers where the definition set
/// none, `Host`, and the target in origin-form.
fn outbound(request: &PartnerRequest) -> http::Request<Full<Bytes>> {
    let mut outbound = http::Request::new(Full::new(request.body.clone().unwrap_or_default()));
    *outbound.method_mut() = request.method.clone();
    let headers = outbound.headers_mut();
    headers.reserve(request.headers.len() + 3);
    // Entry by entry: cloning the whole map first would allocate its tables again, on every call. The
    // definition's own `User-Agent` or `Accept` wins over ibex's.
    for (name, value) in &request.headers {
        headers.append(name.clone(), value.clone());
    }
    headers
        .entry(http::header::USER_AGENT)
        .or_insert(USER_AGENT);
    headers.entry(http::header::ACCEPT).or_insert(ACCEPT_ANY);
    if let http::header::Entry::Vacant(entry) = headers.entry(http::header::HOST) {
        if let Some(host) = host_header(&request.uri) {
            entry.insert(host);
        }
    }
    // HTTP/1 names the target by its path and query; the host went into `Host` above.
    *outbound.uri_mut() = match request.uri.path_and_query() {
        Some(target) => http::Uri::from(target.clone()),
        None => http::Uri::from_static("/"),
    };
    // An empty one (`https://shop.example#…`) would go out as no target at all: the root, as browsers send.
    if outbound.uri().path().is_empty() {
        *outbound.uri_mut() = http::Uri::from_static("/");
    }
    outbound
}

/// An error with its causes, `outer: inner: innermost`, which is where hyper puts the useful part
/// ("Connection refused", "invalid peer certificate").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `Host` header hyper-util would otherwise write on every call through `format!` (about 2,000
/// instructions, a sixth of its send; docs/benchmarks.md), the same way: the port left out where it is the
/// scheme's default. A definition's own `Host` header is kept.
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let default = if secure { 443 } else { 80 };
    let value = match uri.port_u16() {
        // The port as a number, as hyper-util writes it: the authority's own text may hold `:08080`, or text
        // after an IPv6 literal's `]`, which `http::Uri` accepts.
        Some(port) if port != default => {
            let mut number = itoa::Buffer::new();
            let number = number.format(port);
            let mut text = String::with_capacity(host.len() + 1 + number.len());
            text.push_str(host);
            text.push(':');
            text.push_str(number);
            HeaderValue::try_from(text)
        }
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

/// The start of the partner's answer, for an error message a bot designer can act on; nothing of it when the
/// partner URL came from an account setting, or ibex would read any URL for whoever can change that setting.
fn shown_excerpt(request: &PartnerRequest, body: Option<&[u8]>) -> String {
    if !request.echo_answer {
        return "(the answer is not shown: the partner URL comes from the account's settings)"
            .into();
    }
    match body {
        None => "(a long answer, not read)".into(),
        Some(body) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The head of the one request a raw partner receives, lower-cased; it answers `{}`.
    async fn request_head(request: PartnerRequest) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let head = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => panic!("the request ended before its head did"),
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            socket.write_all(answer).await.unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let client = PartnerClient::new(
            RetryPolicy::default(),
            EgressPolicy::new(&Default::default(), true),
        )
        .unwrap();
        let request = PartnerRequest {
            uri: format!("http://{addr}/orders/1").parse().unwrap(),
            ..request
        };
        let Ok(answer) = client.exchange(&request).await else {
            panic!("the exchange failed");
        };
        assert_eq!(answer.status, 200);
        head.await.unwrap()
    }

    /// When a raw partner closes a connection, never saying so in a `Connection` header.
    #[derive(Clone, Copy, PartialEq)]
    enum Closes {
        Never,
        AfterOneAnswer,
        /// Reads the second request on a connection, then closes it unanswered: as a partner whose idle
        /// timeout runs out just as a kept connection is used again.
        OnSecondRequest,
    }

    /// A raw partner answering `{}` to every request until it closes the connection as `closes` says. Returns
    /// its address, the connections it accepted and the request lines it read.
    async fn counting_partner(
        closes: Closes,
    ) -> (
        std::net::SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), lines.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    let mut read = 0;
                    loop {
                        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let text = String::from_utf8_lossy(&head[..end]).into_owned();
                        seen.lock()
                            .unwrap()
                            .push(text.lines().next().unwrap_or("").to_owned());
                        head.drain(..end + 4);
                        read += 1;
                        if closes == Closes::OnSecondRequest && read == 2 {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if socket.write_all(answer).await.is_err()
                            || closes == Closes::AfterOneAnswer
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, lines)
    }

    fn client_with_pool(max_idle_per_origin: usize, idle_timeout: Duration) -> PartnerClient {
        client_with_limits(IdleLimits {
            per_origin: max_idle_per_origin,
            total: IDLE_LIMITS.total,
            timeout: idle_timeout,
        })
    }

    fn client_with_limits(idle: IdleLimits) -> PartnerClient {
        PartnerClient::build_with(
            RetryPolicy::default(),
            Arc::new(EgressPolicy::new(&Default::default(), true)),
            idle,
        )
        .unwrap()
    }

    async fn exchange_ok(client: &PartnerClient, uri: String) {
        let request = PartnerRequest {
            uri: uri.parse().unwrap(),
            ..get(HeaderMap::new())
        };
        match client.exchange(&request).await {
            Ok(answer) => assert_eq!(answer.status, 200),
            Err(ExchangeError::Connect(m) | ExchangeError::Other(m)) => panic!("{m}"),
            Err(ExchangeError::Forbidden(e)) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn connections_are_kept_per_origin_and_sent_origin_form_targets() {
        use std::sync::atomic::Ordering;
        let (one, one_accepted, one_lines) = counting_partner(Closes::Never).await;
        let (two, two_accepted, _) = counting_partner(Closes::Never).await;
        let client = client_with_pool(64, Duration::from_secs(60));
        for _ in 0..5 {
            exchange_ok(&client, format!("http://{one}/orders/1?currency=EUR")).await;
            exchange_ok(&client, format!("http://{two}/orders/2")).await;
        }
        assert_eq!(one_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(two_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.pool.idle_count(), 2);
        let lines = one_lines.lock().unwrap().clone();
        assert_eq!(lines, vec!["GET /orders/1?currency=EUR HTTP/1.1"; 5]);

        // A URL with no path, or an empty one left by a fragment, asks for the root.
        let (bare, _, bare_lines) = counting_partner(Closes::Never).await;
        exchange_ok(&client, format!("http://{bare}")).await;
        exchange_ok(&client, format!("http://{bare}#/orders/1")).await;
        exchange_ok(&client, format!("http://{bare}?x=1#/orders/1")).await;
        let lines = bare_lines.lock().unwrap().clone();
        assert_eq!(
            lines,
            ["GET / HTTP/1.1", "GET / HTTP/1.1", "GET /?x=1 HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn connections_the_partner_closed_or_left_idle_too_long_are_not_used() {
        use std::sync::atomic::Ordering;
        let (closing, closing_accepted, _) = counting_partner(Closes::AfterOneAnswer).await;
        let client = client_with_pool(64, Duration::from_secs(60));
        for _ in 0..4 {
            exchange_ok(&client, format!("http://{closing}/a")).await;
            // Time for the connection's task to see the partner's close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(closing_accepted.load(Ordering::SeqCst), 4);

        let (idle, idle_accepted, _) = counting_partner(Closes::Never).await;
        let client = client_with_pool(64, Duration::from_millis(100));
        exchange_ok(&client, format!("http://{idle}/a")).await;
        exchange_ok(&client, format!("http://{idle}/a")).await;
        assert_eq!(idle_accepted.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        exchange_ok(&client, format!("http://{idle}/a")).await;
        assert_eq!(idle_accepted.load(Ordering::SeqCst), 2);
        // Closed after the timeout even when no other call comes to find them.
        assert_eq!(client.pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(client.pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn no_more_idle_connections_are_kept_than_the_limit() {
        use std::sync::atomic::Ordering;
        let (addr, accepted, _) = counting_partner(Closes::Never).await;
        let client = client_with_pool(2, Duration::from_secs(60));
        let uri = format!("http://{addr}/a");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let (client, uri) = (client.clone(), uri.clone());
            calls.spawn(async move { exchange_ok(&client, uri).await });
        }
        while let Some(call) = calls.join_next().await {
            call.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        assert_eq!(client.pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn past_the_total_limit_the_connection_idle_longest_is_closed() {
        use std::sync::atomic::Ordering;
        let client = client_with_limits(IdleLimits {
            per_origin: 64,
            total: 2,
            timeout: Duration::from_secs(60),
        });
        let mut partners = Vec::new();
        for _ in 0..3 {
            let (addr, accepted, _) = counting_partner(Closes::Never).await;
            exchange_ok(&client, format!("http://{addr}/a")).await;
            partners.push((addr, accepted));
        }
        // One connection per origin, three origins: the first one's was closed to keep the third's.
        assert_eq!(client.pool.idle_count(), 2);
        for (addr, _) in partners[1..].iter().rev() {
            exchange_ok(&client, format!("http://{addr}/a")).await;
        }
        let (first, first_accepted) = &partners[0];
        exchange_ok(&client, format!("http://{first}/a")).await;
        let accepted: Vec<usize> = partners
            .iter()
            .map(|(_, a)| a.load(Ordering::SeqCst))
            .collect();
        assert_eq!(accepted, [2, 1, 1]);
        assert_eq!(first_accepted.load(Ordering::SeqCst), 2);
        assert_eq!(client.pool.idle_count(), 2);
        // Kept now: the second's (used after the third's) and the first's new one; the third's was closed.
        for (addr, _) in &partners[1..] {
            exchange_ok(&client, format!("http://{addr}/a")).await;
        }
        let accepted: Vec<usize> = partners
            .iter()
            .map(|(_, a)| a.load(Ordering::SeqCst))
            .collect();
        assert_eq!(accepted, [2, 1, 2]);
    }

    #[tokio::test]
    async fn a_get_goes_again_when_the_partner_drops_its_kept_connection_and_others_do_not() {
        use std::sync::atomic::Ordering;
        let (addr, accepted, lines) = counting_partner(Closes::OnSecondRequest).await;
        let client = client_with_pool(64, Duration::from_secs(60));
        exchange_ok(&client, format!("http://{addr}/a")).await;
        // On the kept connection, which the partner closes unanswered: again, on a new one.
        exchange_ok(&client, format!("http://{addr}/a")).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(lines.lock().unwrap().len(), 3);

        // A DELETE or a POST goes out on a kept connection and is dropped with it: the partner may have acted
        // on it, so it is not sent again.
        for method in [http::Method::DELETE, http::Method::POST] {
            let request = PartnerRequest {
                method: method.clone(),
                uri: format!("http://{addr}/orders/1").parse().unwrap(),
                body: (method == http::Method::POST).then(|| Bytes::from_static(b"{}")),
                idempotent: method == http::Method::DELETE,
                ..get(HeaderMap::new())
            };
            let before = accepted.load(Ordering::SeqCst);
            match client.exchange(&request).await {
                Err(ExchangeError::Other(message)) => {
                    assert!(message.contains("closed"), "{message}")
                }
                Err(_) => panic!("{method}: another error than the dropped connection"),
                Ok(answer) => panic!("{method}: answered {}", answer.status),
            }
            assert_eq!(accepted.load(Ordering::SeqCst), before, "{method}");
            let sent = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(method.as_str()))
                .count();
            assert_eq!(sent, 1, "{method}");
            // A new connection, kept for the next method.
            exchange_ok(&client, format!("http://{addr}/a")).await;
        }
    }

    fn get(headers: HeaderMap) -> PartnerRequest {
        PartnerRequest {
            method: http::Method::GET,
            uri: http::Uri::from_static("http://unused/"),
            headers,
            body: None,
            idempotent: true,
            echo_answer: true,
        }
    }

    #[tokio::test]
    async fn the_definitions_headers_replace_ibexs_defaults() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("text/csv"));
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        let head = request_head(get(headers)).await;
        assert_eq!(head.matches("\r\naccept:").count(), 1, "{head}");
        assert!(head.contains("\r\naccept: text/csv\r\n"), "{head}");
        assert!(head.contains("\r\nx-tag: a\r\n") && head.contains("\r\nx-tag: b\r\n"));
        let agent = format!("\r\nuser-agent: ibex/{}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(head.contains(&agent), "{head}");

        let head = request_head(get(HeaderMap::new())).await;
        assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
        assert_eq!(head.matches("\r\nhost:").count(), 1, "{head}");
        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");

        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("shop.example"));
        let head = request_head(get(headers)).await;
        assert_eq!(head.matches("\r\nhost:").count(), 1, "{head}");
        assert!(head.contains("\r\nhost: shop.example\r\n"), "{head}");
    }

    #[test]
    fn the_host_header_leaves_out_only_the_schemes_default_port() {
        for (uri, host) in [
            ("http://shop.example/a", "shop.example"),
            ("http://shop.example:80/a", "shop.example"),
            ("http://shop.example:443/a", "shop.example:443"),
            ("https://shop.example:443/a", "shop.example"),
            ("https://shop.example:80/a", "shop.example:80"),
            ("https://shop.example:8443/a?x=1", "shop.example:8443"),
            ("http://[::1]:8080/a", "[::1]:8080"),
            ("http://[::1]/a", "[::1]"),
            ("http://shop.example:08080/a", "shop.example:8080"),
            ("http://[::1]x:8080/a", "[::1]:8080"),
            (
                "https://[2001:db8::1]evil.example:8443/x",
                "[2001:db8::1]:8443",
            ),
        ] {
            let value = host_header(&uri.parse().unwrap());
            assert_eq!(value, Some(HeaderValue::from_static(host)), "{uri}");
        }
    }
}
