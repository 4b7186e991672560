//! What the configuration page's People sync panel reads and does (`app::pages::sync_panel::SyncSource`): the
//! account's runs and failures, "Sync now", which queues a run for the worker, and an admin's pause, resume and
//! resync (`controls`).

use super::controls::{direction_label, Action, ControlError, Controls, LogEntry};
use super::people::PeopleTarget;
use super::runs::{Run, Runs, FROM_PEOPLE, TO_PEOPLE};
use super::SyncConfig;
use crate::state::AppState;
use app::pages::sync_panel::{RunView, SyncSource, SyncStatus};
use app::settings::store::now_ms;
use std::future::Future;
use std::pin::Pin;

/// Failed records the page lists (the run's count says how many there are).
const FAILURES_LISTED: i64 = 50;

pub struct ServerSync {
    pub state: AppState,
    pub runs: Runs,
    pub config: SyncConfig,
}

/// Control log entries the panel shows.
const CONTROLS_LISTED: i64 = 5;

impl ServerSync {
    fn controls(&self) -> Controls {
        Controls::new(self.state.settings.store().clone())
    }

    /// The app's sync directions: partner → People, and People → partner where declared.
    fn directions(&self) -> Vec<&'static str> {
        let mut directions = vec![TO_PEOPLE];
        if self
            .state
            .definition
            .sync
            .as_ref()
            .is_some_and(|s| s.from_people.is_some())
        {
            directions.push(FROM_PEOPLE);
        }
        directions
    }

    /// The directions of the account an admin paused.
    async fn paused_directions(&self, account_key: &str) -> Result<Vec<String>, String> {
        Ok(self
            .controls()
            .paused(account_key)
            .await
            .map_err(|_| "The sync pauses could not be read; try again in a moment.".to_owned())?
            .into_iter()
            .map(|p| p.direction)
            .collect())
    }

    /// What becomes of a person whose customer is gone from the source, for the page.
    async fn deletes(&self, account_key: &str) -> Option<String> {
        use app::definition::sync::{delete_tag, OnDelete, PEOPLE_SYNC_DELETE_ON};
        let sync = self.state.definition.sync.as_ref()?;
        match sync.on_delete {
            OnDelete::Ignore => None,
            OnDelete::Tag => Some(format!(
                "A customer deleted at the source gets the tag \u{201c}{}\u{201d} in People after the next complete sync.",
                delete_tag(sync, &self.state.definition.app.name)
            )),
            OnDelete::Delete => {
                let on = self
                    .state
                    .settings
                    .current(account_key)
                    .await
                    .ok()
                    .is_some_and(|s| s.get(PEOPLE_SYNC_DELETE_ON) == Some(&serde_json::Value::Bool(true)));
                Some(if on {
                    "A customer deleted at the source is deleted from People after the next complete sync.".to_owned()
                } else {
                    "A customer deleted at the source stays in People; turn on \u{201c}Delete persons of deleted customers\u{201d} above to delete their person.".to_owned()
                })
            }
        }
    }

    /// One read of People with the saved settings: (host, what People said) either way.
    async fn try_people(&self, account_key: &str) -> Result<(String, String), (String, String)> {
        let settings = self
            .state
            .settings
            .current(account_key)
            .await
            .map_err(|_| (String::new(), "Save this app's settings first.".to_owned()))?;
        let target = PeopleTarget::from_settings(&settings, &self.config)
            .map_err(|e| (String::new(), sentence(&e.to_string())))?;
        let host = target.host();
        let Some(sync) = self.state.definition.sync.as_ref() else {
            return Err((host, "This app has no People sync.".to_owned()));
        };
        let people = super::people::PeopleWriter {
            http: &self.state.http,
            limits: &self.state.people_limits,
            target: &target,
            account_key,
            sync,
            activity: None,
        };
        match people.changed(None, 1, 1).await {
            Ok(_) => Ok((host.clone(), format!("Connected: People at {host} accepted the API key."))),
            Err(super::people::WriteError::Refused(status)) => Err((
                host,
                format!("People refused the API key (HTTP {status}): check that it is this account's key, with People permissions."),
            )),
            Err(e) => Err((host, sentence(&e.to_string()))),
        }
    }

    async fn ready(&self, account_key: &str) -> Result<(), String> {
        let settings = self
            .state
            .settings
            .current(account_key)
            .await
            .map_err(|e| match e {
                app::settings::SettingsError::NotConfigured { .. } => {
                    "Save this app's settings first; then People sync can start.".to_owned()
                }
                _ => "The settings could not be read; try again in a moment.".to_owned(),
            })?;
        PeopleTarget::from_settings(&settings, &self.config)
            .map(|_| ())
            .map_err(|e| sentence(&e.to_string()))
    }

    async fn status_of(&self, account_key: &str) -> Result<SyncStatus, String> {
        let unavailable =
            |_| "The sync history could not be read; try again in a moment.".to_owned();
        let runs = self
            .runs
            .history(account_key, 6)
            .await
            .map_err(unavailable)?;
        let failures = match runs
            .iter()
            .find(|r| !matches!(r.status.as_str(), "queued" | "running" | "paused"))
        {
            // Polled once a second: a bounded read, without the stored records.
            Some(last) => self
                .runs
                .failure_list(last.id, FAILURES_LISTED)
                .await
                .map_err(unavailable)?
                .into_iter()
                .map(|(key, reason, truncated)| match truncated {
                    true => (
                        key,
                        format!(
                            "{reason} (stored record cut to {} KiB)",
                            super::runs::MAX_RECORD_BYTES / 1024
                        ),
                    ),
                    false => (key, reason),
                })
                .collect(),
            None => Vec::new(),
        };
        let controls = self.controls();
        let paused = controls
            .paused(account_key)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|p| {
                let text = format!(
                    "{}: paused by {} on {}",
                    sentence_start(direction_label(&p.direction)),
                    p.by,
                    utc_minutes(p.at)
                );
                (p.direction, text)
            })
            .collect();
        let log = controls
            .log(account_key, CONTROLS_LISTED)
            .await
            .map_err(unavailable)?;
        Ok(SyncStatus {
            ready: self.ready(account_key).await,
            runs: runs.iter().map(view).collect(),
            failures,
            paused,
            controls: log.iter().map(control_line).collect(),
            directions: self
                .directions()
                .into_iter()
                .map(|d| (d.to_owned(), sentence_start(direction_label(d))))
                .collect(),
            deletes: self.deletes(account_key).await,
        })
    }
}

