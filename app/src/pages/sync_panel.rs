//! The configuration page's People sync panel: "Sync now", a live progress bar while a run is open (polled once a
//! second, no reload), and the last runs with their counts and the latest run's failed records. Admins pause and
//! resume the account's sync and "Resync everything" here too; the history says who did.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One run as the admin reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    /// queued | running | paused | done | failed
    pub status: String,
    pub requested_by: String,
    /// "2026-11-26 15:04 UTC"
    pub when: String,
    pub read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
    /// Records in the source, when the list function says (`total_output`).
    pub total: Option<i64>,
    /// "120 of 250 records · 40 records/s · about 4 s left", written on the server: float formatting would
    /// cost the browser bundle tens of kilobytes.
    pub progress: String,
    pub last_error: Option<String>,
    /// A "Retry failed" run (it sent an earlier run's failed records again).
    pub retry: bool,
    /// People → partner (else partner → People).
    pub from_people: bool,
    /// Persons that are not the partner's (no identifier), People → partner only.
    pub skipped: i64,
    /// Persons tagged, or deleted, in People because their record is gone from the source.
    #[serde(default)]
    pub tagged: i64,
    #[serde(default)]
    pub deleted: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Whether this account has People credentials and sync turned on: "Sync now" needs the credentials.
    pub ready: Result<(), String>,
    /// The open run, if any, then the finished ones, newest first.
    pub runs: Vec<RunView>,
    /// The newest finished run's failed records: (record, reason).
    pub failures: Vec<(String, String)>,
    /// The directions an admin paused: (direction, "partner → People, paused by … on …").
    #[serde(default)]
    pub paused: Vec<(String, String)>,
    /// Who paused, resumed or resynced the account's sync, newest first, one sentence each.
    #[serde(default)]
    pub controls: Vec<String>,
    /// The app's sync directions, for "Resync everything": (direction, label).
    #[serde(default)]
    pub directions: Vec<(String, String)>,
    /// What becomes of a person whose customer is gone from the source, when it is more than "nothing".
    #[serde(default)]
    pub deletes: Option<String>,
}

#[cfg(feature = "ssr")]
pub use server_side::SyncSource;

/// "120 of 250 records · 40 records/s · about 4 s left", or what is known of it.
#[cfg(feature = "ssr")]
pub fn progress_text(done: i64, total: Option<i64>, rate: Option<f64>) -> String {
    let mut parts = vec![match total {
        Some(total) => format!("{done} of {total} records"),
        None => format!("{done} records"),
    }];
    if let Some(rate) = rate.filter(|r| *r > 0.0) {
        parts.push(format!("{rate:.0} records/s"));
        if let Some(total) = total {
            let left = ((total - done).max(0) as f64 / rate).ceil() as i64;
            parts.push(if left < 90 {
                format!("about {left} s left")
            } else {
                format!("about {} min left", (left + 30) / 60)
            });
        }
    }
    parts.join(" · ")
}

#[cfg(feature = "ssr")]
mod server_side {
    use super::SyncStatus;
    use std::future::Future;
    use std::pin::Pin;

    /// Implemented by the server, which owns the runs and the worker.
    pub trait SyncSource: Send + Sync + 'static {
        fn status<'a>(
            &'a self,
            account_key: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<SyncStatus, String>> + Send + 'a>>;

        /// Queues a run (or returns the open one); `Err` says why it cannot start.
        fn start<'a>(
            &'a self,
            account_key: &'a str,
            by: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + 'a>>;

        /// Asks People for one person with the saved base URL and key: `Ok` says what People answered, `Err`
        /// what to fix. Recorded in the audit log like the partner's Test connection.
        fn test_people<'a>(
            &'a self,
            account_key: &'a str,
            by: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

        /// Queues a run that sends the last run's failed records again; `Err` says why it cannot.
        fn retry<'a>(
            &'a self,
            account_key: &'a str,
            by: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + 'a>>;

        /// `pause`, `resume` or `resync` the account's sync, in `direction` (`to_people`, `from_people`) or every
        /// direction (empty); `Ok` says what was done, `Err` why nothing was.
        fn control<'a>(
            &'a self,
            account_key: &'a str,
            action: &'a str,
            direction: &'a str,
            by: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
    }
}

#[cfg(feature = "ssr")]
fn source() -> Result<std::sync::Arc<dyn SyncSource>, ServerFnError> {
    use_context::<std::sync::Arc<dyn SyncSource>>()
        .ok_or_else(|| ServerFnError::new("this app has no People sync"))
}

