//! Kept-alive HTTP/1 connections to partners: hyper's own client connections (`hyper::client::conn::http1`)
//! over the connector in `mod.rs` (egress policy, TLS, connect timeout), with their idle senders kept here by
//! origin.
//!
//! hyper-util's pooled client did the same at about 8,700 instructions a call, a tenth of a signed call
//! (docs/benchmarks.md): a checkout racing a lazily built connect future (a clone of the whole connector on
//! every call, found in a map keyed with SipHash), a `Pooled` guard that hashes the key again to put the
//! connection back, and big futures copied between those layers. Each serving thread has a pool of its own
//! (`PartnerClient::with_own_pool`), so its lock is contended only by the "Test connection" probe and
//! background work, which share the process-wide pool; checkout and return are a map lookup and a `Vec` pop
//! or push.

use super::Connector;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Where a connection goes: connections are shared only between requests to the same scheme, host and port.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl Origin {
    pub fn of(uri: &http::Uri) -> Option<Origin> {
        Some(Origin {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
        })
    }

    /// The same origin in bytes of its own: `of` shares the whole URI's buffer, query included, which may hold
    /// a credential that a key kept in the pool must not keep alive.
    fn detached(&self) -> Origin {
        let authority = Bytes::copy_from_slice(self.authority.as_str().as_bytes());
        Origin {
            scheme: self.scheme.clone(),
            authority: Authority::from_maybe_shared(authority)
                .unwrap_or_else(|_| self.authority.clone()),
        }
    }
}

/// How many connections a pool keeps idle, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    pub per_origin: usize,
    pub total: usize,
    pub timeout: Duration,
}

pub struct Pool {
    connector: Connector,
    /// Idle connections per origin beyond this many are closed rather than kept.
    max_idle_per_origin: usize,
    /// Idle connections over all origins: past it, the one idle longest is closed to keep the newest. Each
    /// holds a file descriptor, and with one partner host per account (`https://{{settings.tenant}}.…`) the
    /// per-origin limit alone would let every account called in the last idle timeout keep one open, until
    /// accepting and connecting fail for want of descriptors.
    max_idle_total: usize,
    /// A connection idle longer than this is closed: partners and their load balancers drop idle connections
    /// after a while, and a request sent on one they dropped fails.
    idle_timeout: Duration,
    idle: Mutex<Idle>,
    /// Whether the task closing expired idle connections runs (started by the first connection kept).
    sweeping: AtomicBool,
}

struct Idle {
    /// Oldest first in each list.
    by_origin: HashMap<Origin, Vec<IdleConnection>, foldhash::fast::RandomState>,
    total: usize,
}

impl Idle {
    /// Closes the connection idle longest, over all origins. It runs only with the total limit reached, so its
    /// scan of every origin is not paid by calls to a few partners. It also forgets the origins `checkout` left
    /// with none (the sweep would, a minute later), so the scan stays near the limit's length however many
    /// partner hosts were called.
    fn close_oldest(&mut self) {
        self.by_origin
            .retain(|_, connections| !connections.is_empty());
        let oldest = self
            .by_origin
            .iter()
            .filter_map(|(origin, connections)| Some((connections.first()?.since, origin)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, origin)| origin.clone());
        let Some(origin) = oldest else { return };
        if let Some(connections) = self.by_origin.get_mut(&origin) {
            connections.remove(0);
            self.total -= 1;
            if connections.is_empty() {
                self.by_origin.remove(&origin);
            }
        }
    }
}