/// "2026-12-08 10:00 UTC: ana.admin (U-ANA-7F21) paused sync (partner → People)".
fn control_line(entry: &LogEntry) -> String {
    let did = match Action::parse(&entry.action) {
        Some(Action::Pause) => "paused sync",
        Some(Action::Resume) => "resumed sync",
        Some(Action::Resync) => "resynced everything",
        None => "changed sync",
    };
    let scope = entry
        .direction
        .as_deref()
        .map(|d| format!(" ({})", direction_label(d)))
        .unwrap_or_default();
    format!("{}: {} {did}{scope}", utc_minutes(entry.at), entry.actor)
}

/// "Partner → People" for a label that starts a line.
fn sentence_start(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// A message as a sentence for the page: capitalised, with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text.to_owned(),
    }
}

fn view(run: &Run) -> RunView {
    let rate = run.started_at.and_then(|started| {
        let end = run.finished_at.unwrap_or_else(now_ms);
        let secs = (end - started) as f64 / 1000.0;
        (secs >= 0.5 && run.counts.read > 0).then(|| run.counts.read as f64 / secs)
    });
    RunView {
        id: run.id,
        status: run.status.clone(),
        requested_by: run.requested_by.clone(),
        when: utc_minutes(run.requested_at),
        // Between checkpoints, the page in flight counts too: the bar moves while a page is written.
        read: run.counts.read + run.page_done,
        created: run.counts.created,
        updated: run.counts.updated,
        unchanged: run.counts.unchanged,
        failed: run.counts.failed,
        total: run.total,
        progress: app::pages::sync_panel::progress_text(
            run.counts.read + run.page_done,
            run.total,
            rate,
        ),
        last_error: run.last_error.clone(),
        retry: run.checkpoint.retry_of.is_some(),
        from_people: run.direction == FROM_PEOPLE,
        skipped: run.counts.skipped,
        tagged: run.counts.tagged,
        deleted: run.counts.deleted,
    }
}

