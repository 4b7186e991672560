//! The delivery worker: claims due events from the outbox (`Outbox::claim`, leased, shared by every instance on
//! the database), posts each signed to the partner's endpoint through the partner client (so the partner egress
//! policy applies to the connection, DNS answers included), and records the outcome under the lease: delivered,
//! retried after an exponential backoff with jitter, or given up once the retry window has passed.

use super::signature::sign;
use super::WebhookConfig;
use crate::ops::metrics::Metrics;
use crate::partner::{PartnerClient, PartnerRequest};
use crate::state::AppState;
use app::settings::outbox::{Outbox, OutboxEvent};
use app::settings::store::{now_ms, StoreError};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest wait between two attempts: past an hour, a partner that is back is not kept waiting longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Events one instance sends at once: a slow endpoint holds one lane, not the whole outbox.
const LANES: usize = 4;

/// How often old delivered and dead events are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The longest last error kept per event (what the endpoint answered, cut).
const MAX_ERROR_BYTES: usize = 512;

#[derive(Clone)]
pub struct Deliverer {
    pub outbox: Outbox,
    partner: PartnerClient,
    config: Arc<WebhookConfig>,
    metrics: Arc<Metrics>,
    /// This instance's name in leases, unique per process start (as the sync worker's).
    pub owner: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Failed; tried again at this time (ms).
    Retry(i64),
    /// Failed, and the retry window has passed.
    Dead,
    /// The lease was taken over meanwhile: the outcome is the new holder's to record.
    LostLease,
}

/// The worker's tasks; dropping it stops them (an instance's end, for tests).
pub struct Running(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Deliverer {
    /// The instance's worker, when a webhook endpoint is configured.
    pub fn for_instance(state: &AppState) -> Option<Self> {
        let config = state.webhooks.clone()?;
        Some(Deliverer {
            outbox: Outbox::new(state.settings.store().clone()),
            partner: state.partner.clone(),
            config,
            metrics: state.metrics.clone(),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
        })
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease().as_millis()).unwrap_or(i64::MAX)
    }

    /// Works until stopped: each lane claims, sends and records, and sleeps when nothing is due; the first lane
    /// also keeps the pending gauge and prunes.
    pub fn spawn(self) -> Running {
        let tasks = (0..LANES)
            .map(|lane| {
                let worker = self.clone();
                tokio::spawn(async move {
                    let (mut pruned, mut kept): (Option<Instant>, Option<Instant>) = (None, None);
                    loop {
                        let worked = match worker.deliver_once().await {
                            Ok(found) => found.is_some(),
                            Err(e) => {
                                tracing::warn!("webhook delivery: {e}");
                                false
                            }
                        };
                        // Once a poll interval, busy or idle: a busy outbox is when the gauge matters.
                        if lane == 0 && kept.is_none_or(|at| at.elapsed() >= worker.config.poll) {
                            kept = Some(Instant::now());
                            worker.housekeeping(&mut pruned).await;
                        }
                        if !worked {
                            tokio::time::sleep(worker.config.poll).await;
                        }
                    }
                })
            })
            .collect();
        Running(tasks)
    }

    async fn housekeeping(&self, pruned: &mut Option<Instant>) {
        if let Ok(pending) = self.outbox.pending().await {
            self.metrics.set_webhooks_pending(pending);
        }
        if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            *pruned = Some(Instant::now());
            let keep = i64::try_from(self.config.keep.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = self.outbox.prune(now_ms().saturating_sub(keep)).await {
                tracing::warn!("old webhook events not pruned: {e}");
            }
        }
    }

    /// Claims one due event, if there is one, and makes one attempt at it.
    pub async fn deliver_once(&self) -> Result<Option<(OutboxEvent, Attempt)>, StoreError> {
        let Some(event) = self.outbox.claim(&self.owner, self.lease_ms()).await? else {
            return Ok(None);
        };
        let outcome = match self.send(&event).await {
            Ok(()) => {
                if self.outbox.delivered(event.seq, &self.owner).await? {
                    self.metrics.observe_webhook("delivered");
                    Attempt::Delivered
                } else {
                    Attempt::LostLease
                }
            }
            Err(why) => {
                let why = cut(&why, MAX_ERROR_BYTES);
                let retry_at = next_attempt(&self.config, &event, now_ms());
                self.metrics.observe_webhook("failed");
                if !self
                    .outbox
                    .failed(event.seq, &self.owner, why, retry_at)
                    .await?
                {
                    Attempt::LostLease
                } else if let Some(at) = retry_at {
                    tracing::info!(event = %event.event_id, account = %event.account_key, attempts = event.attempts, "webhook attempt failed, retried later: {why}");
                    Attempt::Retry(at)
                } else {
                    self.metrics.observe_webhook("dead");
                    tracing::warn!(event = %event.event_id, account = %event.account_key, attempts = event.attempts, "webhook event given up after its retry window: {why}");
                    Attempt::Dead
                }
            }
        };
        Ok(Some((event, outcome)))
    }

    /// One signed POST of the event's stored body; `Err` says why it was not taken (no secret in it: the
    /// partner client never shows the URL, and the answer's start only).
    async fn send(&self, event: &OutboxEvent) -> Result<(), String> {
        let timestamp = now_ms() / 1000;
        let body = Bytes::from(event.payload.clone());
        let signature = sign(&self.config.secret, &event.event_id, timestamp, &body);
        let mut headers = HeaderMap::new();
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| format!("{text:?} cannot be sent in a header"))
        };
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("webhook-id", value(&event.event_id)?);
        headers.insert("webhook-timestamp", value(&timestamp.to_string())?);
        headers.insert("webhook-signature", value(&signature)?);
        let request = PartnerRequest {
            method: http::Method::POST,
            uri: self.config.url.clone(),
            headers,
            body: Some(body),
            // Sent once per attempt: the next attempt is the outbox's, after its backoff.
            idempotent: false,
            // The operator configured this endpoint, no account's setting: its answer may be quoted.
            echo_answer: true,
        };
        // One attempt, any 2xx accepted whatever its body, as the partner client's probe does.
        self.partner
            .probe(&request, self.config.timeout)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn cut(text: &str, max: usize) -> &str {
    crate::sync::runs::cut(text, max).0
}