#[server(endpoint = "load_sync")]
pub async fn load_sync(session: String) -> Result<SyncStatus, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    source()?
        .status(&session.account_key)
        .await
        .map_err(ServerFnError::new)
}

#[server(endpoint = "sync_now")]
pub async fn sync_now(session: String) -> Result<Result<SyncStatus, String>, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    let source = source()?;
    let by = format!("{} ({})", session.username, session.user_key);
    if let Err(why) = source.start(&session.account_key, &by).await {
        return Ok(Err(why));
    }
    Ok(Ok(source
        .status(&session.account_key)
        .await
        .map_err(ServerFnError::new)?))
}

/// "Retry failed": the last run's failed records are sent again (as they were read), in a run of their own.
#[server(endpoint = "sync_retry")]
pub async fn retry_failed(session: String) -> Result<Result<SyncStatus, String>, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    let source = source()?;
    let by = format!("{} ({})", session.username, session.user_key);
    if let Err(why) = source.retry(&session.account_key, &by).await {
        return Ok(Err(why));
    }
    Ok(Ok(source
        .status(&session.account_key)
        .await
        .map_err(ServerFnError::new)?))
}

/// Pause, resume or "Resync everything" (`action`), in one `direction` or all (empty): admins only, like every
/// change (403 otherwise). The answer is the panel as it now is, or why nothing was done.
#[server(endpoint = "sync_control")]
pub async fn sync_control(
    session: String,
    action: String,
    direction: String,
) -> Result<Result<SyncStatus, String>, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    let source = source()?;
    let by = format!("{} ({})", session.username, session.user_key);
    if let Err(why) = source
        .control(&session.account_key, &action, &direction, &by)
        .await
    {
        return Ok(Err(why));
    }
    Ok(Ok(source
        .status(&session.account_key)
        .await
        .map_err(ServerFnError::new)?))
}

/// "Test People connection": the saved People base URL and key, tried with one read.
#[server(endpoint = "sync_test_people")]
pub async fn test_people(session: String) -> Result<Result<String, String>, ServerFnError> {
    let (_, session) = super::settings::configuring(&session).await?;
    let by = format!("{} ({})", session.username, session.user_key);
    Ok(source()?.test_people(&session.account_key, &by).await)
}

fn is_open(run: &RunView) -> bool {
    matches!(run.status.as_str(), "queued" | "running" | "paused")
}

fn counts(run: &RunView) -> String {
    let mut text = format!(
        "{} read: {} created, {} updated, {} unchanged, {} failed",
        run.read, run.created, run.updated, run.unchanged, run.failed
    );
    if run.skipped > 0 {
        text.push_str(&format!(", {} skipped", run.skipped));
    }
    if run.tagged > 0 {
        text.push_str(&format!(", {} tagged as deleted", run.tagged));
    }
    if run.deleted > 0 {
        text.push_str(&format!(", {} deleted", run.deleted));
    }
    text
}

fn status_word(status: &str) -> &'static str {
    match status {
        "queued" => "Waiting to start",
        "running" => "Running",
        "paused" => "Paused: will resume",
        "done" => "Done",
        "failed" => "Stopped",
        _ => "Unknown",
    }
}

