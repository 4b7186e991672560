//! The signed endpoints over real HTTP, on both settings backends: every verification failure, input error and
//! partner failure answers with its own status and error code, and nothing panics.

mod common;

use common::{Backend, Harness, ACCOUNT, SECOND_SECRET, SECRET};
use ibex::signed::signature::{now_ms, sign};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

const TS: &str = "x-ib-exchange-req-timestamp";
const SIG: &str = "x-ib-exchange-req-signature";
const ACC: &str = "x-ib-exchange-req-accountkey";

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

fn expect(case: &str, got: (u16, Value), status: u16, error_code: Option<&str>) -> Value {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{case}: {body}");
    match error_code {
        Some(c) => {
            assert_eq!(code(&body), c, "{case}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.len() > 10,
                "{case}: an error needs a helpful message: {body}"
            );
        }
        None => assert!(body.get("error").is_none(), "{case}: {body}"),
    }
    body
}

/// The error message of an answer `expect` has checked names `needle`.
fn assert_message_names(body: &Value, needle: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message should name {needle:?}: {body}"
    );
}

/// A signed GET of order-status whose headers `tamper` then changes.
async fn get(h: &Harness, tamper: impl FnOnce(&mut reqwest::header::HeaderMap)) -> (u16, Value) {
    h.send(Method::GET, "/fn/order-status/1001", b"", b"", tamper)
        .await
}

