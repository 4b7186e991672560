//! The HTTP listener. `axum::serve` gives a client unlimited time to send its request headers, so slow clients
//! (slowloris) could hold every connection open; this is the same hyper connection loop with a header-read
//! deadline, TCP_NODELAY, and a graceful shutdown bounded in time: on SIGTERM the listener closes (new
//! connections are refused), requests in flight finish, and after the grace period the rest are dropped.
//! The body has its own deadline (`RequestBodyTimeoutLayer` in routes.rs).

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tower::ServiceExt;

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
pub async fn serve_per_thread(
    listener: std::net::TcpListener,
    routers: Vec<Router>,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::with_capacity(routers.len());
    for (i, router) in routers.into_iter().enumerate() {
        let listener = listener.try_clone()?;
        let mut stopped = stopped.clone();
        let worker = std::thread::Builder::new()
            .name(format!("ibex-serve-{i}"))
            .spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve(listener, router, limits, stop).await;
                    Ok(())
                })
            })?;
        workers.push(worker);
    }
    // Each thread holds its own handle on the socket: it closes when the last one stops accepting.
    drop(listener);
    shutdown.await;
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        for worker in workers {
            match worker.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("a serving thread stopped: {e}"),
                Err(_) => tracing::error!("a serving thread panicked"),
            }
        }
    });
    joined.await.map_err(std::io::Error::other)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
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
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
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
