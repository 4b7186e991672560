//! Infobip's request signature: lowercase hex HMAC-SHA256, keyed with the app's signing secret, over the
//! millisecond timestamp immediately followed by the raw body.
//!
//! The verifier is pure (the clock is a parameter) so every failure can be tested beside it; the HTTP extractor in
//! `signed.rs` is a thin wrapper. Several secrets may be active at once so that a secret can be rotated in App
//! shell without a window of failed calls.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

pub const ACCOUNT_KEY_HEADER: &str = "X-Ib-Exchange-Req-AccountKey";
pub const TIMESTAMP_HEADER: &str = "X-Ib-Exchange-Req-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Ib-Exchange-Req-Signature";

/// The same names as `HeaderName`s: a lookup by text parses and lower-cases the name on every call (~500
/// instructions each, three per signed call).
pub const ACCOUNT_KEY_NAME: HeaderName = HeaderName::from_static("x-ib-exchange-req-accountkey");
pub const TIMESTAMP_NAME: HeaderName = HeaderName::from_static("x-ib-exchange-req-timestamp");
pub const SIGNATURE_NAME: HeaderName = HeaderName::from_static("x-ib-exchange-req-signature");

/// Longest account key accepted; Infobip's are 32 hex characters, this leaves room without inviting abuse.
const MAX_ACCOUNT_KEY_LEN: usize = 256;
/// Any millisecond timestamp after 1973 exceeds this; a smaller number is almost surely seconds.
const SECONDS_THRESHOLD: i64 = 100_000_000_000;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("IBEX_SIGNING_SECRETS is empty: set the signing secret from App shell → Security")]
    None,
    #[error(
        "IBEX_SIGNING_SECRETS holds an empty secret (entry {0}); an HMAC keyed with \"\" would accept anyone's signature"
    )]
    Empty(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "missing header {0}: Infobip sends it on every call; is this request coming from Exchange?"
    )]
    MissingHeader(&'static str),
    #[error("header {0} is not visible ASCII text")]
    HeaderNotText(&'static str),
    #[error(
        "header {ACCOUNT_KEY_HEADER} is empty or longer than {MAX_ACCOUNT_KEY_LEN} characters"
    )]
    BadAccountKey,
    #[error("header {TIMESTAMP_HEADER} must be milliseconds since the Unix epoch, got {0:?}")]
    TimestampNotNumeric(String),
    #[error(
        "header {TIMESTAMP_HEADER} is {0}, which looks like seconds: Infobip sends milliseconds since the Unix epoch"
    )]
    TimestampInSeconds(i64),
    #[error("timestamp is {age_secs} s old, outside the {tolerance_secs} s replay window; sign with the current time")]
    Stale { age_secs: i64, tolerance_secs: i64 },
    #[error(
        "timestamp is {ahead_secs} s in the future, outside the {tolerance_secs} s window; check the caller's clock"
    )]
    Future {
        ahead_secs: i64,
        tolerance_secs: i64,
    },
    #[error("header {SIGNATURE_HEADER} must be 64 hexadecimal characters (HMAC-SHA256)")]
    MalformedSignature,
    #[error(
        "signature does not match: sign the timestamp followed immediately by the raw request body, byte for byte as \
         sent (not re-serialised JSON), with HMAC-SHA256 keyed by the app's signing secret from App shell"
    )]
    Mismatch,
}

/// What a valid signature proves: this account called, at this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'h> {
    pub account_key: &'h str,
    pub timestamp_ms: i64,
}

pub struct Verifier {
    keys: Vec<HmacSha256>,
    tolerance_ms: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance_ms", &self.tolerance_ms)
            .finish()
    }
}