fn utc_minutes(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

impl SyncSource for ServerSync {
    fn status<'a>(
        &'a self,
        account_key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SyncStatus, String>> + Send + 'a>> {
        Box::pin(self.status_of(account_key))
    }

    fn start<'a>(
        &'a self,
        account_key: &'a str,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + 'a>> {
        Box::pin(async move {
            self.ready(account_key).await?;
            let unavailable = |_| "The run could not be queued; try again in a moment.".to_owned();
            // Partner → People always (the button says so); People → partner too where the account turned it on.
            let mut directions = vec![TO_PEOPLE];
            if let Ok(settings) = self.state.settings.current(account_key).await {
                directions.extend(
                    super::engine::directions_on(&self.state, &settings)
                        .into_iter()
                        .filter(|d| *d != TO_PEOPLE),
                );
            }
            // A paused direction gets no requested runs either.
            let paused = self.paused_directions(account_key).await?;
            directions.retain(|d| !paused.iter().any(|p| p == d));
            if directions.is_empty() {
                return Err("People sync is paused; resume it to sync.".to_owned());
            }
            let mut first = None;
            for direction in directions {
                let id = self
                    .runs
                    .enqueue(account_key, direction, by)
                    .await
                    .map_err(unavailable)?;
                tracing::info!(target: "ibex::audit", account = %account_key, actor = by, run = id, direction, "people sync requested");
                first.get_or_insert(id);
            }
            first.ok_or_else(|| "Nothing to sync.".to_owned())
        })
    }

    fn test_people<'a>(
        &'a self,
        account_key: &'a str,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let store = self.state.settings.store();
            match store.probe_allowed(account_key, now_ms()).await {
                Ok(true) => {}
                Ok(false) => return Err(app::settings::store::PROBES_EXHAUSTED.to_owned()),
                Err(e) => {
                    tracing::warn!(account_key = %account_key, "people connection test not counted: {e}");
                    return Err("The settings database is unavailable; try again.".to_owned());
                }
            }
            let outcome = self.try_people(account_key).await;
            let (destination, summary) = match &outcome {
                Ok((host, said)) => (host.clone(), format!("passed: {said}")),
                Err((host, why)) => (host.clone(), format!("failed: {why}")),
            };
            tracing::info!(target: "ibex::audit", account_key = %account_key, tested_by = %by,
                destination = %destination, outcome = %summary, "people connection test");
            let record = app::settings::store::ProbeRecord {
                tested_fields: vec![
                    app::definition::sync::PEOPLE_BASE_URL.to_owned(),
                    app::definition::sync::PEOPLE_API_KEY.to_owned(),
                ],
                destination,
                outcome: summary,
                tested_by: by.to_owned(),
                tested_at: now_ms(),
            };
            if let Err(e) = self
                .state
                .settings
                .store()
                .record_probe(account_key, &record)
                .await
            {
                tracing::error!(target: "ibex::audit", account_key = %account_key, "people connection test not recorded: {e}");
            }
            outcome.map(|(_, said)| said).map_err(|(_, why)| why)
        })
    }

    fn control<'a>(
        &'a self,
        account_key: &'a str,
        action: &'a str,
        direction: &'a str,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let Some(action) = Action::parse(action) else {
                return Err("Choose pause, resume or resync.".to_owned());
            };
            let all = self.directions();
            let chosen: Vec<&str> = match direction {
                "" => all,
                named => match all.into_iter().find(|d| *d == named) {
                    Some(d) => vec![d],
                    None => return Err("This app has no such sync direction.".to_owned()),
                },
            };
            let controls = self.controls();
            let unavailable =
                |_| "The change could not be saved; try again in a moment.".to_owned();
            match action {
                Action::Pause => {
                    let paused = controls
                        .pause(account_key, &chosen, by)
                        .await
                        .map_err(unavailable)?;
                    Ok(if paused.is_empty() {
                        "Sync was paused already.".to_owned()
                    } else {
                        "Sync is paused; a run in progress stops at its next page.".to_owned()
                    })
                }
                Action::Resume => {
                    let resumed = controls
                        .resume(account_key, &chosen, by)
                        .await
                        .map_err(unavailable)?;
                    Ok(if resumed.is_empty() {
                        "Sync was not paused.".to_owned()
                    } else {
                        "Sync is resumed.".to_owned()
                    })
                }
                Action::Resync => {
                    for direction in chosen {
                        controls
                            .resync(account_key, direction, by)
                            .await
                            .map_err(|e| match e {
                                ControlError::Running(_) => sentence(&e.to_string()),
                                ControlError::Store(_) => {
                                    "The change could not be saved; try again in a moment."
                                        .to_owned()
                                }
                            })?;
                    }
                    Ok("Everything is sent again by the next run.".to_owned())
                }
            }
        })
    }

    fn retry<'a>(
        &'a self,
        account_key: &'a str,
        by: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send + 'a>> {
        Box::pin(async move {
            self.ready(account_key).await?;
            let unavailable = |_| "The run could not be queued; try again in a moment.".to_owned();
            for direction in [TO_PEOPLE, FROM_PEOPLE] {
                if self
                    .runs
                    .open(account_key, direction)
                    .await
                    .map_err(unavailable)?
                    .is_some()
                {
                    return Err("A run is in progress; retry when it has ended.".to_owned());
                }
            }
            // The run whose failures the page shows: the newest finished one.
            let last = self
                .runs
                .history(account_key, 1)
                .await
                .map_err(unavailable)?
                .into_iter()
                .next()
                .filter(|run| run.counts.failed > 0)
                .ok_or_else(|| "The last run has no failed records to retry.".to_owned())?;
            if self
                .paused_directions(account_key)
                .await?
                .contains(&last.direction)
            {
                return Err("People sync is paused; resume it to retry.".to_owned());
            }
            let id = self
                .runs
                .enqueue_retry(account_key, &last.direction, by, last.id)
                .await
                .map_err(unavailable)?;
            tracing::info!(target: "ibex::audit", account = %account_key, actor = by, run = id, retry_of = last.id, "people sync retry requested");
            Ok(id)
        })
    }
}
