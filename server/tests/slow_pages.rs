//! Slow page requests against the real binary: a body trickled a byte at a time, chunked or with a declared
//! length, needs no sign-in and used to hold a request slot for as long as it trickled (the body timeout restarted
//! after every chunk), while pages and Infobip's signed calls shared one pool of slots. Now a page body has one
//! deadline for the whole of it and a size limit, and pages and signed calls have pools of their own: the slow
//! requests are cut at the deadline, and signed calls answer 200 throughout.

mod common;

use common::binary::{signed_call, spawn_ibex};
use common::{client, Backend, Harness};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a slow client sends its body.
#[derive(Clone, Copy)]
enum Trickle {
    Chunked,
    Declared(u64),
}

/// Sends a server function's request headers, then one byte of body every 400 ms until ibex answers or closes
/// the connection (at most 20 s); returns how long that took and what ibex answered.
async fn trickle(port: u16, how: Trickle) -> (Duration, String) {
    trickle_to(port, "POST /api/sync_now", how).await
}

/// The same slow client, with `request` ("POST /fn/x") as its request line.
async fn trickle_to(port: u16, request: &str, how: Trickle) -> (Duration, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let framing = match how {
        Trickle::Chunked => "Transfer-Encoding: chunked".to_string(),
        Trickle::Declared(len) => format!("Content-Length: {len}"),
    };
    let head = format!(
        "{request} HTTP/1.1\r\nHost: ibex\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         {framing}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(20) {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if complete(&answer) {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(400)) => {
                let byte: &[u8] = match how {
                    Trickle::Chunked => b"1\r\na\r\n",
                    Trickle::Declared(_) => b"a",
                };
                if stream.write_all(byte).await.is_err() {
                    break;
                }
            }
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// An answer whose headers and whole body (by its `content-length`) have arrived.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    text.len() >= end + 4 + length
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_page_bodies_are_cut_and_signed_calls_keep_answering() {
    let h = Harness::start(Backend::Sqlite).await;
    let (mut ibex, base, port, definition) = spawn_ibex(
        &h,
        &[
            "--max-concurrent-requests",
            "8",
            "--max-concurrent-page-requests",
            "8",
            "--body-timeout-secs",
            "2",
        ],
        "2",
    )
    .await;

    // Twelve slow clients, more than either pool holds: six chunked, six with a declared length under the limit.
    let slow: Vec<_> = (0..12)
        .map(|i| {
            let how = if i % 2 == 0 {
                Trickle::Chunked
            } else {
                Trickle::Declared(100_000)
            };
            tokio::spawn(trickle(port, how))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile Infobip's signed calls and the health check are served, every one of them.
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let answer = signed_call(&base).send().await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert_eq!(
            status, 200,
            "signed call {calls} while pages trickle: {body}"
        );
        let health = client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "health check while pages trickle");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(calls >= 10, "only {calls} signed calls in 4 s");

    // The slow clients were cut at the 2 s body deadline (the eight admitted) or refused at once (the rest:
    // the pages' pool was full), not held for as long as they trickled.
    let (mut cut, mut refused) = (0, 0);
    for task in slow {
        let (took, answer) = task.await.unwrap();
        assert!(
            took < Duration::from_secs(6),
            "a slow page request was held {took:?}: {answer}"
        );
        if answer.starts_with("HTTP/1.1 408") {
            assert!(answer.contains("body_timeout"), "{answer}");
            cut += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            refused += 1;
        }
    }
    assert_eq!(cut + refused, 12);
    assert!(cut >= 1, "no slow request reached its deadline");

    // A declared length far over the limit is refused before any of it is read, in the usual error shape.
    let (took, answer) = trickle(port, Trickle::Declared(1_000_000_000)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");

    // A whole server-function body over the 256 KiB default: 413 with the usual JSON body, not a 500.
    let big = format!("session={}", "a".repeat(300 * 1024));
    let answer = client()
        .post(format!("{base}/api/sync_now"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");

    let _ = ibex.kill();
    let _ = ibex.wait();
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}

/// Unsigned slow bodies sent to the signed paths (`/fn/…`, which anyone can reach) used to take a signed call's
/// slot at the door and hold it until their body deadline: as many as the pool holds took every signed call and
/// the health check off the air. A signed call's slot is now taken once its signature checks out, and the bodies
/// being read hold slots of their own, of which a newcomer takes the longest-running when all are taken: twice
/// as many slow clients as there are such slots, reconnecting as soon as they are cut, do not keep Infobip's
/// signed calls (with a body or without) from being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_slow_bodies_to_signed_paths_take_no_signed_slot() {
    use ibex::signed::signature::{now_ms, signed_headers};
    let h = Harness::start(Backend::Sqlite).await;
    let (_ibex, base, port, definition) = spawn_ibex(
        &h,
        &[
            "--max-concurrent-requests",
            "4",
            "--max-unverified-bodies",
            "4",
            "--body-timeout-secs",
            "3",
        ],
        "2",
    )
    .await;
    let attack_until = Instant::now() + Duration::from_secs(4);
    let slow: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while Instant::now() < attack_until {
                    let how = if i % 2 == 0 {
                        Trickle::Chunked
                    } else {
                        Trickle::Declared(10_000)
                    };
                    answers.push(trickle_to(port, "POST /fn/customer-lookup", how).await);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let answer = signed_call(&base).send().await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert_eq!(
            status, 200,
            "signed GET {calls} while /fn bodies trickle: {body}"
        );
        let lookup = br#"{"email":"nobody@example.com"}"#;
        let mut post = client()
            .post(format!("{base}/fn/customer-lookup"))
            .header("content-type", "application/json")
            .body(lookup.to_vec());
        for (name, value) in signed_headers(common::SECRET, common::ACCOUNT, now_ms(), lookup) {
            post = post.header(name, value);
        }
        let answer = post.send().await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert_ne!(
            status, 503,
            "signed POST {calls} while /fn bodies trickle: {body}"
        );
        assert!(!body.contains("overloaded"), "{body}");
        let health = client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            health.status(),
            200,
            "health check while /fn bodies trickle"
        );
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(calls >= 5, "only {calls} rounds in 3 s");
    // Every slow body was cut (by a newcomer, 503) or ended at its deadline (408), unverified.
    let mut attempts = 0;
    for task in slow {
        for (took, answer) in task.await.unwrap() {
            attempts += 1;
            assert!(took < Duration::from_secs(5), "held {took:?}: {answer}");
            assert!(
                answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
                "{answer}"
            );
        }
    }
    assert!(
        attempts > 8,
        "the slow clients reconnected only {attempts} times"
    );
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}

/// The probes and the Custom cards webhook answer from their headers: a slow body sent with them (which anyone
/// can do) used to be read, for up to its deadline, on a slot of the signed calls' pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_to_the_probes_hold_no_slot() {
    let h = Harness::start(Backend::Sqlite).await;
    let (_ibex, base, port, definition) = spawn_ibex(
        &h,
        &["--max-concurrent-requests", "4", "--body-timeout-secs", "5"],
        "2",
    )
    .await;
    let slow: Vec<_> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /custom-card",
    ]
    .iter()
    .cycle()
    .take(8)
    .map(|request| tokio::spawn(trickle_to(port, request, Trickle::Declared(1000))))
    .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..5 {
        let answer = signed_call(&base).send().await.unwrap();
        let status = answer.status();
        let body = answer.text().await.unwrap();
        assert_eq!(
            status, 200,
            "signed call {round} while probes trickle: {body}"
        );
        let health = client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            health.status(),
            200,
            "health check {round} while probes trickle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each was answered at once, its body unread.
    for task in slow {
        let (took, answer) = task.await.unwrap();
        assert!(took < Duration::from_secs(2), "held {took:?}: {answer}");
    }
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}
