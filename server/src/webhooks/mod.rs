//! Lifecycle webhooks to the partner (docs/webhooks.md): events written to the outbox in the transaction of the
//! change they report (`app::settings::outbox`, `events`), delivered signed as Standard Webhooks (`signature`)
//! by a worker in each instance that shares the outbox with the others (`delivery`).

pub mod delivery;
pub mod events;
pub mod signature;

use std::time::Duration;

/// The partner's endpoint and how events are delivered to it (cli/config.rs, `IBEX_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where events are posted; checked against the partner egress policy at start-up and on every connection.
    pub url: http::Uri,
    pub secret: signature::Secret,
    /// How long an event is retried, from when it was queued, before it is given up (`dead`).
    pub retry_for: Duration,
    /// The wait before the first retry; each next one waits twice as long, up to `delivery::MAX_BACKOFF`.
    pub backoff: Duration,
    /// How long the endpoint has to answer one attempt.
    pub timeout: Duration,
    /// How long delivered and dead events are kept for `ibex webhooks list|replay`.
    pub keep: Duration,
    /// How often an idle worker looks for due events.
    pub poll: Duration,
    /// Deliver from this instance (`IBEX_WEBHOOK_WORKER`).
    pub worker: bool,
}

impl WebhookConfig {
    /// How long a claimed event is held: one attempt (bounded by `timeout`) and its outcome's write. Past it
    /// another instance may take the event over, which is how an instance killed mid-attempt loses nothing.
    pub fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}