impl Verifier {
    pub fn new(secrets: &[String], tolerance: std::time::Duration) -> Result<Self, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::None);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.is_empty() {
                    return Err(SecretError::Empty(i + 1));
                }
                HmacSha256::new_from_slice(s.as_bytes()).map_err(|_| SecretError::Empty(i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            keys,
            tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
        })
    }

    pub fn verify<'h>(
        &self,
        headers: &'h HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Verified<'h>, SignatureError> {
        let account_key = header(headers, &ACCOUNT_KEY_NAME, ACCOUNT_KEY_HEADER)?;
        if account_key.is_empty() || account_key.len() > MAX_ACCOUNT_KEY_LEN {
            return Err(SignatureError::BadAccountKey);
        }
        let timestamp = header(headers, &TIMESTAMP_NAME, TIMESTAMP_HEADER)?;
        let signature = header(headers, &SIGNATURE_NAME, SIGNATURE_HEADER)?;
        let timestamp_ms = parse_timestamp(timestamp)?;
        self.check_window(timestamp_ms, now_ms)?;
        // Exactly 64 digits: const-hex would also take a `0x` before them, which Infobip never sends.
        let mut expected = [0u8; 32];
        if signature.len() != 2 * expected.len() {
            return Err(SignatureError::MalformedSignature);
        }
        const_hex::decode_to_slice(signature, &mut expected)
            .map_err(|_| SignatureError::MalformedSignature)?;
        let matched = self.keys.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(timestamp.as_bytes());
            mac.update(body);
            // constant-time comparison (hmac uses `subtle`)
            mac.verify_slice(&expected).is_ok()
        });
        if !matched {
            return Err(SignatureError::Mismatch);
        }
        Ok(Verified {
            account_key,
            timestamp_ms,
        })
    }

    fn check_window(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), SignatureError> {
        let age = now_ms.saturating_sub(timestamp_ms);
        let tolerance_secs = self.tolerance_ms / 1000;
        if age > self.tolerance_ms {
            return Err(SignatureError::Stale {
                age_secs: age / 1000,
                tolerance_secs,
            });
        }
        if -age > self.tolerance_ms {
            return Err(SignatureError::Future {
                ahead_secs: -age / 1000,
                tolerance_secs,
            });
        }
        Ok(())
    }
}

fn header<'h>(
    headers: &'h HeaderMap,
    key: &HeaderName,
    name: &'static str,
) -> Result<&'h str, SignatureError> {
    headers
        .get(key)
        .ok_or(SignatureError::MissingHeader(name))?
        .to_str()
        .map(str::trim)
        .map_err(|_| SignatureError::HeaderNotText(name))
}

fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 18 {
        let shown: String = text.chars().take(40).collect();
        return Err(SignatureError::TimestampNotNumeric(shown));
    }
    let value: i64 = text
        .parse()
        .map_err(|_| SignatureError::TimestampNotNumeric(text.to_owned()))?;
    if value < SECONDS_THRESHOLD {
        return Err(SignatureError::TimestampInSeconds(value));
    }
    Ok(value)
}

/// Lowercase hex signature of `timestamp ++ body`, exactly as Infobip computes it.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.as_bytes());
    mac.update(body);
    const_hex::encode(mac.finalize().into_bytes())
}

/// The three headers Infobip would send for this body: what Stripe's `generateTestHeaderString` is to Stripe.
/// Used by the tests, `ibex call` and the benchmark.
pub fn signed_headers(
    secret: &str,
    account_key: &str,
    timestamp_ms: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let timestamp = timestamp_ms.to_string();
    let signature = sign(secret, &timestamp, body);
    [
        (ACCOUNT_KEY_HEADER, account_key.to_owned()),
        (TIMESTAMP_HEADER, timestamp),
        (SIGNATURE_HEADER, signature),
    ]
}

