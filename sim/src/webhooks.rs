//! The partner's webhook receiver, as a partner following the Standard Webhooks specification would write it
//! (<https://www.standardwebhooks.com/>): the signature (`webhook-signature`, `v1,` and the base64 of
//! HMAC-SHA256 over "`webhook-id`.`webhook-timestamp`.`body`" with the `whsec_` key) and the timestamp (five
//! minutes either way) are checked before anything is read; anything else is refused with 401. What arrived is
//! recorded (`GET /_sim/webhooks`), and a switch (`POST /_sim/webhooks/faults`) makes the next deliveries fail,
//! so a sender's retries can be seen.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How far a `webhook-timestamp` may be from the receiver's clock, past or future (the specification's
/// libraries use five minutes).
pub const TOLERANCE_SECS: i64 = 300;

/// Deliveries recorded; older ones are dropped.
const KEPT: usize = 1000;

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MissingHeader(&'static str),
    BadTimestamp,
    TooOld,
    TooNew,
    NoMatch,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::MissingHeader(name) => write!(f, "the {name} header is missing or not text"),
            Refusal::BadTimestamp => f.write_str("webhook-timestamp is not whole seconds since 1970"),
            Refusal::TooOld => write!(f, "webhook-timestamp is more than {TOLERANCE_SECS} s in the past"),
            Refusal::TooNew => write!(f, "webhook-timestamp is more than {TOLERANCE_SECS} s in the future"),
            Refusal::NoMatch => f.write_str(
                "no v1 signature in webhook-signature matches the body with this secret; is the raw body signed?",
            ),
        }
    }
}

/// The key of a `whsec_…` secret (the prefix is optional here, as in the specification's libraries).
pub fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    let key = B64
        .decode(encoded)
        .map_err(|_| "the webhook secret is not whsec_ and base64".to_owned())?;
    if key.is_empty() {
        return Err("the webhook secret is empty".into());
    }
    Ok(key)
}

/// Checks a delivery as received at `now` (seconds): the id on success.
pub fn verify(key: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> Result<String, Refusal> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp_text = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let timestamp: i64 = timestamp_text.parse().map_err(|_| Refusal::BadTimestamp)?;
    // Saturating: a timestamp of i64::MIN must be refused, not overflow.
    if now.saturating_sub(timestamp) > TOLERANCE_SECS {
        return Err(Refusal::TooOld);
    }
    if timestamp.saturating_sub(now) > TOLERANCE_SECS {
        return Err(Refusal::TooNew);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| Refusal::NoMatch)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Several signatures may be sent (a secret being rotated): one that matches is enough. `verify_slice`
    // compares in constant time and only whole, equally long MACs.
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .any(|given| mac.clone().verify_slice(&given).is_ok());
    if matched {
        Ok(id.to_owned())
    } else {
        Err(Refusal::NoMatch)
    }
}

/// The fault switch: answer the next `fail_next` verified deliveries with `status`, and delay answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Faults {
    #[serde(default)]
    pub fail_next: u32,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub delay_ms: u64,
}

fn default_status() -> u16 {
    503
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// `webhook-id`, as sent (also for a refused delivery, when present).
    pub webhook_id: Option<String>,
    pub verified: bool,
    /// Why it was refused, when it was.
    pub refusal: Option<String>,
    /// What was answered; `None` while the answer is being delayed.
    pub answered: Option<u16>,
    /// An id already accepted before (a sender may deliver twice: at least once).
    pub duplicate: bool,
    /// The body, parsed (`null` when refused or not JSON).
    pub event: Value,
    #[serde(skip)]
    n: u64,
}

