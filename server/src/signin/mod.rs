//! Signing in to the embedded pages with Exchange OAuth (one flow for the configuration page and the card), and
//! the card's server-side sessions.

pub mod card_sessions;
pub mod flows;
pub mod oauth;
