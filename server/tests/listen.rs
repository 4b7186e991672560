//! The listener's own limits, over real TCP: a client that never finishes its request headers is cut off at the
//! header deadline (slowloris), while a prompt client on the same listener is served; on shutdown the listener
//! stops accepting at once and a request in flight still gets its answer.

mod common;

use common::{Backend, Harness};
use ibex::ops::listen::{serve, serve_per_thread, ListenLimits};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_shutdown_drains() {
    let h = Harness::start(Backend::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        ibex::routes::router(h.state.clone()),
        ListenLimits {
            header_read: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        },
        async move {
            let _ = stopped.await;
        },
    ));

    // Half a request line, then silence: closed soon after the 1 s deadline, not held open.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: ibex\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow connection was still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // A connection that sends nothing at all, and one that goes silent after its first answer (keep-alive): each
    // closed soon after the deadline too, not held for ever (a few hundred thousand such connections would take
    // every file descriptor, and with it every signed call).
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a silent connection was still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: ibex\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "an idle keep-alive connection was still open after 5 s"
    );
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));

    // A prompt client is served as usual.
    let answer = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // Shutdown: a request in flight (the shop answers after 1.5 s) still gets its answer; new ones are refused.
    h.shop_faults(serde_json::json!({"delay_ms": 1500})).await;
    let in_flight = tokio::spawn(h.send_to(
        &format!("http://{addr}"),
        reqwest::Method::GET,
        "/fn/order-status/1001",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener still accepts during shutdown"
    );
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shutdown did not finish")
        .unwrap();
    h.finish().await;
}

/// Shutdown with a serving thread per core (`IBEX_SERVE_THREADS`, here two): calls in flight on either thread
/// (which thread accepts a connection is the kernel's choice, so eight calls are sent to give both some) all
/// get their answers, the shared socket stops accepting at once, and `serve_per_thread` returns within the
/// grace period, without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_every_serving_thread() {
    let h = Harness::start(Backend::Sqlite).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let routers: Vec<_> = (0..2)
        .map(|_| ibex::routes::router(h.state.for_serving_thread().unwrap()))
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_per_thread(
        listener,
        routers,
        ListenLimits {
            header_read: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let (status, body) = h
        .send_to(
            &format!("http://{addr}"),
            reqwest::Method::GET,
            "/fn/order-status/1001",
        )
        .await;
    assert_eq!(status, 200, "{body}");

    h.shop_faults(serde_json::json!({"delay_ms": 1500})).await;
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(h.send_to(
                &format!("http://{addr}"),
                reqwest::Method::GET,
                "/fn/order-status/1001",
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopping = Instant::now();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a serving thread still accepts during shutdown"
    );
    for call in in_flight {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let ended = tokio::time::timeout(Duration::from_secs(6), server)
        .await
        .expect("shutdown did not finish within the grace period")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    h.finish().await;
}

/// A client that sends its headers and then only part of the body it announced: the signed routes read the body
/// within the body timeout themselves (they pass no body-timeout layer, so a signed GET arms no timer), and
/// so do the unknown-function and wrong-method answers, which read and drop what was sent. Each is answered
/// soon after the 1 s timeout, never held open; a page route keeps its layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_is_answered_at_the_body_timeout() {
    let h = Harness::start_with(
        Backend::Sqlite,
        &["--allow-loopback-partners", "--body-timeout-secs", "1"],
    )
    .await;
    let addr = h.ibex.trim_start_matches("http://").to_owned();
    for (request, expected) in [
        ("POST /fn/customer-lookup", Some("HTTP/1.1 408")),
        ("POST /fn/no-such-function", Some("HTTP/1.1 404")),
        ("DELETE /fn/customer-lookup", Some("HTTP/1.1 405")),
        ("POST /sync/people-changed", Some("HTTP/1.1 408")),
        ("POST /api/sync_now", None),
    ] {
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "{request} HTTP/1.1\r\nHost: ibex\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"em"
        );
        slow.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "{request}: still waiting for the body after 5 s"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900),
            "{request}: {elapsed:?}"
        );
        let answer = String::from_utf8_lossy(&buf);
        if let Some(status) = expected {
            assert!(answer.starts_with(status), "{request}: {answer}");
            assert!(answer.contains("application/json"), "{request}: {answer}");
        }
    }

    // A signed GET, with no body, is served as before.
    let (status, body) = h.get("/fn/order-status/1001").await;
    assert_eq!(status, 200, "{body}");
    h.finish().await;
}
