//! The activity of one account as people read it: the configuration page's panel
//! (`app::pages::activity_panel::ActivitySource`) and `ibex activity` print the same `ActivityView`.

use super::store::{ActivityStore, CallsRow, HOUR_MS, MINUTE_MS};
use super::{quantile_ms, Surface, LATENCY_BUCKETS};
use app::pages::activity_panel::{
    ActivitySource, ActivityView, FailedLine, FunctionRow, HealthLine, OutcomeLine,
};
use app::settings::store::{now_ms, SettingsStore, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Failed calls the view lists.
pub const FAILED_LISTED: i64 = 50;

/// A period the view covers: its rows' span, its length and the chart's bin.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub name: &'static str,
    span_ms: i64,
    bins: i64,
    bin_ms: i64,
    bin_name: &'static str,
}

impl Period {
    pub fn parse(name: &str) -> Option<Period> {
        Some(match name {
            "hour" => Period {
                name: "hour",
                span_ms: MINUTE_MS,
                bins: 60,
                bin_ms: MINUTE_MS,
                bin_name: "minute",
            },
            "day" => Period {
                name: "day",
                span_ms: HOUR_MS,
                bins: 24,
                bin_ms: HOUR_MS,
                bin_name: "hour",
            },
            "week" => Period {
                name: "week",
                span_ms: HOUR_MS,
                bins: 42,
                bin_ms: 4 * HOUR_MS,
                bin_name: "4 hours",
            },
            _ => return None,
        })
    }
}

pub struct ServerActivity {
    pub store: ActivityStore,
    pub settings: SettingsStore,
}

impl ServerActivity {
    pub async fn view(
        &self,
        account_key: &str,
        period: Period,
    ) -> Result<ActivityView, StoreError> {
        let now = now_ms();
        // The chart ends with the bin now under way; the period starts at the first bin's start.
        let end = now - now.rem_euclid(period.bin_ms) + period.bin_ms;
        let from = end - period.bins * period.bin_ms;
        // A linked signed key's calls are written under this account (`ActivityStore::write`).
        let rows = self.store.calls(account_key, period.span_ms, from).await?;
        let outcomes = self
            .store
            .outcomes(account_key, period.span_ms, from)
            .await?;
        let failed = self.store.failures(account_key, FAILED_LISTED).await?;
        let health = self.store.health(account_key).await?;
        let last_test = self
            .settings
            .probes(account_key, 1)
            .await?
            .into_iter()
            .next();

        let mut chart = vec![(0i64, 0i64); usize::try_from(period.bins).unwrap_or(0)];
        let mut per_function: BTreeMap<(Surface, String), (i64, i64, [i64; LATENCY_BUCKETS])> =
            BTreeMap::new();
        let mut all = [0i64; LATENCY_BUCKETS];
        for row in &rows {
            if let Some(bin) = usize::try_from((row.at_ms - from) / period.bin_ms)
                .ok()
                .and_then(|i| chart.get_mut(i))
            {
                bin.0 += row.calls;
                bin.1 += row.failures;
            }
            let entry = per_function
                .entry((row.surface, row.function.clone()))
                .or_insert((0, 0, [0; LATENCY_BUCKETS]));
            add(entry, row);
            for (sum, n) in all.iter_mut().zip(row.latency) {
                *sum += n;
            }
        }
        let (calls, failures) = chart
            .iter()
            .fold((0, 0), |(c, f), (bc, bf)| (c + bc, f + bf));
        Ok(ActivityView {
            period: period.name.to_owned(),
            since: format!("Since {}", minutes(from)),
            calls,
            failures,
            p50: millis(quantile_ms(&all, 0.5)),
            p99: millis(quantile_ms(&all, 0.99)),
            functions: per_function
                .into_iter()
                .map(
                    |((surface, function), (calls, failures, latency))| FunctionRow {
                        surface: surface.label().to_owned(),
                        function,
                        calls,
                        failures,
                        p50: millis(quantile_ms(&latency, 0.5)),
                        p99: millis(quantile_ms(&latency, 0.99)),
                    },
                )
                .collect(),
            outcomes: outcomes
                .into_iter()
                .map(|o| OutcomeLine {
                    code: match o.status {
                        0 => o.code.clone(),
                        status => format!("{} ({status})", o.code),
                    },
                    meaning: meaning(&o.code, o.status).to_owned(),
                    surface: o.surface.label().to_owned(),
                    function: o.function,
                    calls: o.calls,
                })
                .collect(),
            chart,
            chart_bin: period.bin_name.to_owned(),
            chart_from: minutes(from),
            chart_to: minutes(end),
            failed: failed
                .into_iter()
                .map(|f| FailedLine {
                    when: seconds(f.at_ms),
                    request_id: f.request_id,
                    surface: f.surface.label().to_owned(),
                    function: f.function,
                    code: f.code,
                    status: (f.status != 0).then_some(f.status),
                })
                .collect(),
            health: ["partner", "people"]
                .into_iter()
                .filter_map(|source| {
                    let name = match source {
                        "partner" => "Partner API",
                        _ => "Infobip People",
                    };
                    let Some(h) = health.iter().find(|h| h.source == source) else {
                        // A row is written at the first refusal; People's line is for apps that sync.
                        return (source == "partner").then(|| HealthLine {
                            source: name.to_owned(),
                            failing: false,
                            text: "Accepted: no 401 or 403 recorded".to_owned(),
                        });
                    };
                    let last = h.last_failure_ms.map(|at| {
                        format!(
                            "HTTP {} at {}",
                            h.last_status.unwrap_or_default(),
                            minutes(at)
                        )
                    });
                    let text = match (h.failing_since_ms, last) {
                        (Some(since), Some(last)) => {
                            format!("Refused since {} (last: {last})", minutes(since))
                        }
                        (Some(since), None) => format!("Refused since {}", minutes(since)),
                        (None, Some(last)) => format!("Accepted (last refusal: {last})"),
                        (None, None) => "Accepted".to_owned(),
                    };
                    Some(HealthLine {
                        source: name.to_owned(),
                        failing: h.failing_since_ms.is_some(),
                        text,
                    })
                })
                .collect(),
            last_test: last_test
                .map(|t| format!("{} by {}: {}", minutes(t.tested_at), t.tested_by, t.outcome)),
        })
    }
}

