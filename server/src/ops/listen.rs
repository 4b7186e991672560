//! The HTTP listener. `axum::serve` gives a client unlimited time to send its request headers, so slow clients
//! (slowloris) could hold every connection open; this is the same hyper connection loop with a header-read
//! deadline, TCP_NODELAY, and a graceful shutdown bounded in time: on SIGTERM the listener closes (new
//! connections are refused), requests in flight finish, and after the grace period the rest are dropped.
//! The body has its own deadline (routes.rs: a layer on the pages, the body read itself on the signed routes).

use crate::routes::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tower::ServiceExt;

/// Raises the soft open-file limit to the hard one, as Go's runtime does for every program: systemd starts a
/// service at a soft 1,024 (and a hard 524,288), and client connections, kept partner connections (up to
/// `IDLE_LIMITS.total` per pool, `pools` pools) and the database's all take descriptors; at the limit, accepting
/// and connecting fail. Warns if the limit stays below what the pools may keep plus 1,024.
pub fn raise_descriptor_limit(pools: usize) {
    let pooled = pools.saturating_mul(crate::partner::IDLE_LIMITS.total) as u64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < pooled + 1024 => tracing::warn!(
            limit,
            "the open-file limit is low: idle partner connections alone may take {pooled}; raise it \
             (LimitNOFILE= in systemd, ulimit -n)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!("the open-file limit could not be read or raised: {e}"),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// From a connection's first byte (or its previous request) to the end of the request's headers.
    pub header_read: Duration,
    /// How long requests in flight may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

/// nginx's model, one worker per core: `routers.len()` single-threaded runtimes, each accepting from the one
/// socket with its own router (and so its own partner connection pool). A request, its partner call and both
/// connections stay on one thread: no work stealing, no wake-up of another thread per call, which on a
/// loaded machine is what the work-stealing runtime spends most of its overhead on (docs/benchmarks.md).
/// Background work (People sync, the settings change log, cleanups) stays on the main runtime.
///
/// Shared pools (the settings database, card sessions, Infobip's client) hold connections opened on whichever
/// runtime needed them first, and a connection's I/O is driven by that runtime. So no serving runtime stops
/// before all have finished serving: a request still finishing on one thread may be using a connection
/// another opened. A serving thread that stops on its own (it could not start, or panicked) stops the others
/// and ends `serve` with an error, so ibex exits and its supervisor restarts it, rather than serving on fewer
/// threads, or on none with the process still up.
pub async fn serve_per_thread(
    listener: std::net::TcpListener,
    routers: Vec<impl HttpService>,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let count = routers.len();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (finished, _) = tokio::sync::watch::channel(0usize);
    let finished = std::sync::Arc::new(finished);
    let (exits, mut exited) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let mut workers = Vec::with_capacity(count);
    for (i, router) in routers.into_iter().enumerate() {
        let listener = listener.try_clone()?;
        let mut stopped = stopped.clone();
        let done = Finished {
            thread: i,
            why: "it panicked".into(),
            exits: exits.clone(),
            finished: finished.clone(),
        };
        let worker = std::thread::Builder::new()
            .name(format!("ibex-serve-{i}"))
            .spawn(move || {
                let mut done = done;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        done.why = format!("its runtime could not start: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    done.why = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let stop = async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                            };
                            serve(listener, router, limits, stop).await;
                            String::new()
                        }
                        Err(e) => format!("it could not listen: {e}"),
                    };
                    let mut all_finished = done.finished.subscribe();
                    drop(done);
                    let _ = all_finished.wait_for(|n| *n >= count).await;
                });
            })?;
        workers.push(worker);
    }
    // Each thread holds its own handle on the socket: it closes when the last one stops accepting.
    drop(listener);
    drop(exits);
    let unexpected = tokio::select! {
        () = shutdown => None,
        Some((thread, why)) = exited.recv() => Some((thread, why)),
    };
    if let Some((thread, why)) = &unexpected {
        tracing::error!(
            "serving thread {thread} stopped ({why}); stopping the others so that ibex exits"
        );
    }
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        for worker in workers {
            if worker.join().is_err() {
                tracing::error!("a serving thread panicked");
            }
        }
    });
    joined.await.map_err(std::io::Error::other)?;
    match unexpected {
        Some((thread, why)) => Err(std::io::Error::other(format!(
            "serving thread {thread} stopped: {why}"
        ))),
        None => Ok(()),
    }
}

/// Counts a serving thread as finished when dropped, on every way out (a panic included), and reports why it
/// stopped unless it stopped because it was told to.
struct Finished {
    thread: usize,
    why: String,
    exits: tokio::sync::mpsc::UnboundedSender<(usize, String)>,
    finished: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if !self.why.is_empty() {
            let _ = self
                .exits
                .send((self.thread, std::mem::take(&mut self.why)));
        }
        self.finished.send_modify(|n| *n += 1);
    }
}

/// Requests one HTTP/2 connection may have in flight at once.
const HTTP2_STREAMS_PER_CONNECTION: u32 = 32;

pub async fn serve(
    listener: tokio::net::TcpListener,
    router: impl HttpService,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    // A stream is a request: hyper's default of 200 per connection would let a handful of HTTP/2 connections
    // take every slot of a pool (`ops::admission`). Infobip's callers and browsers need a few.
    builder
        .http2()
        .max_concurrent_streams(HTTP2_STREAMS_PER_CONNECTION);
    let builder = std::sync::Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: waiting beats spinning, and the connections that hold them end.
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let service =
            router
                .clone()
                .map_request(|request: http::Request<hyper::body::Incoming>| {
                    request.map(axum::body::Body::new)
                });
        let (builder, watcher, first_byte) =
            (builder.clone(), graceful.watcher(), limits.header_read);
        tokio::spawn(async move {
            // hyper's header deadline starts with a request's first byte: a client that connects and sends
            // nothing would hold its connection (and a file descriptor) for ever.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(first_byte, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", limits.shutdown_grace.as_secs());
        }
    }
}
