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