fn add(entry: &mut (i64, i64, [i64; LATENCY_BUCKETS]), row: &CallsRow) {
    entry.0 += row.calls;
    entry.1 += row.failures;
    for (sum, n) in entry.2.iter_mut().zip(row.latency) {
        *sum += n;
    }
}

impl ActivitySource for ServerActivity {
    fn activity<'a>(
        &'a self,
        account_key: &'a str,
        period: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ActivityView, String>> + Send + 'a>> {
        Box::pin(async move {
            let period = Period::parse(period).ok_or("period must be hour, day or week")?;
            self.view(account_key, period).await.map_err(|e| {
                tracing::warn!(error = %e, "activity view could not be read");
                "the activity could not be read; try again".to_owned()
            })
        })
    }
}

/// What a code means for the admin reading the view, in a few words (docs/errors.md has the full text).
pub fn meaning(code: &str, status: u16) -> &'static str {
    match (code, status) {
        ("partner_client_error", 401 | 403) => {
            "the partner refused this account's credentials: check them in the settings"
        }
        ("partner_client_error", 404) => "the partner has no such record",
        ("partner_client_error", 429) => "the partner is limiting this account's calls",
        ("partner_client_error", _) => "the partner refused the request",
        ("partner_server_error", _) => "the partner's server failed",
        ("partner_timeout", _) => "the partner did not answer in time",
        ("partner_unreachable", _) => "the partner could not be reached",
        ("partner_bad_answer", _) => "the partner's answer did not have the declared shape",
        ("partner_address_forbidden", _) => "the partner URL in the settings is not allowed",
        ("partner_request_invalid", _) => "the settings do not make a valid partner request",
        ("account_not_configured", _) => "the settings are not saved or incomplete",
        ("secrets_unreadable", _) => "a stored secret must be entered again",
        ("invalid_settings", _) => "a saved setting is not valid",
        ("invalid_input" | "malformed_json" | "missing_parameter" | "invalid_parameter", _) => {
            "the caller sent inputs the function does not accept"
        }
        ("signature_mismatch" | "malformed_signature" | "missing_header", _) => {
            "the request was not signed with the app's signing secret"
        }
        (
            "stale_timestamp" | "future_timestamp" | "timestamp_in_seconds" | "invalid_timestamp",
            _,
        ) => "the request's timestamp is outside the accepted window",
        ("people_key_refused", _) => "People refused this account's API key",
        ("people_refused", _) => "People refused the person",
        ("people_unavailable", _) => "People did not answer",
        ("people_not_configured", _) => "People sync is not set up for this account",
        ("overloaded", _) => "ibex was at its limit of concurrent calls",
        ("settings_unavailable", _) => "the settings database did not answer",
        _ => "see docs/errors.md",
    }
}

fn minutes(ms: i64) -> String {
    format_utc(
        ms,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"),
    )
}

fn seconds(ms: i64) -> String {
    format_utc(
        ms,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC"),
    )
}

fn format_utc(ms: i64, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(format).ok())
        .unwrap_or_default()
}

/// "0.8 ms", "12 ms", "1.4 s"; "–" when there is nothing to measure.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "–".to_owned(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// `ibex activity`: the same view, as lines of text.
pub fn as_text(account_key: &str, view: &ActivityView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Activity of {account_key}, last {} ({})\n{} calls, {} failed, p50 {}, p99 {}",
        view.period,
        view.since.to_lowercase(),
        view.calls,
        view.failures,
        view.p50,
        view.p99
    );
    for h in &view.health {
        let _ = writeln!(out, "{}: {}", h.source, h.text);
    }
    let _ = writeln!(
        out,
        "Last Test connection: {}",
        view.last_test.as_deref().unwrap_or("never run")
    );
    if !view.functions.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<16} {:<24} {:>8} {:>8} {:>9} {:>9}",
            "where", "function", "calls", "failed", "p50", "p99"
        );
        for f in &view.functions {
            let _ = writeln!(
                out,
                "{:<16} {:<24} {:>8} {:>8} {:>9} {:>9}",
                f.surface, f.function, f.calls, f.failures, f.p50, f.p99
            );
        }
    }
    if !view.outcomes.is_empty() {
        let _ = writeln!(out, "\nFailures by cause");
        for o in &view.outcomes {
            let _ = writeln!(
                out,
                "{:>8} × {} in {} {}: {}",
                o.calls, o.code, o.surface, o.function, o.meaning
            );
        }
    }
    if !view.failed.is_empty() {
        let _ = writeln!(out, "\nLast failed calls");
        for f in &view.failed {
            let status = f.status.map(|s| format!(" ({s})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{}  {}  {}  {}{status}  {}",
                f.when, f.surface, f.function, f.code, f.request_id
            );
        }
    }
    out
}
