//! Prometheus metrics for `GET /metrics`: calls by function and status, their latency, and the partner calls'
//! latency, so a slow partner and a slow ibex can be told apart.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabels {
    function: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    direction: String,
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_latency: Histograms<FunctionLabels>,
    partner_latency: Histograms<PartnerLabels>,
    sync_records: Family<SyncLabels, Counter>,
    sync_throttled: Counter,
    sync_queue: prometheus_client::metrics::gauge::Gauge,
    /// Shared with the activity recorder, which counts into it.
    pub activity_dropped: Counter,
    cache_entries: prometheus_client::metrics::gauge::Gauge,
    cache_bytes: prometheus_client::metrics::gauge::Gauge,
    webhook_attempts: Family<WebhookLabels, Counter>,
    webhooks_pending: prometheus_client::metrics::gauge::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ibex");
        let calls = Family::<CallLabels, Counter>::default();
        let call_latency: Histograms<FunctionLabels> =
            Family::new_with_constructor(latency_histogram);
        let partner_latency: Histograms<PartnerLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "function_calls",
            "Signed function calls by function and HTTP status",
            calls.clone(),
        );
        registry.register(
            "function_call_duration_seconds",
            "Time to answer a signed function call, partner call included",
            call_latency.clone(),
        );
        registry.register(
            "partner_call_duration_seconds",
            "Time the partner API took, retries included",
            partner_latency.clone(),
        );
        let sync_records = Family::<SyncLabels, Counter>::default();
        let sync_throttled = Counter::default();
        let sync_queue = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "sync_records",
            "People sync records by direction and outcome (read, created, updated, unchanged, failed), counted when a page is committed",
            sync_records.clone(),
        );
        registry.register(
            "sync_people_throttled",
            "People answers 429 Too Many Requests met by sync",
            sync_throttled.clone(),
        );
        registry.register(
            "sync_queue_depth",
            "Sync runs waiting to be claimed (queued, or paused by an outage)",
            sync_queue.clone(),
        );
        let cache_entries = prometheus_client::metrics::gauge::Gauge::default();
        let cache_bytes = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "settings_cache_accounts",
            "Accounts whose settings are in this instance's cache",
            cache_entries.clone(),
        );
        registry.register(
            "settings_cache_bytes",
            "What the cached settings are reckoned to hold, against the cap IBEX_SETTINGS_CACHE_MB",
            cache_bytes.clone(),
        );
        let activity_dropped = Counter::default();
        registry.register(
            "activity_dropped",
            "Calls the activity view did not count: over IBEX_ACTIVITY_MAX_ACCOUNTS accounts in memory, or naming an unproven account",
            activity_dropped.clone(),
        );
        let webhook_attempts = Family::<WebhookLabels, Counter>::default();
        let webhooks_pending = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome: delivered, failed (retried or not), dead (a failure that ended the event's retry window)",
            webhook_attempts.clone(),
        );
        registry.register(
            "webhook_outbox_pending",
            "Webhook events not yet delivered nor given up, on the whole database (every instance's)",
            webhooks_pending.clone(),
        );
        Metrics {
            registry,
            activity_dropped,
            webhook_attempts,
            webhooks_pending,
            cache_entries,
            cache_bytes,
            calls,
            call_latency,
            partner_latency,
            sync_records,
            sync_throttled,
            sync_queue,
        }
    }

    /// The handles of one function's series, created once at start-up. Building a label set holds the
    /// function's name as a `String`, so looking series up on every call cost allocations and hashing; with
    /// the handles in hand a call only counts. The series also exist (at zero) from the start, as Prometheus
    /// prefers.
    pub fn function(&self, name: &str) -> FunctionMetrics {
        let partner = |outcome| {
            self.partner_latency
                .get_or_create(&PartnerLabels {
                    function: name.to_owned(),
                    outcome,
                })
                .clone()
        };
        FunctionMetrics {
            name: name.to_owned(),
            calls: self.calls.clone(),
            ok_calls: self
                .calls
                .get_or_create(&CallLabels {
                    function: name.to_owned(),
                    status: 200,
                })
                .clone(),
            latency: self
                .call_latency
                .get_or_create(&FunctionLabels {
                    function: name.to_owned(),
                })
                .clone(),
            partner_ok: partner("ok"),
            partner_error: partner("error"),
        }
    }

    /// One committed page of a sync run.
    pub fn observe_sync_page(&self, direction: &str, counts: &crate::sync::runs::Counts) {
        for (outcome, n) in [
            ("read", counts.read),
            ("created", counts.created),
            ("updated", counts.updated),
            ("unchanged", counts.unchanged),
            ("failed", counts.failed),
            ("skipped", counts.skipped),
            ("tagged", counts.tagged),
            ("deleted", counts.deleted),
        ] {
            self.sync_records
                .get_or_create(&SyncLabels {
                    direction: direction.to_owned(),
                    outcome,
                })
                .inc_by(u64::try_from(n).unwrap_or(0));
        }
    }

    pub fn sync_throttled(&self) {
        self.sync_throttled.inc();
    }

    pub fn set_sync_queue(&self, depth: i64) {
        self.sync_queue.set(depth);
    }

    /// One webhook delivery attempt's outcome (`webhooks::delivery`).
    pub fn observe_webhook(&self, outcome: &'static str) {
        self.webhook_attempts
            .get_or_create(&WebhookLabels { outcome })
            .inc();
    }

    pub fn set_webhooks_pending(&self, pending: i64) {
        self.webhooks_pending.set(pending);
    }

    pub fn set_settings_cache(&self, (accounts, bytes): (u64, u64)) {
        self.cache_entries
            .set(i64::try_from(accounts).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One function's series (see [`Metrics::function`]). Clones share the same counters.
#[derive(Clone, Debug)]
pub struct FunctionMetrics {
    name: String,
    calls: Family<CallLabels, Counter>,
    ok_calls: Counter,
    latency: Histogram,
    partner_ok: Histogram,
    partner_error: Histogram,
}

impl FunctionMetrics {
    pub fn observe_call(&self, status: u16, elapsed: Duration) {
        if status == 200 {
            self.ok_calls.inc();
        } else {
            self.calls
                .get_or_create(&CallLabels {
                    function: self.name.clone(),
                    status,
                })
                .inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    pub fn observe_partner_call(&self, ok: bool, elapsed: Duration) {
        let histogram = if ok {
            &self.partner_ok
        } else {
            &self.partner_error
        };
        histogram.observe(elapsed.as_secs_f64());
    }
}