/// A signed GET written byte for byte, for paths an HTTP client would normalise (`..`, `%2E%2E`).
async fn raw_get(h: &Harness, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = h.ibex.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in ibex::signed::signature::signed_headers(SECRET, ACCOUNT, now_ms(), b"") {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    // Chunked or not, the JSON object is the part between the first `{` and the last `}`.
    let json = &body[body.find('{').unwrap_or(0)..body.rfind('}').map_or(0, |i| i + 1)];
    (
        status,
        serde_json::from_str(json).unwrap_or(Value::String(body.to_owned())),
    )
}

fn header(value: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(value.as_ref()).unwrap()
}

async fn verification_table(backend: Backend) {
    let h = Harness::start(backend).await;
    let lookup = r#"{"email":"ana@example.com"}"#;

    let body = expect(
        "valid GET, empty body",
        h.get("/fn/order-status/1001").await,
        200,
        None,
    );
    assert_eq!(body["status"], "shipped");
    assert_eq!(body["customer_name"], "Ana Horvat");
    let body = expect(
        "valid POST with JSON",
        h.post("/fn/customer-lookup", lookup).await,
        200,
        None,
    );
    assert_eq!(
        body,
        json!({"customer_id": "c-100", "name": "Ana Horvat", "tier": "gold", "open_orders": 2})
    );

    expect(
        "upper-case hex",
        get(&h, |m| {
            let upper = m[SIG].to_str().unwrap().to_uppercase();
            m.insert(SIG, header(upper));
        })
        .await,
        200,
        None,
    );
    expect(
        "second active secret",
        get(&h, |m| {
            let ts = m[TS].to_str().unwrap().to_owned();
            m.insert(SIG, header(sign(SECOND_SECRET, &ts, b"")));
        })
        .await,
        200,
        None,
    );
    for missing in [TS, SIG, ACC] {
        expect(
            &format!("missing {missing}"),
            get(&h, move |m| {
                m.remove(missing);
            })
            .await,
            401,
            Some("missing_header"),
        );
    }
    expect(
        "non-numeric timestamp",
        get(&h, |m| {
            m.insert(TS, header("2024-01-01T00:00:00Z"));
        })
        .await,
        400,
        Some("invalid_timestamp"),
    );
    expect(
        "seconds instead of milliseconds",
        get(&h, |m| {
            let secs = (now_ms() / 1000).to_string();
            m.insert(SIG, header(sign(SECRET, &secs, b"")));
            m.insert(TS, header(secs));
        })
        .await,
        400,
        Some("timestamp_in_seconds"),
    );
    for (case, offset, expected) in [
        ("stale", -301_000, "stale_timestamp"),
        ("future", 301_000, "future_timestamp"),
    ] {
        expect(
            case,
            get(&h, move |m| {
                let ts = (now_ms() + offset).to_string();
                m.insert(SIG, header(sign(SECRET, &ts, b"")));
                m.insert(TS, header(ts));
            })
            .await,
            401,
            Some(expected),
        );
    }
    expect(
        "wrong secret",
        get(&h, |m| {
            let ts = m[TS].to_str().unwrap().to_owned();
            m.insert(SIG, header(sign("not-the-secret", &ts, b"")));
        })
        .await,
        401,
        Some("signature_mismatch"),
    );
    expect(
        "signature not hex",
        get(&h, |m| {
            m.insert(SIG, header("zz"));
        })
        .await,
        401,
        Some("malformed_signature"),
    );
    let tampered = r#"{"email":"marko@example.com"}"#;
    expect(
        "tampered body",
        h.send(
            Method::POST,
            "/fn/customer-lookup",
            lookup.as_bytes(),
            tampered.as_bytes(),
            |_| {},
        )
        .await,
        401,
        Some("signature_mismatch"),
    );
    let respaced = r#"{"email": "ana@example.com"}"#;
    expect(
        "body re-serialised with other spacing",
        h.send(
            Method::POST,
            "/fn/customer-lookup",
            lookup.as_bytes(),
            respaced.as_bytes(),
            |_| {},
        )
        .await,
        401,
        Some("signature_mismatch"),
    );
    let huge = format!(r#"{{"email":"{}"}}"#, "a".repeat(70 * 1024));
    expect(
        "oversized body",
        h.post("/fn/customer-lookup", &huge).await,
        413,
        Some("body_too_large"),
    );
    // An oversized body is left unread, so its answer ends the connection rather than leave it to be reused.
    let mut oversized = h
        .client
        .post(format!("{}/fn/customer-lookup", h.ibex))
        .header("content-type", "application/json")
        .body(huge.clone());
    for (name, value) in
        ibex::signed::signature::signed_headers(SECRET, ACCOUNT, now_ms(), huge.as_bytes())
    {
        oversized = oversized.header(name, value);
    }
    let oversized = oversized.send().await.unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(oversized.headers()["connection"], "close");
    expect(
        "malformed JSON",
        h.post("/fn/customer-lookup", r#"{"email":"#).await,
        400,
        Some("malformed_json"),
    );
    expect(
        "JSON that is not an object",
        h.post("/fn/customer-lookup", "[1,2]").await,
        400,
        Some("malformed_json"),
    );
    expect(
        "missing required input",
        h.post("/fn/add-order-note", r#"{"order_id":"1001"}"#).await,
        422,
        Some("invalid_input"),
    );
    expect(
        "unknown function",
        h.get("/fn/no-such-function").await,
        404,
        Some("unknown_function"),
    );
    let body = expect(
        "path parameter not UTF-8 once decoded",
        h.get("/fn/order-status/%FF").await,
        400,
        Some("invalid_path"),
    );
    // axum's own words name the parameter; ibex's add what a path parameter must be.
    assert_message_names(&body, "order_id");
    // Signed routes carry the same protective headers as pages, through both of their paths.
    for (method, path, status) in [
        (Method::GET, "/fn/no-such-function", 404),
        (Method::DELETE, "/fn/order-status/1001", 405),
    ] {
        let answer = reqwest::Client::new()
            .request(method, format!("{}{path}", h.ibex))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{path}");
        let headers = answer.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["content-security-policy"], "frame-ancestors 'none'",
            "{path}"
        );
        let id = headers["x-request-id"].to_str().unwrap();
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{path}");
        assert_eq!(parsed.hyphenated().to_string(), id, "{path}");
    }
    expect(
        "wrong method",
        h.send(Method::POST, "/fn/order-status/1001", b"{}", b"{}", |_| {})
            .await,
        405,
        Some("method_not_allowed"),
    );
    let body = expect(
        "unknown account",
        h.send(Method::GET, "/fn/order-status/1001", b"", b"", |m| {
            let ts = m[TS].to_str().unwrap().to_owned();
            m.insert(ACC, header("ACCT-UNKNOWN"));
            m.insert(SIG, header(sign(SECRET, &ts, b"")));
        })
        .await,
        409,
        Some("account_not_configured"),
    );
    assert_message_names(&body, "configuration page");
    h.finish().await;
}

async fn partner_failures(backend: Backend) {
    let h = Harness::start(backend).await;

    expect(
        "partner 4xx",
        h.get("/fn/order-status/999").await,
        502,
        Some("partner_client_error"),
    );

    // 503 is a gateway status: a GET is retried and succeeds, a POST is not repeated.
    h.shop_faults(json!({"fail_next": 1, "status": 503})).await;
    let before = h.shop_requests().await.len();
    expect(
        "partner 503 then 200, GET",
        h.get("/fn/order-status/1001").await,
        200,
        None,
    );
    assert_eq!(
        h.shop_requests().await.len() - before,
        2,
        "GET is sent twice"
    );
    h.shop_faults(json!({"fail_next": 1, "status": 503})).await;
    let before = h.shop_requests().await.len();
    expect(
        "partner 503 then 200, POST",
        h.post("/fn/add-order-note", r#"{"order_id":"1001","text":"hi"}"#)
            .await,
        502,
        Some("partner_server_error"),
    );
    assert_eq!(
        h.shop_requests().await.len() - before,
        1,
        "POST is sent once"
    );

    // 500 is the partner's own failure, not a gateway's: not retried.
    h.shop_faults(json!({"fail_next": 1, "status": 500})).await;
    let body = expect(
        "partner 500",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_server_error"),
    );
    assert_eq!(body["error"]["details"]["partner_status"], 500);

    h.shop_faults(json!({"garbage": true})).await;
    expect(
        "partner answer not JSON",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_bad_answer"),
    );
    // A failure with an error page longer than the answer limit keeps its status.
    h.shop_faults(
        json!({"fail_next": 1, "status": 500, "huge_bytes": ibex::partner::MAX_ANSWER_BYTES + 1}),
    )
    .await;
    let body = expect(
        "partner 500 with a long answer",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_server_error"),
    );
    assert_eq!(body["error"]["details"]["partner_status"], 500, "{body}");
    h.shop_faults(json!({"huge_bytes": ibex::partner::MAX_ANSWER_BYTES + 1}))
        .await;
    let body = expect(
        "partner answer over the size limit",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_bad_answer"),
    );
    assert_message_names(&body, "larger than");
    h.shop_faults(json!({})).await;

    let body = expect(
        "partner answer missing an output",
        h.get("/fn/order-promise/1001").await,
        502,
        Some("partner_bad_answer"),
    );
    assert_message_names(&body, "promised_date");

    h.shop_faults(json!({"delay_ms": 3500})).await;
    expect(
        "partner slow past the deadline",
        h.get("/fn/order-status/1001").await,
        504,
        Some("partner_timeout"),
    );
    h.shop_faults(json!({})).await;

    h.configure(
        ACCOUNT,
        &[
            ("api_base_url", "http://127.0.0.1:9"),
            ("api_key", common::SHOP_KEY),
        ],
    )
    .await;
    expect(
        "partner down",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_unreachable"),
    );

    // https goes through TLS: against the shop's plain-HTTP port the handshake fails, and says so.
    let plain = h.shop.replace("http://", "https://");
    h.configure(
        ACCOUNT,
        &[
            ("api_base_url", plain.as_str()),
            ("api_key", common::SHOP_KEY),
        ],
    )
    .await;
    let body = expect(
        "https partner whose port speaks no TLS",
        h.get("/fn/order-status/1001").await,
        502,
        Some("partner_unreachable"),
    );
    // rustls reports the non-TLS answer.
    assert_message_names(&body, "corrupt message");
    h.finish().await;
}

async fn middleware_translations(backend: Backend) {
    let h = Harness::start(backend).await;
    h.configure(
        ACCOUNT,
        &[
            ("currency", "GBP"),
            ("max_orders", "2"),
            ("note_author", "Bot Ana"),
        ],
    )
    .await;

    let body = expect(
        "preference reaches the partner",
        h.get("/fn/order-status/1001").await,
        200,
        None,
    );
    assert_eq!(body["currency"], "GBP");
    let body = expect(
        "list",
        h.get("/fn/recent-orders?customer_id=c-100").await,
        200,
        None,
    );
    let orders = body["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2, "{body}");
    assert!(
        orders
            .iter()
            .all(|o| o["id"].is_string() && o["label"].is_string()),
        "{body}"
    );

    expect(
        "note",
        h.post(
            "/fn/add-order-note",
            r#"{"order_id":1002,"text":"call back"}"#,
        )
        .await,
        200,
        None,
    );
    expect(
        "phone lookup",
        h.post("/fn/customer-lookup", r#"{"phone":"+385921112223"}"#)
            .await,
        200,
        None,
    );

    let seen = h.shop_requests().await;
    let status_call = seen.iter().find(|r| r["path"] == "/orders/1001").unwrap();
    assert_eq!(
        status_call["headers"]["x-api-key"],
        common::SHOP_KEY,
        "credential from the settings"
    );
    assert_eq!(status_call["query"], "currency=GBP");
    let list = seen.iter().find(|r| r["path"] == "/orders").unwrap();
    assert!(
        list["query"].as_str().unwrap().contains("limit=2"),
        "{list}"
    );
    let note = seen
        .iter()
        .find(|r| r["path"] == "/orders/1002/notes")
        .unwrap();
    let sent: Value = serde_json::from_str(note["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"text": "call back", "author": "Bot Ana"}));
    let lookup = seen
        .iter()
        .find(|r| r["path"] == "/customers/lookup")
        .unwrap();
    assert_eq!(
        lookup["headers"]["x-customer-phone"], "+385921112223",
        "input moved into a header"
    );
    assert!(
        lookup["headers"].get("x-customer-email").is_none(),
        "absent optional input sends no header"
    );

    // A path value is one segment: an escaped `/` or `\` (which a proxy in front of the partner may decode into
    // a separator) or a `%` (a double-encoded `..`) is refused before anything is sent.
    let before = h.shop_requests().await.len();
    for value in [
        "x%2Fcustomers",
        "1003%2Frefunds",
        "%252e%252e",
        "1003%5Crefunds",
        "50%25",
    ] {
        let body = expect(
            &format!("path value {value}"),
            h.get(&format!("/fn/order-status/{value}")).await,
            422,
            Some("invalid_input"),
        );
        assert_message_names(&body, "`order_id`");
    }
    assert_eq!(h.shop_requests().await.len(), before, "nothing was sent");
    // An order the shop does not know is the partner's 404: a 502 naming it.
    expect(
        "unknown order",
        h.get("/fn/order-status/x-customers").await,
        502,
        Some("partner_client_error"),
    );
    let last = h.shop_requests().await.pop().unwrap();
    assert_eq!(last["path"], "/orders/x-customers");

    // A value of `.` or `..` would climb the partner's path (`/orders/..` is `/`): refused, whether it comes in
    // the path (sent raw: an HTTP client would normalise it away) or in a JSON body, and nothing is sent.
    let before = h.shop_requests().await.len();
    // A proxy in front of the partner decodes `%2F` before it resolves `..`, so `..%2Finternal` climbs too.
    for dots in ["..", ".", "%2E%2E", "%2e", "..%2Finternal", "..%5Cinternal"] {
        let body = expect(
            &format!("path value {dots}"),
            raw_get(&h, &format!("/fn/order-status/{dots}")).await,
            422,
            Some("invalid_input"),
        );
        assert_message_names(&body, "`order_id`");
    }
    for dots in ["..", ".", "../internal", "a/../../x"] {
        let body = expect(
            &format!("body value {dots}"),
            h.post(
                "/fn/add-order-note",
                &json!({"order_id": dots, "text": "x"}).to_string(),
            )
            .await,
            422,
            Some("invalid_input"),
        );
        assert_message_names(&body, "`order_id`");
    }
    assert_eq!(
        h.shop_requests().await.len(),
        before,
        "nothing reached the partner"
    );

    // A URL setting with credentials in it is refused: it would be stored and shown in plain text. (A literal
    // base URL with credentials in the definition still becomes Basic auth: partner::request's tests.)
    let with_credentials = h.shop.replace("http://", "http://desk:p%40ss@");
    let changes: std::collections::BTreeMap<String, String> = [
        ("api_base_url".to_owned(), with_credentials),
        ("api_key".to_owned(), common::SHOP_KEY.to_owned()),
    ]
    .into();
    let refused = h
        .state
        .settings
        .update(ACCOUNT, None, &changes, "test")
        .await;
    let Err(app::settings::SettingsError::Invalid(errors)) = refused else {
        panic!("credentials in a URL setting were accepted: {refused:?}")
    };
    assert_eq!(errors[0].field, "api_base_url");
    assert!(
        errors[0].message.contains("user name or password"),
        "{errors:?}"
    );

    // Metrics need the operator's token.
    for token in [None, Some("wrong")] {
        let mut request = h.client.get(format!("{}/metrics", h.ibex));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert!(!response
            .text()
            .await
            .unwrap()
            .contains("ibex_function_calls_total"));
    }
    let metrics = h
        .client
        .get(format!("{}/metrics", h.ibex))
        .bearer_auth(common::METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Series exist at zero from start-up, so the values are read: each outcome above was counted.
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{metrics}"))
    };
    assert!(value(r#"ibex_function_calls_total{function="order-status",status="200"}"#) >= 1.0);
    assert!(value(r#"ibex_function_calls_total{function="order-status",status="502"}"#) >= 1.0);
    assert!(
        value(r#"ibex_partner_call_duration_seconds_count{function="order-status",outcome="ok"}"#)
            >= 1.0
    );
    assert!(
        value(
            r#"ibex_partner_call_duration_seconds_count{function="order-status",outcome="error"}"#
        ) >= 1.0
    );
    assert!(value(r#"ibex_function_call_duration_seconds_count{function="order-status"}"#) >= 2.0);
    let ready = h
        .client
        .get(format!("{}/readyz", h.ibex))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    h.finish().await;
}

on_both_backends!(verification, verification_table);
on_both_backends!(partner, partner_failures);
on_both_backends!(translations, middleware_translations);

/// Past the configured number of requests in flight, ibex answers 503 at once (with Retry-After) instead of
/// queueing; the request already in flight is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once() {
    let h = std::sync::Arc::new(
        Harness::start_with(
            Backend::Sqlite,
            &[
                "--allow-loopback-partners",
                "--max-concurrent-requests",
                "1",
            ],
        )
        .await,
    );
    h.shop_faults(json!({"delay_ms": 1000})).await;
    let first = {
        let h = h.clone();
        tokio::spawn(async move { h.get("/fn/order-status/1001").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, body) = h.get("/fn/order-status/1002").await;
    assert_eq!((status, code(&body)), (503, "overloaded"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "shed, not queued"
    );
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    h.shop_faults(json!({})).await;
}

/// What the signature does not cover cannot change a call: a POST's inputs come from the signed body only (a
/// query added on the way is not read), and with the opt-in replay guard the same signed request is accepted
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_parts_change_nothing() {
    let h = Harness::start_with(
        Backend::Sqlite,
        &["--allow-loopback-partners", "--replay-guard"],
    )
    .await;
    let body = br#"{"text":"from the body"}"#;
    let answer = h
        .send(
            Method::POST,
            "/fn/add-order-note?order_id=1002",
            body,
            body,
            |_| {},
        )
        .await;
    let answer = expect("query on a signed POST", answer, 422, Some("invalid_input"));
    assert_message_names(&answer, "`order_id`");

    let ts = now_ms().to_string();
    let signature = sign(SECRET, &ts, b"");
    let replay = |ts: String, signature: String| {
        h.send(Method::GET, "/fn/order-status/1001", b"", b"", move |m| {
            m.insert(TS, header(ts));
            m.insert(SIG, header(signature));
        })
    };
    expect(
        "first",
        replay(ts.clone(), signature.clone()).await,
        200,
        None,
    );
    expect(
        "the same request again",
        replay(ts.clone(), signature.to_uppercase()).await,
        409,
        Some("replayed"),
    );
    h.finish().await;
}

/// The operator's https-only policy (`IBEX_PARTNER_HTTPS_ONLY`) holds whatever the app definition says: the
/// test shop is plain http, so the call is refused before anything is sent, naming the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_https_only_refuses_an_http_partner() {
    let h = Harness::start_with(
        Backend::Sqlite,
        &["--allow-loopback-partners", "--partner-https-only"],
    )
    .await;
    let before = h.shop_requests().await.len();
    let (status, body) = h.get("/fn/order-status/1001").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "partner_address_forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https only"),
        "{body}"
    );
    assert_eq!(
        h.shop_requests().await.len(),
        before,
        "nothing reached the shop"
    );
    h.finish().await;
}
