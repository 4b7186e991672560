//! Secrets at rest: AES-256-GCM under a named key, so keys can be rotated by adding a new one in front while the
//! old ones still open what they sealed. The account key and field are bound in as associated data: a sealed
//! value copied to another account or field does not open.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("IBEX_ENCRYPTION_KEY is empty")]
    Empty,
    #[error("IBEX_ENCRYPTION_KEY entry `{id}` is not base64 of 32 bytes")]
    BadKey { id: String },
    #[error("IBEX_ENCRYPTION_KEY names key id `{0}` twice")]
    Duplicate(String),
    #[error("IBEX_ENCRYPTION_KEY key id `{0}` must be letters, digits, `-` or `_`")]
    BadId(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("stored secret is not in the sealed format")]
    Malformed,
    #[error(
        "stored secret was sealed with key id `{0}`, which IBEX_ENCRYPTION_KEY no longer holds"
    )]
    UnknownKey(String),
    #[error(
        "stored secret does not open with key `{0}` (wrong key, or the value was altered or moved)"
    )]
    Open(String),
}

pub struct KeyRing {
    primary: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("primary", &self.primary)
            .field("ids", &ids)
            .finish()
    }
}

const FORMAT: &str = "v1";

impl KeyRing {
    /// `id:base64,id:base64,…` (the first seals) or a single bare base64 key, whose id is `default`.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut primary = None;
        let mut keys = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, encoded) = entry.split_once(':').unwrap_or(("default", entry));
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyError::BadId(id.to_owned()));
            }
            let bytes = B64
                .decode(encoded)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::BadKey { id: id.to_owned() })?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| KeyError::BadKey { id: id.to_owned() })?;
            if keys.insert(id.to_owned(), cipher).is_some() {
                return Err(KeyError::Duplicate(id.to_owned()));
            }
            primary.get_or_insert_with(|| id.to_owned());
        }
        let primary = primary.ok_or(KeyError::Empty)?;
        Ok(KeyRing { primary, keys })
    }

    /// A fresh key in the `id:base64` form `parse` reads.
    pub fn generate_spec(id: &str) -> String {
        let key = Aes256Gcm::generate_key(OsRng);
        format!("{id}:{}", B64.encode(key))
    }

    /// The id of the key that seals (the first of `IBEX_ENCRYPTION_KEY`).
    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let cipher = self
            .keys
            .get(&self.primary)
            .ok_or_else(|| CryptoError::UnknownKey(self.primary.clone()))?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open(self.primary.clone()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{FORMAT}:{}:{}", self.primary, B64.encode(blob)))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(FORMAT), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let cipher = self
            .keys
            .get(id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let blob = B64.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < 12 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(12);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open(id.to_owned()))?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }
}

/// The key id a sealed value names (`v1:ID:…`); `None` when it is not in the sealed format.
pub fn sealed_with(sealed: &str) -> Option<&str> {
    let mut parts = sealed.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(FORMAT), Some(id), Some(_)) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_binds_aad() {
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let sealed = ring.seal("hunter2", b"acct\0api_key").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(ring.open(&sealed, b"acct\0api_key").unwrap(), "hunter2");
        assert_eq!(
            ring.open(&sealed, b"other\0api_key"),
            Err(CryptoError::Open("k1".into()))
        );
    }

    #[test]
    fn rotation_keeps_old_keys_readable() {
        let old = KeyRing::generate_spec("old");
        let sealed = KeyRing::parse(&old).unwrap().seal("s", b"a").unwrap();
        let rotated = KeyRing::parse(&format!("{},{old}", KeyRing::generate_spec("new"))).unwrap();
        assert_eq!(rotated.open(&sealed, b"a").unwrap(), "s");
        assert!(rotated.seal("s", b"a").unwrap().starts_with("v1:new:"));
        let without_old = KeyRing::parse(&KeyRing::generate_spec("new")).unwrap();
        assert_eq!(
            without_old.open(&sealed, b"a"),
            Err(CryptoError::UnknownKey("old".into()))
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyError::Empty);
        assert!(matches!(
            KeyRing::parse("k:c2hvcnQ=").unwrap_err(),
            KeyError::BadKey { .. }
        ));
        let k = KeyRing::generate_spec("a");
        assert_eq!(
            KeyRing::parse(&format!("{k},{k}")).unwrap_err(),
            KeyError::Duplicate("a".into())
        );
        let bare = k.trim_start_matches("a:");
        assert!(KeyRing::parse(bare).is_ok());
    }
}
