//! Who is using an embedded page. Exchange frames ibex on another site, where browsers drop third-party cookies,
//! so the session is a token carried by the page itself and sent with every server-function call: sealed
//! (AES-GCM, under the settings encryption key ring) so it can be neither read nor forged, and short-lived.
//! Because it never travels in a cookie, a cross-site form cannot ride on it (no CSRF).

use serde::{Deserialize, Serialize};

/// What the OAuth flow taught us: the Infobip account and user behind the configuration page. Only the
/// configuration page's sign-in (from its own launch, `/settings?state=…`, or a renewal) makes one; the card's
/// sign-in makes a card session on the server instead, which no configuration server function accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account_key: String,
    pub user_key: String,
    pub username: String,
    pub expires_at: i64,
    /// What the admin role (`IBEX_ADMIN_ROLE`) made of Infobip's token answer at sign-in: `None` when no role is
    /// configured or the answer carried no `roles` or `groups` (then the account's admin list decides).
    #[serde(default)]
    pub admin_role: Option<bool>,
}

/// Carried through the authorization server in `state`: the PKCE verifier stays secret (sealed), and several
/// ibex instances need no shared store to finish a flow another one started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthState {
    pub verifier: String,
    pub next: String,
    /// The conversation the card was opened for, carried through the authorization server.
    #[serde(default)]
    pub conversation: Option<String>,
    pub attempt: u32,
    pub expires_at: i64,
}

#[cfg(feature = "ssr")]
mod sealed {
    use super::*;
    use crate::settings::crypto::KeyRing;

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum TokenError {
        #[error("the sign-in is not valid; open the page again from Infobip")]
        Invalid,
        #[error("the sign-in has expired; reload the page")]
        Expired,
    }

    fn seal<T: Serialize>(value: &T, purpose: &[u8], keys: &KeyRing) -> Result<String, TokenError> {
        let json = serde_json::to_string(value).map_err(|_| TokenError::Invalid)?;
        keys.seal(&json, purpose).map_err(|_| TokenError::Invalid)
    }

    fn open<T: for<'de> Deserialize<'de>>(
        token: &str,
        purpose: &[u8],
        keys: &KeyRing,
    ) -> Result<T, TokenError> {
        let json = keys.open(token, purpose).map_err(|_| TokenError::Invalid)?;
        serde_json::from_str(&json).map_err(|_| TokenError::Invalid)
    }

    const SESSION: &[u8] = b"ibex-session-v1";
    const STATE: &[u8] = b"ibex-oauth-state-v1";

    impl Session {
        pub fn seal(&self, keys: &KeyRing) -> Result<String, TokenError> {
            seal(self, SESSION, keys)
        }

        pub fn open(token: &str, keys: &KeyRing, now_ms: i64) -> Result<Self, TokenError> {
            let session: Session = open(token, SESSION, keys)?;
            if session.expires_at <= now_ms {
                return Err(TokenError::Expired);
            }
            Ok(session)
        }
    }

    impl OAuthState {
        pub fn seal(&self, keys: &KeyRing) -> Result<String, TokenError> {
            seal(self, STATE, keys)
        }

        pub fn open(token: &str, keys: &KeyRing, now_ms: i64) -> Result<Self, TokenError> {
            let state: OAuthState = open(token, STATE, keys)?;
            if state.expires_at <= now_ms {
                return Err(TokenError::Expired);
            }
            Ok(state)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sessions_are_sealed_bound_to_purpose_and_expire() {
            let keys = KeyRing::parse(&KeyRing::generate_spec("k")).unwrap();
            let session = Session {
                account_key: "ACC".into(),
                user_key: "U".into(),
                username: "ana".into(),
                expires_at: 2_000,
                admin_role: None,
            };
            let token = session.seal(&keys).unwrap();
            assert!(!token.contains("ACC"));
            assert_eq!(Session::open(&token, &keys, 1_000), Ok(session));
            assert_eq!(
                Session::open(&token, &keys, 2_000),
                Err(TokenError::Expired)
            );
            // a sealed OAuth state is not a session, and a tampered token opens as nothing
            assert_eq!(
                OAuthState::open(&token, &keys, 1_000),
                Err(TokenError::Invalid)
            );
            let mut tampered = token.clone();
            tampered.pop();
            tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
            assert_eq!(
                Session::open(&tampered, &keys, 1_000),
                Err(TokenError::Invalid)
            );
        }
    }
}

#[cfg(feature = "ssr")]
pub use sealed::TokenError;
