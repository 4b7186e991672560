//! The token Conversations' Custom cards send in their Authorization header. It is a bearer credential for one
//! account's card data, so it is random (256 bits), shown once when issued, and kept only as a digest: a copy of
//! the database gives nobody a working token. A plain SHA-256 serves as the digest because the token is random,
//! not a password a person chose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Marks the string as ibex's, so a token pasted in the wrong place (or found in a log) is recognisable.
const PREFIX: &str = "ibexcc_";

/// A freshly issued token: the text for the admin (once), and what the store keeps.
pub struct Issued {
    pub token: String,
    pub digest: String,
    /// The last characters, for "the token ending in …".
    pub hint: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

pub fn issue() -> Issued {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", B64.encode(bytes));
    let hint = token[token.len() - 4..].to_owned();
    Issued {
        digest: digest(&token),
        token,
        hint,
    }
}

/// What the store looks a presented token up by.
pub fn digest(token: &str) -> String {
    B64.encode(Sha256::digest(token.as_bytes()))
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case); `None` for anything else.
pub fn from_authorization(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(PREFIX)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_kept_as_digests() {
        let (a, b) = (issue(), issue());
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(PREFIX) && a.token.len() > 40);
        assert_eq!(a.digest, digest(&a.token));
        assert!(!a.digest.contains(&a.token) && a.token.ends_with(&a.hint));
        assert!(!format!("{a:?}").contains(&a.token));
    }

    #[test]
    fn only_bearer_tokens_of_ibex_are_read() {
        let t = issue().token;
        assert_eq!(from_authorization(&format!("Bearer {t}")), Some(t.as_str()));
        assert_eq!(
            from_authorization(&format!("bearer  {t} ")),
            Some(t.as_str())
        );
        assert_eq!(from_authorization(&format!("Basic {t}")), None);
        assert_eq!(from_authorization("Bearer someone-elses-token"), None);
        assert_eq!(from_authorization(&t), None);
    }
}