pub fn now_ms() -> i64 {
    app::settings::store::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "app-signing-secret";
    const NOW: i64 = 1_700_000_000_000;

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Verifier::new(&secrets, Duration::from_secs(300)).unwrap()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn signed(secret: &str, ts: i64, body: &[u8]) -> HeaderMap {
        headers(&signed_headers(secret, "ACC", ts, body))
    }

    /// Vectors computed independently of ibex (Python's hmac), in ../shared/reference/signature-vectors.json.
    #[test]
    fn independent_vectors() {
        let vectors = [
            (
                "app-signing-secret",
                "1667951050990",
                "{\"email\":\"jane@example.com\"}",
                "3a4f548e68e5c376f5b6ea118c2c163753f8e8ef45a16c7c1f441875a3fd2ae9",
            ),
            (
                "app-signing-secret",
                "1689697378017",
                "{\"order_id\":152512}",
                "df2c5a8af3570fb8cc05d01a239fc73e989f979401086c580d56ca4d38031bdd",
            ),
            (
                "app-signing-secret",
                "1700000000000",
                "",
                "26c1517da741cff89ed80679e95fc07dd4693549d49f22618157c8961a9a2f79",
            ),
            (
                "another-secret-7f3a",
                "1700000000123",
                "{ \"order_id\": \"1212721005877-01\" }\n",
                "946a0e44c97ad2df0824f704b671a5cab0b804fca5d37c6e1459078121234019",
            ),
            (
                "another-secret-7f3a",
                "1700000000456",
                "{\"name\":\"Žana Ćorić\",\"city\":\"Zagreb\"}",
                "ceb09438c48521332fafdb6ecd603f94851a23e71b93631ede85ddffd3365479",
            ),
        ];
        for (secret, ts, body, expected) in vectors {
            assert_eq!(sign(secret, ts, body.as_bytes()), expected, "{body}");
            let h = headers(&[
                (ACCOUNT_KEY_HEADER, "ACC".into()),
                (TIMESTAMP_HEADER, ts.into()),
                (SIGNATURE_HEADER, expected.to_uppercase()),
            ]);
            let now: i64 = ts.parse().unwrap();
            assert!(
                verifier(&[secret]).verify(&h, body.as_bytes(), now).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn accepts_any_active_secret() {
        let v = verifier(&["old", "new"]);
        assert!(v.verify(&signed("new", NOW, b"{}"), b"{}", NOW).is_ok());
        assert!(v.verify(&signed("old", NOW, b"{}"), b"{}", NOW).is_ok());
        assert_eq!(
            v.verify(&signed("other", NOW, b"{}"), b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn window_applies_both_ways() {
        let v = verifier(&[SECRET]);
        let past = NOW - 301_000;
        assert!(matches!(
            v.verify(&signed(SECRET, past, b""), b"", NOW),
            Err(SignatureError::Stale { age_secs: 301, .. })
        ));
        let future = NOW + 301_000;
        assert!(matches!(
            v.verify(&signed(SECRET, future, b""), b"", NOW),
            Err(SignatureError::Future {
                ahead_secs: 301,
                ..
            })
        ));
        assert!(v
            .verify(&signed(SECRET, NOW - 299_000, b""), b"", NOW)
            .is_ok());
        assert!(v
            .verify(&signed(SECRET, NOW + 299_000, b""), b"", NOW)
            .is_ok());
    }

    #[test]
    fn names_each_malformed_part() {
        let v = verifier(&[SECRET]);
        let mut h = signed(SECRET, NOW, b"");
        h.remove(SIGNATURE_HEADER);
        assert_eq!(
            v.verify(&h, b"", NOW),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        let mut h = signed(SECRET, NOW, b"");
        h.insert(TIMESTAMP_HEADER, "soon".parse().unwrap());
        assert!(matches!(
            v.verify(&h, b"", NOW),
            Err(SignatureError::TimestampNotNumeric(_))
        ));
        let h = signed(SECRET, NOW / 1000, b"");
        assert_eq!(
            v.verify(&h, b"", NOW),
            Err(SignatureError::TimestampInSeconds(NOW / 1000))
        );
        let mut h = signed(SECRET, NOW, b"");
        h.insert(SIGNATURE_HEADER, "abc".parse().unwrap());
        assert_eq!(
            v.verify(&h, b"", NOW),
            Err(SignatureError::MalformedSignature)
        );
        let mut h = signed(SECRET, NOW, b"");
        h.insert(ACCOUNT_KEY_HEADER, "".parse().unwrap());
        assert_eq!(v.verify(&h, b"", NOW), Err(SignatureError::BadAccountKey));
    }

    #[test]
    fn the_signature_is_64_hex_digits_in_either_case() {
        let v = verifier(&[SECRET]);
        let mut h = signed(SECRET, NOW, b"");
        let good = h[SIGNATURE_HEADER].to_str().unwrap().to_owned();
        h.insert(SIGNATURE_HEADER, good.to_uppercase().parse().unwrap());
        assert!(v.verify(&h, b"", NOW).is_ok());
        for bad in [
            format!("0x{good}"),
            format!("0x{}", &good[2..]),
            format!("{good}00"),
            good[..62].to_owned(),
            format!("{}g", &good[..63]),
        ] {
            h.insert(SIGNATURE_HEADER, bad.parse().unwrap());
            assert_eq!(
                v.verify(&h, b"", NOW),
                Err(SignatureError::MalformedSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn body_must_be_byte_for_byte() {
        let v = verifier(&[SECRET]);
        let h = signed(SECRET, NOW, b"{\"a\":1}");
        assert_eq!(
            v.verify(&h, b"{\"a\": 1}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(&h, b"{\"a\":2}", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_empty_secrets() {
        assert_eq!(
            Verifier::new(&[], Duration::from_secs(1)).unwrap_err(),
            SecretError::None
        );
        assert_eq!(
            Verifier::new(&["a".into(), "".into()], Duration::from_secs(1)).unwrap_err(),
            SecretError::Empty(2)
        );
    }
}
