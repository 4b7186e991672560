//! What happens to each account's calls, for the configuration page's activity view and `ibex activity`: calls
//! per surface and function, failures by error code, time taken, the last failed calls, and whether the
//! account's credentials work (docs/activity.md).
//!
//! Recorded off the call's path: every call adds to counters in memory (`recorder`), and a writer task
//! (`flush`) adds them to the settings database in batches (`store`); the page and the command line read the
//! database (`view`), so every instance sharing it sees the same figures.

pub mod flush;
pub mod recorder;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

/// Where a call came from, as the view groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Surface {
    /// A signed call: an Answers block or a Moments Flow element (their requests cannot be told apart).
    Signed,
    /// The Conversations context card (the framed page).
    Card,
    /// Conversations' Custom cards webhook.
    CustomCard,
    /// People sync's calls to the partner and to People.
    Sync,
}

impl Surface {
    pub const ALL: [Surface; 4] = [
        Surface::Signed,
        Surface::Card,
        Surface::CustomCard,
        Surface::Sync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Signed => "signed",
            Surface::Card => "card",
            Surface::CustomCard => "custom_card",
            Surface::Sync => "sync",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Surface::Signed => "Answers or Flow",
            Surface::Card => "Context card",
            Surface::CustomCard => "Custom card",
            Surface::Sync => "People sync",
        }
    }

    pub fn parse(text: &str) -> Option<Surface> {
        Surface::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Whose API a call reached when it succeeded: what its success says about which credentials work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Partner,
    People,
}

/// One finished call, as the recorder counts it. Nothing of its body, inputs or answer is here: the view can
/// never show what it never had.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    pub account: &'a str,
    pub surface: Surface,
    pub function: &'a str,
    pub elapsed: Duration,
    /// The error code the caller was answered with; `None` when the call succeeded.
    pub code: Option<&'static str>,
    /// The partner's (or People's) HTTP status when it answered with an error.
    pub status: Option<u16>,
    pub request_id: &'a str,
    /// Whether the account key was proven (see `Recorder::record`).
    pub verified: bool,
    pub upstream: Upstream,
}

impl<'a> CallRecord<'a> {
    /// A call of a proven account (a card session, a card token, the sync worker) that ended with `error`, or
    /// succeeded; no request id (only signed calls bring Infobip's).
    pub fn of(
        account: &'a str,
        surface: Surface,
        function: &'a str,
        elapsed: Duration,
        error: Option<&crate::errors::ApiError>,
    ) -> Self {
        CallRecord {
            account,
            surface,
            function,
            elapsed,
            code: error.map(|e| e.status_and_code().1),
            status: error.and_then(crate::errors::ApiError::upstream_status),
            request_id: "",
            verified: true,
            upstream: Upstream::Partner,
        }
    }
}

/// Latency buckets: up to 1 ms, then each upper bound √2 times the one before (up to 11.6 s), then the rest.
pub const LATENCY_BUCKETS: usize = 29;

/// The upper bound of bucket `k` in milliseconds (`None` for the last, unbounded one).
pub fn bucket_bound_ms(k: usize) -> Option<f64> {
    (k + 1 < LATENCY_BUCKETS).then(|| std::f64::consts::SQRT_2.powi(k as i32))
}

pub fn latency_bucket(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    if ms <= 1.0 {
        return 0;
    }
    // log base √2 of ms, rounded up: bucket k holds (√2^(k-1), √2^k].
    let k = (2.0 * ms.log2()).ceil() as usize;
    k.min(LATENCY_BUCKETS - 1)
}

/// The `q` quantile (0..1) of calls counted in `buckets`, in milliseconds, interpolated within its bucket;
/// `None` without calls. A quantile in the last bucket is reported as that bucket's lower bound.
pub fn quantile_ms(buckets: &[i64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).max(1.0);
    let mut seen = 0.0;
    for (k, &count) in buckets.iter().enumerate() {
        let count = count as f64;
        if count > 0.0 && seen + count >= rank {
            let lower = if k == 0 {
                0.0
            } else {
                std::f64::consts::SQRT_2.powi(k as i32 - 1)
            };
            let Some(upper) = bucket_bound_ms(k) else {
                return Some(lower);
            };
            return Some(lower + (upper - lower) * ((rank - seen) / count));
        }
        seen += count;
    }
    None
}

/// The activity options (cli/config.rs).
#[derive(Debug, Clone)]
pub struct ActivityConfig {
    /// How often the counters are written to the database.
    pub flush_every: Duration,
    /// How long hourly rows (the day's and week's views) are kept.
    pub retention: Duration,
    /// Accounts counted in memory at once; calls of further accounts are not counted (`ibex_activity_dropped`).
    pub max_accounts: usize,
    /// Off (`IBEX_ACTIVITY_RECORDING=false`): nothing is counted, for a benchmark of the recording's own cost.
    pub recording: bool,
}

impl ActivityConfig {
    pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
    pub const RETENTION_DAYS: u64 = 8;
    pub const MAX_ACCOUNTS: usize = 100_000;
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            flush_every: Self::FLUSH_EVERY,
            retention: Duration::from_secs(Self::RETENTION_DAYS * 24 * 3600),
            max_accounts: Self::MAX_ACCOUNTS,
            recording: true,
        }
    }
}

/// The handle every surface records its calls with.
#[derive(Clone)]
pub struct Activity {
    pub recorder: Arc<recorder::Recorder>,
    pub config: ActivityConfig,
}

impl Activity {
    /// `dropped` counts the calls not counted (`ops::metrics`).
    pub fn new(
        config: ActivityConfig,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Activity {
            recorder: Arc::new(recorder::Recorder::new(config.max_accounts, dropped)),
            config,
        }
    }

    pub fn record(&self, call: &CallRecord<'_>) {
        if self.config.recording {
            self.recorder.record(call, app::settings::store::now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_grow_by_root_two_and_quantiles_fall_inside_them() {
        assert_eq!(latency_bucket(Duration::from_micros(300)), 0);
        assert_eq!(latency_bucket(Duration::from_millis(1)), 0);
        assert_eq!(latency_bucket(Duration::from_micros(1400)), 1);
        assert_eq!(latency_bucket(Duration::from_micros(1500)), 2);
        assert_eq!(latency_bucket(Duration::from_millis(2)), 2);
        assert_eq!(latency_bucket(Duration::from_secs(60)), LATENCY_BUCKETS - 1);
        let mut buckets = [0i64; LATENCY_BUCKETS];
        for ms in [3u64, 3, 3, 3, 3, 3, 3, 3, 3, 500] {
            buckets[latency_bucket(Duration::from_millis(ms))] += 1;
        }
        let p50 = quantile_ms(&buckets, 0.5).unwrap();
        assert!((2.8..=4.0).contains(&p50), "{p50}");
        let p99 = quantile_ms(&buckets, 0.99).unwrap();
        assert!((362.0..=512.0).contains(&p99), "{p99}");
        assert_eq!(quantile_ms(&[0; LATENCY_BUCKETS], 0.5), None);
    }
}
