//! A corpus of bad requests thrown at a running ibex (over HTTP, both backends): wrong methods, odd paths,
//! broken and hostile bodies, forged and malformed signature headers, for every signed route. Every answer is
//! JSON (an error object with a code, or a function's outputs), none is a 5xx that only a panic would explain,
//! and the server still answers afterwards.

mod common;

use common::{Backend, Harness};
use ibex::signed::signature::{now_ms, signed_headers};
use reqwest::Method;
use serde_json::Value;

const SECRET: &str = common::SECRET;

fn bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "{",
        "null",
        "[]",
        "\"text\"",
        "{\"order_id\": null}",
        "{\"order_id\": \"..\"}",
        "{\"order_id\": \"%2e%2e\"}",
        "{\"order_id\": \"1001/../../admin\"}",
        "{\"order_id\": \"\\u0000\\r\\n\"}",
        "{\"order_id\": 1e400}",
        "{\"order_id\": -0}",
        "{\"order_id\": [1,2]}",
        "{\"order_id\": {\"$gt\": \"\"}}",
        "{\"text\": \"\", \"order_id\": \"1001\"}",
        "{\"email\": \"a@b\", \"email\": \"c@d\"}",
        "{\"__proto__\": {}}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    bodies.push(vec![0xff, 0xfe, 0x00, 0x7b]);
    bodies.push(format!("{{\"text\": \"{}\"}}", "x".repeat(70_000)).into_bytes());
    bodies.push("[".repeat(10_000).into_bytes());
    bodies
}

fn paths(h: &Harness) -> Vec<String> {
    let mut paths: Vec<String> = h
        .state
        .definition
        .functions
        .iter()
        .map(|f| f.route_path().replace("{order_id}", "1001"))
        .collect();
    paths.extend(
        [
            "/fn/order-status/%FF",
            "/fn/order-status/..",
            "/fn/order-status/%2e%2e",
            "/fn/order-status/1001%00",
            "/fn/order-status/1001/extra",
            "/fn/",
            "/fn/nope",
            "/sync/people-changed",
        ]
        .iter()
        .map(|p| p.to_string()),
    );
    paths
}

async fn corpus(backend: Backend) {
    let h = Harness::start(backend).await;
    let http = reqwest::Client::new();
    let mut answers = 0;
    for path in paths(&h) {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            for body in bodies() {
                // Signed properly, then with each header broken in turn.
                let signed = signed_headers(SECRET, common::ACCOUNT, now_ms(), &body);
                let variants: Vec<Vec<(String, String)>> = vec![
                    signed
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                    vec![],
                    signed
                        .iter()
                        .map(|(k, v)| (k.to_string(), format!("{v}x")))
                        .collect(),
                    signed
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                if k.ends_with("timestamp") {
                                    "9".repeat(40)
                                } else {
                                    v.clone()
                                },
                            )
                        })
                        .collect(),
                ];
                for headers in variants {
                    let mut request = http
                        .request(method.clone(), format!("{}{path}", h.ibex))
                        .header("content-type", "application/json")
                        .body(body.clone());
                    for (name, value) in &headers {
                        request = request.header(name.as_str(), value.as_str());
                    }
                    let response = match request.send().await {
                        Ok(response) => response,
                        // Over the body limit, ibex may answer before the client has finished sending and close
                        // the connection (its answer says `Connection: close`); the client then sees a reset.
                        Err(_) if body.len() > 65_536 => continue,
                        Err(e) => panic!("{method} {path} ({} bytes): no answer: {e}", body.len()),
                    };
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                        panic!(
                            "{method} {path} ({status}): not JSON: {}",
                            &text[..text.len().min(200)]
                        )
                    });
                    if status >= 400 {
                        assert!(
                            json["error"]["code"].is_string(),
                            "{method} {path} ({status}): no error code: {json}"
                        );
                    }
                    assert!(status != 500, "{method} {path}: 500 {json}");
                    answers += 1;
                }
            }
        }
    }
    assert!(answers > 1000, "{answers}");
    let (status, _) = h.get("/healthz").await;
    assert_eq!(status, 200);
    h.finish().await;
}

on_both_backends!(bad_input_corpus, corpus);

/// A request answered with an error before its body is read (a path that is not UTF-8, an unknown function)
/// still gets its JSON answer while the client is sending the body: the body is read and dropped first. Closed
/// with body bytes unread, the connection is reset and the client loses the answer (hyper itself drains only
/// what one read brings).
async fn early_errors_read_the_body_first(backend: Backend) {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start(backend).await;
    let addr = h.ibex.trim_start_matches("http://").to_owned();
    // More of it sent before the pause than hyper reads on its own (its first read and one more while closing):
    // unread bytes at the close are what make the reset. Within the 64 KiB that ibex drains.
    let (first, rest) = ("x".repeat(40_000), "x".repeat(20_000));
    for (method, path, code) in [
        ("GET", "/fn/order-status/%FF", "invalid_path"),
        ("POST", "/fn/nope", "unknown_function"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: ibex\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            first.len() + rest.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first.as_bytes()).await.unwrap();
        // A slow client: the rest of the body comes later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = stream.write_all(rest.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let read = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break Ok(());
                    }
                }
                Ok(Err(e)) => break Err(e),
                Err(_) => break Ok(()),
            }
        };
        let text = String::from_utf8_lossy(&answer);
        assert!(
            sent.is_ok() && read.is_ok() && text.contains(code),
            "{method} {path}: sent {sent:?}, read {read:?}, answer {text:?}"
        );
    }
    h.finish().await;
}

on_both_backends!(
    early_errors_answer_a_client_still_sending,
    early_errors_read_the_body_first
);
