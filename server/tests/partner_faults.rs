//! Partner faults below HTTP, against a raw TCP partner: headers that never come, a body cut off half way, a
//! body that trickles, a body that never ends. Every signed call answers JSON with a gateway status within its
//! deadline (5 s here), and a POST is never sent twice.

mod common;

use common::{Backend, Harness, ACCOUNT};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug)]
enum Fault {
    SilentHeaders,
    CutBody,
    TrickleBody,
    EndlessBody,
}

/// A partner that misbehaves as `fault` says; counts the requests it got.
async fn partner(fault: Fault) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Fault::SilentHeaders => tokio::time::sleep(Duration::from_secs(30)).await,
                    Fault::CutBody => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"id\": \"1001\", \"sta")
                            .await;
                        // Dropped here: the connection closes with the body a quarter sent.
                    }
                    Fault::TrickleBody => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
                            .await;
                        for _ in 0..60 {
                            if socket.write_all(b" ").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    Fault::EndlessBody => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = format!("2000\r\n{}\r\n", " ".repeat(0x2000));
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                }
            });
        }
    });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_faults_below_http_get_a_json_answer_in_time() {
    let h = Harness::start(Backend::Sqlite).await;
    for (fault, codes) in [
        (Fault::SilentHeaders, &["partner_timeout"][..]),
        (
            Fault::CutBody,
            &["partner_unreachable", "partner_bad_answer"][..],
        ),
        (Fault::TrickleBody, &["partner_timeout"][..]),
        (Fault::EndlessBody, &["partner_bad_answer"][..]),
    ] {
        let (base, seen) = partner(fault).await;
        h.configure(
            ACCOUNT,
            &[("api_base_url", &base), ("api_key", common::SHOP_KEY)],
        )
        .await;
        for (method, path, body) in [
            (reqwest::Method::GET, "/fn/order-status/1001", ""),
            (
                reqwest::Method::POST,
                "/fn/add-order-note",
                r#"{"order_id": "1001", "text": "hello"}"#,
            ),
        ] {
            let before = seen.load(Ordering::SeqCst);
            let started = Instant::now();
            let (status, answer) = h
                .send(
                    method.clone(),
                    path,
                    body.as_bytes(),
                    body.as_bytes(),
                    |_| {},
                )
                .await;
            let took = started.elapsed();
            let code = answer["error"]["code"].as_str().unwrap_or_default();
            assert!(
                matches!(status, 502 | 504) && codes.contains(&code),
                "{fault:?} {method}: {status} {answer}"
            );
            assert!(
                took < Duration::from_millis(6_000),
                "{fault:?} {method}: took {took:?}"
            );
            if method == reqwest::Method::POST {
                assert_eq!(
                    seen.load(Ordering::SeqCst) - before,
                    1,
                    "{fault:?}: a POST reached the partner more than once"
                );
            }
        }
    }
    h.finish().await;
}
