//! The partner's webhook receiver over real HTTP: a delivery signed as Standard Webhooks is accepted (204); an
//! unsigned, stale or forged one is refused with 401 and the reason; the fault switch fails the next deliveries;
//! the record lists each delivery, verified or not, and marks an id seen twice.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use ibex_sim::webhooks::{router, Delivery};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(SECRET).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signature(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let key = B64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

async fn deliver(base: &str, id: &str, ts: i64, sig: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/webhooks"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_deliveries_are_accepted_and_forged_ones_refused() {
    let base = start().await;
    let body = json!({"type": "account.configured", "timestamp": "2026-12-09T10:00:00Z", "data": {"account_key": "A"}}).to_string();
    let ts = now();

    let good = signature(SECRET, "msg_1", ts, &body);
    assert_eq!(deliver(&base, "msg_1", ts, &good, &body).await.0, 204);

    // Another secret, a stale timestamp, a body changed after signing, an empty signature: 401 with the reason.
    let other = signature("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_2", ts, &body);
    let (status, answer) = deliver(&base, "msg_2", ts, &other, &body).await;
    assert_eq!(status, 401);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("no v1 signature"));
    let stale = ts - 301;
    let (status, answer) = deliver(
        &base,
        "msg_3",
        stale,
        &signature(SECRET, "msg_3", stale, &body),
        &body,
    )
    .await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("in the past"));
    let changed = body.replace("\"A\"", "\"B\"");
    assert_eq!(deliver(&base, "msg_1", ts, &good, &changed).await.0, 401);
    assert_eq!(deliver(&base, "msg_4", ts, "v1,", &body).await.0, 401);

    // The fault switch fails the next delivery, which is verified all the same; the retry is accepted.
    let switched = reqwest::Client::new()
        .post(format!("{base}/_sim/webhooks/faults"))
        .json(&json!({"fail_next": 1, "status": 500}))
        .send()
        .await
        .unwrap();
    assert!(switched.status().is_success());
    let sig = signature(SECRET, "msg_5", ts, &body);
    assert_eq!(deliver(&base, "msg_5", ts, &sig, &body).await.0, 500);
    assert_eq!(deliver(&base, "msg_5", ts, &sig, &body).await.0, 204);
    // A delivery seen before is accepted again, and marked.
    assert_eq!(deliver(&base, "msg_1", ts, &good, &body).await.0, 204);

    let seen: Vec<Delivery> = reqwest::get(format!("{base}/_sim/webhooks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let summary: Vec<(Option<&str>, bool, Option<u16>, bool)> = seen
        .iter()
        .map(|d| (d.webhook_id.as_deref(), d.verified, d.answered, d.duplicate))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("msg_1"), true, Some(204), false),
            (Some("msg_2"), false, Some(401), false),
            (Some("msg_3"), false, Some(401), false),
            (Some("msg_1"), false, Some(401), false),
            (Some("msg_4"), false, Some(401), false),
            (Some("msg_5"), true, Some(500), false),
            (Some("msg_5"), true, Some(204), false),
            (Some("msg_1"), true, Some(204), true),
        ]
    );
    assert_eq!(seen[0].event["data"]["account_key"], "A");
}
