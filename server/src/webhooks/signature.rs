//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): `v1,` and the base64 of
//! HMAC-SHA256(secret, "`webhook-id`.`webhook-timestamp`.`body`"), the secret given as `whsec_` and base64.
//!
//! Written here with `hmac`, `sha2` and `base64`, which ibex already uses for Infobip's own signatures, rather
//! than with the `standardwebhooks` crate: ibex only signs, which is the three lines below, and that crate's
//! single release (1.0.1, March 2024) brings a second base64 (0.21) and a second SHA-256, while its `verify`,
//! as its source reads, compares with `zip` over the shorter of the two signatures (so `v1,` with an empty or
//! cut signature passes) on a clock that cannot be injected. What matters is that a partner's own Standard
//! Webhooks library accepts what ibex sends: the test below pins the specification's published vector.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key bytes of a `whsec_…` secret. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("IBEX_WEBHOOK_SECRET must start with `whsec_` (Standard Webhooks: `whsec_` and the base64 of the key)")]
    Prefix,
    #[error("IBEX_WEBHOOK_SECRET: the part after `whsec_` is not base64")]
    Base64,
    #[error("IBEX_WEBHOOK_SECRET holds {0} bytes; Standard Webhooks keys are 24 to 64 random bytes (`whsec_$(openssl rand -base64 32)`)")]
    Length(usize),
}

impl Secret {
    /// `whsec_` and base64 of 24 to 64 bytes, the range the specification asks for: an empty or short key
    /// would still make an HMAC, one anybody could forge.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SecretError::Prefix)?;
        let key = B64.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret(key))
    }
}

/// The `webhook-signature` value for one attempt.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // An HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published test vector (the reference libraries' `sign` test).
    #[test]
    fn the_standard_webhooks_test_vector_is_reproduced() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Any change of id, time or body changes it.
        for (id, ts, body) in [
            (
                "msg_p5jXN8AQM9LWM0D4loKWxJeK",
                1614265330,
                &br#"{"test": 2432232314}"#[..],
            ),
            (
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265331,
                br#"{"test": 2432232314}"#,
            ),
            (
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test":2432232314}"#,
            ),
        ] {
            assert_ne!(
                sign(&secret, id, ts, body),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            );
        }
    }

    #[test]
    fn secrets_must_be_standard_webhooks_keys() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::Base64));
        assert_eq!(Secret::parse("whsec_"), Err(SecretError::Length(0)));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
        let secret = Secret::parse(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