#[component]
pub fn SyncPanel(status: SyncStatus, session: String) -> impl IntoView {
    let status = RwSignal::new(status);
    let message = RwSignal::new(None::<String>);
    let interactive = RwSignal::new(false);
    Effect::new(move || interactive.set(true));
    let refresh = Action::new({
        let session = session.clone();
        move |_: &()| {
            let session = session.clone();
            async move { load_sync(session).await }
        }
    });
    // "Sync now" (false) and "Retry failed" (true) answer alike: one action, one place reading its answer.
    let start = Action::new({
        let session = session.clone();
        move |retry: &bool| {
            let (session, retry) = (session.clone(), *retry);
            async move {
                if retry {
                    retry_failed(session).await
                } else {
                    sync_now(session).await
                }
            }
        }
    });
    Effect::new(move || {
        if let Some(Ok(now)) = refresh.value().get() {
            status.set(now);
        }
    });
    Effect::new(move || match start.value().get() {
        Some(Ok(Ok(now))) => {
            message.set(None);
            status.set(now);
        }
        Some(Ok(Err(why))) => message.set(Some(why)),
        Some(Err(e)) => message.set(Some(e.to_string())),
        None => {}
    });
    // Pause, resume and resync: (action, direction; empty for every direction).
    let control = Action::new({
        let session = session.clone();
        move |(action, direction): &(String, String)| {
            let (session, action, direction) = (session.clone(), action.clone(), direction.clone());
            async move { sync_control(session, action, direction).await }
        }
    });
    Effect::new(move || match control.value().get() {
        Some(Ok(Ok(now))) => {
            message.set(None);
            status.set(now);
        }
        Some(Ok(Err(why))) => message.set(Some(why)),
        Some(Err(e)) => message.set(Some(e.to_string())),
        None => {}
    });
    let resync_direction = RwSignal::new(
        status
            .with_untracked(|s| s.directions.first().map(|(d, _)| d.clone()))
            .unwrap_or_default(),
    );
    let paused_any = move || status.with(|s| !s.paused.is_empty());
    let paused_all =
        move || status.with(|s| !s.paused.is_empty() && s.paused.len() >= s.directions.len());
    let test = Action::new({
        let session = session.clone();
        move |_: &()| {
            let session = session.clone();
            async move { test_people(session).await }
        }
    });
    // (passed, what People said), for the line under the buttons.
    let tested = move || match test.value().get() {
        Some(Ok(Ok(said))) => Some((true, said)),
        Some(Ok(Err(why))) => Some((false, why)),
        Some(Err(e)) => Some((false, e.to_string())),
        None => None,
    };
    let open = move || status.with(|s| s.runs.first().filter(|r| is_open(r)).cloned());
    // While a run is open, ask for its progress once a second; stop when it is over.
    #[cfg(feature = "hydrate")]
    {
        let ticker = StoredValue::new(None::<leptos::leptos_dom::helpers::IntervalHandle>);
        Effect::new(move || {
            let running = open().is_some();
            match (running, ticker.get_value()) {
                (true, None) => {
                    let handle = set_interval_with_handle(
                        move || {
                            if !refresh.pending().get_untracked() {
                                refresh.dispatch(());
                            }
                        },
                        std::time::Duration::from_secs(1),
                    )
                    .ok();
                    ticker.set_value(handle);
                }
                (false, Some(handle)) => {
                    handle.clear();
                    ticker.set_value(None);
                }
                _ => {}
            }
        });
    }
    let ready = move || status.with(|s| s.ready.clone());
    view! {
        <section class="card sync-panel" aria-labelledby="sync-title"
            data-interactive=move || interactive.get().to_string()>
            <h2 id="sync-title">"People sync"</h2>
            {move || match ready() {
                Ok(()) => view! {
                    <p class="muted small">"Customers become Infobip People persons, matched by their customer ID."</p>
                }.into_any(),
                Err(why) => view! { <p class="small" data-testid="sync-not-ready">{why}</p> }.into_any(),
            }}
            {move || status.with(|s| s.deletes.clone()).map(|deletes| view! {
                <p class="small muted" data-testid="sync-deletes">{deletes}</p>
            })}
            {move || {
                let paused = status.with(|s| s.paused.clone());
                (!paused.is_empty()).then(|| view! {
                    <div class="sync-paused" data-testid="sync-paused">
                        <p><strong>"Sync is paused."</strong>" No run starts, on the schedule or on Sync now, until it is resumed."</p>
                        <ul class="small">
                            {paused.into_iter().map(|(_, text)| view! { <li>{text}</li> }).collect_view()}
                        </ul>
                    </div>
                })
            }}
            {move || open().map(|run| {
                let value = run.read;
                let max = run.total.unwrap_or(0).max(run.read);
                view! {
                    <div class="sync-progress" data-testid="sync-progress">
                        <label for="sync-progress-bar">{
                            if run.status == "paused" && paused_any() { "Paused by an admin" } else { status_word(&run.status) }
                        }</label>
                        <progress id="sync-progress-bar" max=max.max(1) value=value></progress>
                        <p class="small" aria-live="polite">{run.progress.clone()}</p>
                        {run.last_error.clone().filter(|_| run.status == "paused").map(|e| view! {
                            <p class="small status error">{e}</p>
                        })}
                    </div>
                }
            })}
            <div class="actions">
                <button type="button" class="button secondary"
                    disabled=move || !interactive.get() || ready().is_err() || open().is_some() || paused_all()
                    aria-disabled=move || start.pending().get().to_string()
                    on:click=move |_| { if !start.pending().get_untracked() { start.dispatch(false); } }>
                    {move || if start.pending().get() { "Starting…" } else { "Sync now" }}
                </button>
                <button type="button" class="button secondary" data-testid="sync-pause-toggle"
                    disabled=move || !interactive.get() || control.pending().get()
                    on:click=move |_| {
                        let action = if paused_any() { "resume" } else { "pause" };
                        control.dispatch((action.to_owned(), String::new()));
                    }>
                    {move || if paused_any() { "Resume sync" } else { "Pause sync" }}
                </button>
                <button type="button" class="button secondary"
                    disabled=move || !interactive.get() || test.pending().get()
                    on:click=move |_| { test.dispatch(()); }>
                    {move || if test.pending().get() { "Testing…" } else { "Test People connection" }}
                </button>
                {move || (!status.with(|s| s.failures.is_empty())).then(|| view! {
                    <button type="button" class="button secondary"
                        disabled=move || !interactive.get() || ready().is_err() || open().is_some()
                        on:click=move |_| { if !start.pending().get_untracked() { start.dispatch(true); } }>
                        "Retry failed"
                    </button>
                })}
            </div>
            <p role="status" class="status" data-testid="people-test"
                class:error=move || tested().is_some_and(|(passed, _)| !passed)
                class:ok=move || tested().is_some_and(|(passed, _)| passed)>
                {move || tested().map(|(_, said)| said)}
            </p>
            <p role="status" class="status error">{move || message.get()}</p>
            <details class="sync-resync">
                <summary>"Resync everything"</summary>
                <p class="small muted">"Forgets what was last synced in one direction, so that its next run sends every record again (partner → People also forgets which customers it wrote, so one deleted before that run is not found)."</p>
                <label for="sync-resync-direction">"Direction"</label>
                <select id="sync-resync-direction"
                    on:change=move |ev| resync_direction.set(event_target_value(&ev))>
                    {move || status.with(|s| s.directions.clone()).into_iter().map(|(direction, label)| {
                        let selected = direction == resync_direction.get_untracked();
                        view! { <option value=direction selected=selected>{label}</option> }
                    }).collect_view()}
                </select>
                <button type="button" class="button secondary"
                    disabled=move || !interactive.get() || control.pending().get()
                    on:click=move |_| { control.dispatch(("resync".to_owned(), resync_direction.get_untracked())); }>
                    "Resync"
                </button>
            </details>
            {move || {
                let finished: Vec<RunView> = status.with(|s| s.runs.iter().filter(|r| !is_open(r)).take(5).cloned().collect());
                (!finished.is_empty()).then(|| view! {
                    <h3>"Last runs"</h3>
                    <ul class="sync-history" data-testid="sync-history">
                        {finished.into_iter().map(|run| view! {
                            <li>
                                <span class="tag">{status_word(&run.status)}</span>
                                " "<span>{run.when.clone()}</span>
                                {run.from_people.then_some(" · from People")}
                                {run.retry.then_some(" · retry of failed records")}
                                <span class="small muted">{format!(" · {}", counts(&run))}</span>
                                {run.last_error.clone().filter(|_| run.status == "failed").map(|e| view! {
                                    <p class="small status error">{e}</p>
                                })}
                                {run.last_error.clone().filter(|_| run.status == "done").map(|note| view! {
                                    <p class="small muted">{note}</p>
                                })}
                            </li>
                        }).collect_view()}
                    </ul>
                })
            }}
            {move || {
                let lines = status.with(|s| s.controls.clone());
                (!lines.is_empty()).then(|| view! {
                    <h3>"Pauses and resyncs"</h3>
                    <ul class="sync-history" data-testid="sync-controls">
                        {lines.into_iter().map(|line| view! { <li class="small">{line}</li> }).collect_view()}
                    </ul>
                })
            }}
            {move || {
                let failures = status.with(|s| s.failures.clone());
                // The list holds the first 50; the count is the run's own.
                let failed = status.with(|s| s.runs.iter().find(|r| !is_open(r)).map_or(0, |r| r.failed));
                let listed = failures.len();
                (!failures.is_empty()).then(|| view! {
                    <details class="sync-failures">
                        <summary>{format!("Records not synced in the last run ({failed})")}</summary>
                        <ul data-testid="sync-failures">
                            {failures.into_iter().map(|(key, reason)| view! {
                                <li><span class="mono">{key}</span>": "{reason}</li>
                            }).collect_view()}
                        </ul>
                        // A run stores a bounded number of failed records (IBEX_SYNC_FAILURES_KEPT) and the page
                        // lists the first of them; the count above is every one.
                        {(i64::try_from(listed).unwrap_or(i64::MAX) < failed).then(|| view! {
                            <p class="small muted">{format!("The first {listed} of {failed} are listed.")}</p>
                        })}
                    </details>
                })
            }}
        </section>
    }
}
