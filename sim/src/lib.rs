//! The simulator's parts, usable in-process by tests as well as through the `ibex-sim` binary.

pub mod conversations;
pub mod exchange;
pub mod people;
pub mod proxy;
pub mod shop;
pub mod webhooks;