/// When to try again after `event`'s latest attempt failed at `now`: the backoff doubles with each attempt (up
/// to `MAX_BACKOFF`) less a random part of up to half of it, so events that failed together (an endpoint that
/// was down) do not all come back at the same moment. `None` once past the retry window.
pub fn next_attempt(config: &WebhookConfig, event: &OutboxEvent, now: i64) -> Option<i64> {
    let exponent = u32::try_from(event.attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let wait = config
        .backoff
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF);
    let wait = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    let jitter = rand::thread_rng().gen_range(0..=wait / 2);
    let at = now.saturating_add(wait - jitter);
    let window = i64::try_from(config.retry_for.as_millis()).unwrap_or(i64::MAX);
    (at <= event.queued_at.saturating_add(window)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::signature::Secret;

    fn config(backoff_ms: u64, retry_for_secs: u64) -> WebhookConfig {
        WebhookConfig {
            url: http::Uri::from_static("https://hooks.example/ibex"),
            secret: Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            retry_for: Duration::from_secs(retry_for_secs),
            backoff: Duration::from_millis(backoff_ms),
            timeout: Duration::from_secs(10),
            keep: Duration::from_secs(7 * 86400),
            poll: Duration::from_secs(1),
            worker: true,
        }
    }

    fn event(attempts: i64, queued_at: i64) -> OutboxEvent {
        OutboxEvent {
            seq: 1,
            event_id: "msg_1".into(),
            account_key: "A".into(),
            event_type: "account.configured".into(),
            payload: "{}".into(),
            state: "pending".into(),
            attempts,
            created_at: queued_at,
            queued_at,
            next_attempt_at: queued_at,
            last_error: None,
            delivered_at: None,
        }
    }

    fn waits(config: &WebhookConfig, attempts: i64, now: i64) -> Option<i64> {
        next_attempt(config, &event(attempts, 0), now).map(|at| at - now)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_window() {
        let c = config(5000, 86400);
        for attempts in 1..=6 {
            let full = 5000 * 2i64.pow(u32::try_from(attempts - 1).unwrap());
            for _ in 0..50 {
                let wait = waits(&c, attempts, 1000).unwrap();
                assert!(
                    (full / 2..=full).contains(&wait),
                    "attempt {attempts}: {wait}"
                );
            }
        }
        // Never more than an hour between attempts, however many there were.
        assert!(waits(&c, 40, 1000).unwrap() <= 3_600_000);
        // Past the day, given up.
        assert_eq!(waits(&c, 3, 86_400_000), None);
        assert!(waits(&c, 3, 86_400_000 - 60_000).is_some());
    }
}
