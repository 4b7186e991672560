//! ibex: an Infobip Exchange app server. One module per concern; the signed request path reads top-down in
//! `invoke`.

#![recursion_limit = "256"]

pub mod answer;
pub mod calls;
pub mod card;
pub mod card_sessions;
pub mod commands;
pub mod config;
pub mod errors;
pub mod functions;
pub mod infobip;
pub mod inputs;
pub mod invoke;
pub mod manifest;
pub mod mapping;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod partner;
pub mod probe;
pub mod routes;
pub mod signature;
pub mod signed;
pub mod state;
