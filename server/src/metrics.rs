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
        Metrics {
            registry,
            calls,
            call_latency,
            partner_latency,
        }
    }

    pub fn observe_call(&self, function: &str, status: u16, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                function: function.to_owned(),
                status,
            })
            .inc();
        self.call_latency
            .get_or_create(&FunctionLabels {
                function: function.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_partner_call(&self, function: &str, ok: bool, elapsed: Duration) {
        self.partner_latency
            .get_or_create(&PartnerLabels {
                function: function.to_owned(),
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
