//! ibex: an Infobip Exchange app server. A folder per concern (signed endpoints, partner client, sign-in,
//! operations, command line); the signed request path reads top-down in `signed::invoke`.

#![recursion_limit = "256"]

pub mod activity;
pub mod card;
pub mod cli;
pub mod errors;
pub mod infobip;
pub mod manifest;
pub mod ops;
pub mod partner;
pub mod routes;
pub mod signed;
pub mod signin;
pub mod state;
pub mod sync;
pub mod webhooks;