struct Receiver {
    key: Vec<u8>,
    faults: Mutex<Faults>,
    seen: Mutex<(u64, Vec<Delivery>)>,
    accepted: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Receiver {
    fn record(&self, mut delivery: Delivery) -> u64 {
        let mut seen = lock(&self.seen);
        seen.0 += 1;
        delivery.n = seen.0;
        if seen.1.len() >= KEPT {
            seen.1.remove(0);
        }
        seen.1.push(delivery);
        seen.0
    }

    fn answered(&self, n: u64, status: u16, duplicate: bool) {
        let mut seen = lock(&self.seen);
        if let Some(d) = seen.1.iter_mut().find(|d| d.n == n) {
            d.answered = Some(status);
            d.duplicate = duplicate;
        }
    }
}

/// The receiver at `POST /webhooks`, its record at `GET /_sim/webhooks`, its fault switch at
/// `POST /_sim/webhooks/faults`.
pub fn router(secret: &str) -> Result<Router, String> {
    let receiver = Arc::new(Receiver {
        key: key_of(secret)?,
        faults: Mutex::new(Faults::default()),
        seen: Mutex::new((0, Vec::new())),
        accepted: Mutex::new(HashSet::new()),
    });
    Ok(Router::new()
        .route("/webhooks", post(receive))
        .route("/_sim/webhooks", get(deliveries).delete(forget))
        .route("/_sim/webhooks/faults", post(set_faults).get(get_faults))
        .with_state(receiver))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let sent_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = match verify(&receiver.key, &headers, &body, now_secs()) {
        Ok(id) => id,
        Err(refusal) => {
            receiver.record(Delivery {
                webhook_id: sent_id,
                verified: false,
                refusal: Some(refusal.to_string()),
                answered: Some(401),
                duplicate: false,
                event: Value::Null,
                n: 0,
            });
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": refusal.to_string()})),
            )
                .into_response();
        }
    };
    let event = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let n = receiver.record(Delivery {
        webhook_id: Some(id.clone()),
        verified: true,
        refusal: None,
        answered: None,
        duplicate: false,
        event: event.clone(),
        n: 0,
    });
    let faults = {
        let mut faults = lock(&receiver.faults);
        let snapshot = faults.clone();
        faults.fail_next = faults.fail_next.saturating_sub(1);
        snapshot
    };
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    if faults.fail_next > 0 {
        let status = StatusCode::from_u16(faults.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        receiver.answered(n, status.as_u16(), false);
        return (status, Json(json!({"error": "simulated failure"}))).into_response();
    }
    if event.is_null() {
        receiver.answered(n, 400, false);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "the body is not JSON"})),
        )
            .into_response();
    }
    let duplicate = !lock(&receiver.accepted).insert(id);
    receiver.answered(n, 204, duplicate);
    StatusCode::NO_CONTENT.into_response()
}

async fn deliveries(State(receiver): State<Arc<Receiver>>) -> Json<Vec<Delivery>> {
    Json(lock(&receiver.seen).1.clone())
}

async fn forget(State(receiver): State<Arc<Receiver>>) -> StatusCode {
    lock(&receiver.seen).1.clear();
    lock(&receiver.accepted).clear();
    StatusCode::NO_CONTENT
}

async fn set_faults(
    State(receiver): State<Arc<Receiver>>,
    Json(faults): Json<Faults>,
) -> Json<Faults> {
    *lock(&receiver.faults) = faults.clone();
    Json(faults)
}

async fn get_faults(State(receiver): State<Arc<Receiver>>) -> Json<Faults> {
    Json(lock(&receiver.faults).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const GOOD: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, ts: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    fn check(h: &HeaderMap, body: &[u8], now: i64) -> Result<String, Refusal> {
        verify(&key_of(SECRET).unwrap(), h, body, now)
    }

    #[test]
    fn the_specification_test_vector_verifies() {
        let h = headers(ID, "1614265330", GOOD);
        assert_eq!(check(&h, BODY, TS), Ok(ID.to_owned()));
        // Within the window either way.
        assert!(check(&h, BODY, TS + TOLERANCE_SECS).is_ok());
        assert!(check(&h, BODY, TS - TOLERANCE_SECS).is_ok());
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_refused_not_overflowed() {
        let h = headers(ID, &i64::MIN.to_string(), GOOD);
        assert_eq!(check(&h, BODY, TS), Err(Refusal::TooOld));
        let h = headers(ID, &i64::MAX.to_string(), GOOD);
        assert_eq!(check(&h, BODY, -TS), Err(Refusal::TooNew));
    }

    #[test]
    fn every_way_of_getting_it_wrong_is_refused() {
        let good = headers(ID, "1614265330", GOOD);
        assert_eq!(
            check(&good, BODY, TS + TOLERANCE_SECS + 1),
            Err(Refusal::TooOld)
        );
        assert_eq!(
            check(&good, BODY, TS - TOLERANCE_SECS - 1),
            Err(Refusal::TooNew)
        );
        // A re-serialised body, another id, another time (the signature covers all three).
        assert_eq!(
            check(&good, br#"{"test":2432232314}"#, TS),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            check(&headers("msg_other", "1614265330", GOOD), BODY, TS),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            check(&headers(ID, "1614265331", GOOD), BODY, TS),
            Err(Refusal::NoMatch)
        );
        // An empty, cut or other-version signature, and another secret.
        for signature in [
            "v1,",
            "v1,g0hM9SsE+OTPJTGt",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            assert_eq!(
                check(&headers(ID, "1614265330", signature), BODY, TS),
                Err(Refusal::NoMatch),
                "{signature}"
            );
        }
        let other = key_of("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(verify(&other, &good, BODY, TS), Err(Refusal::NoMatch));
        assert_eq!(
            check(&headers(ID, "soon", GOOD), BODY, TS),
            Err(Refusal::BadTimestamp)
        );
        let mut missing = good.clone();
        missing.remove("webhook-signature");
        assert_eq!(
            check(&missing, BODY, TS),
            Err(Refusal::MissingHeader("webhook-signature"))
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let h = headers(
            ID,
            "1614265330",
            &format!("v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {GOOD}"),
        );
        assert!(check(&h, BODY, TS).is_ok());
    }
}
