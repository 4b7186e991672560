//! "Test connection": the configuration page asks the server to try the partner API with the values on screen.
//! The app crate knows only this interface; the server, which owns the partner HTTP client, implements it and
//! puts it in the Leptos context.

use super::FieldError;
use serde::{Deserialize, Serialize};

impl ConnectionCheck {
    /// One line for the audit log.
    pub fn summary(&self) -> String {
        match self {
            ConnectionCheck::Passed { status, elapsed_ms } => {
                format!("passed: HTTP {status} in {elapsed_ms} ms")
            }
            ConnectionCheck::Failed { message } => format!("failed: {message}"),
            ConnectionCheck::Invalid { errors } => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid, not sent: {}", fields.join(", "))
            }
        }
    }
}

/// What the admin sees after pressing "Test connection".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionCheck {
    /// The probe request got a 2xx answer.
    Passed { status: u16, elapsed_ms: u64 },
    /// The partner could not be reached, refused the credentials or failed; `message` says what to check.
    Failed { message: String },
    /// The values on screen do not pass validation, so nothing was sent.
    Invalid { errors: Vec<FieldError> },
}

#[cfg(feature = "ssr")]
pub use server_side::ConnectionProbe;

#[cfg(feature = "ssr")]
mod server_side {
    use super::ConnectionCheck;
    use crate::settings::ResolvedSettings;
    use std::future::Future;
    use std::pin::Pin;

    pub trait ConnectionProbe: Send + Sync + 'static {
        /// Sends the app definition's probe request with these settings. Never retried, never cached.
        fn check<'a>(
            &'a self,
            settings: &'a ResolvedSettings,
        ) -> Pin<Box<dyn Future<Output = ConnectionCheck> + Send + 'a>>;

        /// The host (and port) the probe goes to with these settings, for the audit log.
        fn destination(&self, settings: &ResolvedSettings) -> Option<String>;
    }
}
