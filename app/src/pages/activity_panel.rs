//! The configuration page's activity view (admins only): what this account's calls did in the last hour, day or
//! week, the last failed calls and whether the account's credentials work. The server builds every figure and
//! text (`server/src/activity/view.rs`); the panel only draws them, the chart as plain SVG.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityView {
    /// hour | day | week
    pub period: String,
    /// "Since 2026-12-07 10:00 UTC"
    pub since: String,
    pub calls: i64,
    pub failures: i64,
    /// "3.2 ms", or "–" without calls.
    pub p50: String,
    pub p99: String,
    pub functions: Vec<FunctionRow>,
    pub outcomes: Vec<OutcomeLine>,
    /// Calls and failures per bin, oldest first.
    pub chart: Vec<(i64, i64)>,
    /// What one bin of the chart covers ("1 minute", "1 hour", "4 hours") and the first and last bin's time.
    pub chart_bin: String,
    pub chart_from: String,
    pub chart_to: String,
    pub failed: Vec<FailedLine>,
    pub health: Vec<HealthLine>,
    /// "2026-12-07 10:04 UTC by Alice (u-1): Connected …", the account's last Test connection.
    pub last_test: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRow {
    pub surface: String,
    pub function: String,
    pub calls: i64,
    pub failures: i64,
    pub p50: String,
    pub p99: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeLine {
    /// `partner_client_error`, with the partner's status when it answered: "partner_client_error (401)".
    pub code: String,
    pub meaning: String,
    pub surface: String,
    pub function: String,
    pub calls: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedLine {
    pub when: String,
    pub request_id: String,
    pub surface: String,
    pub function: String,
    pub code: String,
    pub status: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthLine {
    /// "Partner API" or "Infobip People"
    pub source: String,
    pub failing: bool,
    /// "Refused since 2026-12-07 10:00 UTC (last: HTTP 401 at 10:20 UTC)" or "Accepted (last refusal …)".
    pub text: String,
}

#[cfg(feature = "ssr")]
pub use server_side::ActivitySource;

#[cfg(feature = "ssr")]
mod server_side {
    use super::ActivityView;
    use std::future::Future;
    use std::pin::Pin;

    /// Implemented by the server, which records the calls.
    pub trait ActivitySource: Send + Sync + 'static {
        fn activity<'a>(
            &'a self,
            account_key: &'a str,
            period: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<ActivityView, String>> + Send + 'a>>;
    }
}

/// The view for the page as it first loads: the last day.
#[cfg(feature = "ssr")]
pub async fn initial(account_key: &str) -> Result<Option<ActivityView>, ServerFnError> {
    match use_context::<std::sync::Arc<dyn ActivitySource>>() {
        Some(source) => Ok(Some(
            source
                .activity(account_key, "day")
                .await
                .map_err(ServerFnError::new)?,
        )),
        None => Ok(None),
    }
}

#[server(endpoint = "load_activity")]
pub async fn load_activity(session: String, period: String) -> Result<ActivityView, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    if !matches!(period.as_str(), "hour" | "day" | "week") {
        return Err(ServerFnError::new("period must be hour, day or week"));
    }
    use_context::<std::sync::Arc<dyn ActivitySource>>()
        .ok_or_else(|| ServerFnError::new("server misconfigured"))?
        .activity(&session.account_key, &period)
        .await
        .map_err(ServerFnError::new)
}

const CHART_WIDTH: f64 = 600.0;
const CHART_HEIGHT: f64 = 120.0;

/// Bars of calls with their failures drawn over them in the error colour, scaled to the busiest bin.
#[component]
fn Chart(view: ActivityView) -> impl IntoView {
    let bins = view.chart.len().max(1);
    let highest = view.chart.iter().map(|(c, _)| *c).max().unwrap_or(0).max(1);
    let step = CHART_WIDTH / bins as f64;
    let width = (step * 0.8).max(1.0);
    let height = |n: i64| (n as f64 / highest as f64) * (CHART_HEIGHT - 4.0);
    let summary = format!(
        "Calls per {} from {} to {}: {} calls, {} failed; the busiest {} had {} calls.",
        view.chart_bin,
        view.chart_from,
        view.chart_to,
        view.calls,
        view.failures,
        view.chart_bin,
        highest
    );
    view! {
        <figure class="activity-chart">
            <svg viewBox=format!("0 0 {CHART_WIDTH} {CHART_HEIGHT}") role="img" aria-label=summary.clone()
                preserveAspectRatio="none" data-testid="activity-chart">
                <line x1="0" y1=CHART_HEIGHT x2=CHART_WIDTH y2=CHART_HEIGHT class="axis"/>
                {view.chart.iter().enumerate().filter(|(_, (c, _))| *c > 0).map(|(i, (calls, failed))| {
                    let x = i as f64 * step;
                    let ok = height(*calls);
                    let bad = height(*failed);
                    view! {
                        <rect class="calls" x=format!("{x:.1}") y=format!("{:.1}", CHART_HEIGHT - ok)
                            width=format!("{width:.1}") height=format!("{ok:.1}")/>
                        {(*failed > 0).then(|| view! {
                            <rect class="failed" x=format!("{x:.1}") y=format!("{:.1}", CHART_HEIGHT - bad)
                                width=format!("{width:.1}") height=format!("{bad:.1}")/>
                        })}
                    }
                }).collect_view()}
            </svg>
            <figcaption class="small muted">
                <span>{view.chart_from.clone()}</span>
                <span class="legend"><span class="swatch calls"></span>" calls "<span class="swatch failed"></span>" failed"</span>
                <span>{view.chart_to.clone()}</span>
            </figcaption>
        </figure>
    }
}

#[component]
pub fn ActivityPanel(activity: ActivityView, session: String) -> impl IntoView {
    let activity = RwSignal::new(activity);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let load = Action::new(move |period: &String| {
        let (session, period) = (session.clone(), period.clone());
        async move { load_activity(session, period).await }
    });
    let error = RwSignal::new(None::<String>);
    Effect::new(move || match load.value().get() {
        Some(Ok(now)) => {
            error.set(None);
            activity.set(now);
        }
        Some(Err(e)) => error.set(Some(e.to_string())),
        None => {}
    });
    let period_button = move |period: &'static str, label: &'static str| {
        view! {
            <button type="button" class="button secondary small"
                aria-pressed=move || activity.with(|a| (a.period == period).to_string())
                disabled=move || !interactive.get() || load.pending().get()
                on:click=move |_| { load.dispatch(period.to_owned()); }>
                {label}
            </button>
        }
    };
    view! {
        <section class="card activity-panel" aria-labelledby="activity-title" data-testid="activity"
            data-interactive=move || interactive.get().to_string()>
            <h2 id="activity-title">"Activity"</h2>
            <div class="actions" role="group" aria-label="Period">
                {period_button("hour", "Last hour")}
                {period_button("day", "Last day")}
                {period_button("week", "Last week")}
            </div>
            <p role="status" class="status error">{move || error.get()}</p>
            {move || view! { <Figures view=activity.get()/> }.into_any()}
        </section>
    }
}

/// Everything below the period buttons, for one period. Components of their own, each erased to `AnyView`: one
/// nested view type this deep overflowed a debug build's 2 MiB thread stack while rendering on the server.
#[component]
fn Figures(view: ActivityView) -> impl IntoView {
    let quiet = view.calls == 0;
    view! {
        <p class="small muted" data-testid="activity-summary">
            {format!("{} · {} calls, {} failed · p50 {} · p99 {}", view.since, view.calls,
                view.failures, view.p50, view.p99)}
        </p>
        {view! { <Chart view=view.clone()/> }.into_any()}
        {view! { <Health health=view.health.clone() last_test=view.last_test.clone()/> }.into_any()}
        {view! { <Functions rows=view.functions.clone()/> }.into_any()}
        {view! { <Outcomes outcomes=view.outcomes.clone()/> }.into_any()}
        {view! { <Failed failed=view.failed.clone()/> }.into_any()}
        {quiet.then(|| view! {
            <p class="muted small">"No calls in this period yet. Calls appear here within a few seconds of being made."</p>
        })}
    }
}

#[component]
fn Health(health: Vec<HealthLine>, last_test: Option<String>) -> impl IntoView {
    view! {
        <h3>"Credentials"</h3>
        <ul class="activity-health" data-testid="activity-health">
            {health.into_iter().map(|h| view! {
                <li class:error=h.failing><strong>{h.source}": "</strong>{h.text}</li>
            }).collect_view()}
            <li><strong>"Last Test connection: "</strong>{last_test.unwrap_or_else(|| "never run".into())}</li>
        </ul>
    }
}

#[component]
fn Functions(rows: Vec<FunctionRow>) -> impl IntoView {
    if rows.is_empty() {
        return ().into_any();
    }
    view! {
        <h3 id="activity-calls">"Calls"</h3>
        // Scrolls sideways in a narrow frame: focusable, so a keyboard can scroll it too.
        <div class="table-scroll" tabindex="0" role="region" aria-labelledby="activity-calls">
        <table class="activity-table" data-testid="activity-functions">
            <thead><tr>
                <th scope="col">"Where"</th><th scope="col">"Function"</th>
                <th scope="col" class="num">"Calls"</th><th scope="col" class="num">"Failed"</th>
                <th scope="col" class="num">"p50"</th><th scope="col" class="num">"p99"</th>
            </tr></thead>
            <tbody>
                {rows.into_iter().map(|f| view! {
                    <tr>
                        <td>{f.surface}</td><td class="mono">{f.function}</td>
                        <td class="num">{f.calls}</td><td class="num">{f.failures}</td>
                        <td class="num">{f.p50}</td><td class="num">{f.p99}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
    .into_any()
}

#[component]
fn Outcomes(outcomes: Vec<OutcomeLine>) -> impl IntoView {
    if outcomes.is_empty() {
        return ().into_any();
    }
    view! {
        <h3>"Failures by cause"</h3>
        <ul class="activity-outcomes" data-testid="activity-outcomes">
            {outcomes.into_iter().map(|o| view! {
                <li>
                    <span class="mono">{o.code}</span>
                    {format!(" · {} × in {} {} · ", o.calls, o.surface, o.function)}
                    <span class="muted">{o.meaning}</span>
                </li>
            }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn Failed(failed: Vec<FailedLine>) -> impl IntoView {
    if failed.is_empty() {
        return ().into_any();
    }
    let count = failed.len();
    view! {
        <details class="activity-failed">
            <summary id="activity-failed-title">{format!("Last failed calls ({count})")}</summary>
            <div class="table-scroll" tabindex="0" role="region" aria-labelledby="activity-failed-title">
            <table class="activity-table" data-testid="activity-failed">
                <thead><tr>
                    <th scope="col">"When"</th><th scope="col">"Where"</th>
                    <th scope="col">"Function"</th><th scope="col">"Code"</th>
                    <th scope="col" class="num">"Status"</th><th scope="col">"Request ID"</th>
                </tr></thead>
                <tbody>
                    {failed.into_iter().map(|f| view! {
                        <tr>
                            <td>{f.when}</td><td>{f.surface}</td>
                            <td class="mono">{f.function}</td><td class="mono">{f.code}</td>
                            <td class="num">{f.status.map(|s| s.to_string()).unwrap_or_default()}</td>
                            <td class="mono small">{f.request_id}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            </div>
        </details>
    }
    .into_any()
}