struct IdleConnection {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Why a request got no answer head: no connection could be made (the connector's error: refused, DNS, TLS,
/// egress policy, timeout), the exchange on one failed, or the partner closed a kept-alive connection that the
/// request had already gone out on, at least in part.
pub enum SendError {
    Connect(tower::BoxError),
    Exchange(hyper::Error),
    Dropped(hyper::Error),
}

impl Pool {
    pub fn new(connector: Connector, limits: IdleLimits) -> Self {
        Pool {
            connector,
            max_idle_per_origin: limits.per_origin,
            max_idle_total: limits.total,
            idle_timeout: limits.timeout,
            idle: Mutex::new(Idle {
                by_origin: HashMap::default(),
                total: 0,
            }),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `request` on the most recently used idle connection to `origin` that is still open, or on a new
    /// one to `uri`, and returns the answer's head with the connection, for `put` once the body is read. A
    /// request a reused connection never sent (the partner had just closed it) goes out on the next one; hyper
    /// hands a request back only if it wrote none of it, so nothing is sent twice here. One the partner closed
    /// the connection under after it went out is `Dropped`: the caller decides whether it may go again.
    pub async fn send(
        &self,
        origin: &Origin,
        uri: &http::Uri,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, SendRequest<Full<Bytes>>), SendError> {
        loop {
            let (mut sender, reused) = match self.checkout(origin) {
                Some(sender) => (sender, true),
                None => (self.connect(uri).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ if reused && closed_by_peer(e.error()) => {
                        return Err(SendError::Dropped(e.into_error()))
                    }
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// Sends `request` on a new connection to `uri`, never a kept one: for a request going again after one
    /// was `Dropped`, when other kept connections may have been closed by the same partner at the same time.
    pub async fn send_on_new(
        &self,
        uri: &http::Uri,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, SendRequest<Full<Bytes>>), SendError> {
        let mut sender = self.connect(uri).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, sender)),
            Err(e) => Err(SendError::Exchange(e.into_error())),
        }
    }

    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = &mut *idle;
        let connections = idle.by_origin.get_mut(origin)?;
        let now = Instant::now();
        // Most recent first: the ones at the front are the likeliest to have been dropped by the partner.
        while let Some(connection) = connections.pop() {
            idle.total -= 1;
            if connection.sender.is_ready()
                && now.duration_since(connection.since) < self.idle_timeout
            {
                return Some(connection.sender);
            }
        }
        None
    }

    async fn connect(&self, uri: &http::Uri) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let io = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (mut sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        // The connection is driven by a task of the runtime that opened it: for a serving thread, its own.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "partner connection closed with an error");
            }
        });
        // Ready once its task has polled it.
        sender
            .ready()
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        Ok(sender)
    }

    /// Keeps a connection whose exchange was read to the end for the next request to the same origin. One
    /// still finishing its exchange is kept once it is ready, by a task that waits for that.
    pub fn put(self: &Arc<Self>, origin: Origin, mut sender: SendRequest<Full<Bytes>>) {
        if sender.is_ready() {
            self.keep(origin, sender);
        } else if !sender.is_closed() {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.keep(origin, sender);
                }
            });
        }
    }

    fn keep(self: &Arc<Self>, origin: Origin, sender: SendRequest<Full<Bytes>>) {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        }
        let connection = IdleConnection {
            sender,
            since: Instant::now(),
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.by_origin.get(&origin).map_or(0, Vec::len);
        if kept >= self.max_idle_per_origin || self.max_idle_total == 0 {
            return;
        }
        if idle.total >= self.max_idle_total {
            idle.close_oldest();
        }
        idle.total += 1;
        match idle.by_origin.get_mut(&origin) {
            Some(connections) => connections.push(connection),
            None => {
                idle.by_origin.insert(origin.detached(), vec![connection]);
            }
        }
    }

    /// Closes the idle connections past their timeout or closed by the partner, and forgets origins left with
    /// none: with many partner hosts (one per account, say), connections nothing asks for again would
    /// otherwise stay open.
    fn sweep_once(&self) {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.by_origin.retain(|_, connections| {
            connections.retain(|c| now.duration_since(c.since) < timeout && !c.sender.is_closed());
            !connections.is_empty()
        });
        idle.by_origin.shrink_to_fit();
        idle.total = idle.by_origin.values().map(Vec::len).sum();
    }

    /// Idle connections kept, over all origins.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let counted = idle.by_origin.values().map(Vec::len).sum();
        assert_eq!(idle.total, counted, "the running total is off");
        counted
    }
}

/// Whether the partner ended the connection before its answer's head: it closed it (hyper read the end of the
/// stream) or reset it. Other failures, such as an answer hyper cannot parse, would fail again.
fn closed_by_peer(error: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::BrokenPipe
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// Sweeps `pool` once per idle timeout, traffic or not, until the pool is dropped. It holds the pool weakly, so
/// it never keeps one alive.
async fn sweep(pool: Weak<Pool>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep_once();
    }
}
