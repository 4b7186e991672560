//! The sync worker: claims due runs (`runs::Runs::claim`), runs each page by page (partner list function →
//! persons → People), and commits every page's progress under its lease. A People or partner outage pauses the
//! run at its last checkpoint; missing credentials end it with the reason; a record People refuses is recorded
//! and the run goes on. A run whose direction an admin paused stops at its next page and waits, checkpoint and
//! all, until it is resumed. A complete partner → People run ends by handling the records it did not read, gone
//! from the source, as `[sync] on_delete` says.

use super::controls::Controls;
use super::people::{Limits, PeopleTarget, PeopleWriter, PersonOutcome, WriteError, Written};
use super::person::{fields_off, map_record, mirrored, person_inputs, record_key, FieldsOff};
use super::runs::{
    Checkpoint, Failure, PageCommit, Run, Runs, FROM_PEOPLE, GONE_RECORD, MAX_CURSOR_BYTES,
    MAX_RECORD_BYTES, TO_PEOPLE,
};
use super::SyncConfig;
use crate::errors::ApiError;
use crate::signed::inputs::Inputs;
use crate::signed::invoke::call_partner;
use crate::state::AppState;
use app::definition::sync::SyncSpec;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// How often a page in flight saves how far it is (the configuration page polls once a second).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Persons per page read from People for People → partner (its list allows up to 1000).
const PEOPLE_PAGE: usize = 100;

/// Failed records a "Retry failed" run reads and sends at a time (each chunk committed like a page).
const RETRY_CHUNK: usize = 100;

/// Records gone from the source handled (tagged or deleted) and committed at a time.
const GONE_CHUNK: i64 = 100;

/// How often the worker looks for accounts whose schedule is due.
const SCHEDULE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct SyncEngine {
    pub runs: Runs,
    /// Which accounts' directions an admin paused.
    pub controls: Controls,
    pub limits: Arc<Limits>,
    pub config: SyncConfig,
    /// This instance's name in leases: unique per process start, so a restarted instance never mistakes a dead
    /// predecessor's lease for its own.
    pub owner: String,
    /// Tests only (no instance ibex starts sets it): called with the account and each partner record before it
    /// is mapped, so a test can make partner data reach a panic the way a parser bug would.
    pub record_hook: Option<RecordHook>,
}

/// See `SyncEngine::record_hook`.
pub type RecordHook = Arc<dyn Fn(&str, &Value) + Send + Sync>;

/// How a run ended this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Done, with what the admin should know (the run history shows it): "deletes skipped: …" when the run could
    /// not tell which records are gone from the source.
    DoneWithNote(String),
    Paused(String),
    /// Stopped at a page boundary because an admin (or the operator) paused the direction: the run waits at its
    /// checkpoint until it is resumed, and decides nothing about records gone from the source.
    Held(String),
    Failed(String),
    /// Another instance holds the run now (this one stalled past its lease).
    LostLease,
}

impl SyncEngine {
    /// An engine with limits of its own (tests choose theirs).
    pub fn new(state: &AppState, config: SyncConfig) -> Self {
        let limits = Limits::new(&config, state.metrics.clone());
        Self::with_limits(state, config, limits)
    }

    /// This instance's worker: its People limits are the ones the Moments endpoint also spends.
    pub fn for_instance(state: &AppState) -> Self {
        Self::with_limits(state, state.sync.clone(), state.people_limits.clone())
    }

    fn with_limits(state: &AppState, config: SyncConfig, limits: Arc<Limits>) -> Self {
        SyncEngine {
            runs: Runs::new(state.settings.store().clone()).keeping(config.failures_kept),
            controls: Controls::new(state.settings.store().clone()),
            limits,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            config,
            record_hook: None,
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// `Some` when an admin paused the run's direction: checked at every page boundary, so a pause stops a run in
    /// progress before its next page. A pause that cannot be read does not stop the run (the claim reads it again).
    async fn held(&self, run: &Run) -> Option<Outcome> {
        match self
            .controls
            .paused_by(&run.account_key, &run.direction)
            .await
        {
            Ok(Some(by)) => Some(Outcome::Held(format!("paused by {by}"))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(run = run.id, account = %run.account_key, "sync pause not read: {e}");
                None
            }
        }
    }

    /// `Some` when the run has read as many pages, or lasted as long, as one run may (checked before each page,
    /// so what was committed stays committed and the checkpoint is never past a page not written).
    fn over_bounds(&self, run: &Run, pages: u64) -> Option<Outcome> {
        if pages >= self.config.max_pages {
            return Some(Outcome::Failed(format!(
                "the run stopped after {pages} pages, the most one run may read (IBEX_SYNC_MAX_PAGES); \
                 the partner's list may not end"
            )));
        }
        let now = app::settings::store::now_ms();
        let lasted = now - run.started_at.unwrap_or(now);
        let max = i64::try_from(self.config.max_run.as_millis()).unwrap_or(i64::MAX);
        (lasted > max).then(|| {
            Outcome::Failed(format!(
                "the run went on longer than {} (IBEX_SYNC_MAX_RUN_SECS) and stopped after {pages} pages",
                duration_text(self.config.max_run)
            ))
        })
    }

    /// Works until the process ends: queue what the schedule says is due (once a minute), claim, run,
    /// repeat; sleep when nothing is due.
    pub fn spawn(self, state: AppState) {
        tokio::spawn(async move {
            let mut scheduled: Option<Instant> = None;
            loop {
                if scheduled.is_none_or(|at| at.elapsed() >= SCHEDULE_EVERY) {
                    scheduled = Some(Instant::now());
                    if let Err(e) = self.schedule(&state).await {
                        tracing::warn!("sync schedule: {e}");
                    }
                }
                match self.work_once(&state).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        if let Ok(depth) = self.runs.depth().await {
                            state.metrics.set_sync_queue(depth);
                        }
                    }
                    Err(e) => tracing::warn!("sync worker: {e}"),
                }
                tokio::time::sleep(self.config.poll).await;
            }
        });
    }

    /// Queues a run for every account whose sync is on and whose last run was asked for at least its
    /// interval ago. Every instance may do this: one open run per account is all the database allows.
    pub async fn schedule(
        &self,
        state: &AppState,
    ) -> Result<usize, app::settings::store::StoreError> {
        use app::definition::sync::PEOPLE_SYNC_EVERY;
        let mut queued = 0;
        let paused = self.controls.all_paused().await?;
        for account in self.runs.syncing_accounts().await? {
            let Ok(settings) = state.settings.resolved(&account).await else {
                continue;
            };
            let every_ms = settings
                .get(PEOPLE_SYNC_EVERY)
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                * 60_000.0;
            if every_ms <= 0.0 {
                continue;
            }
            for direction in directions_on(state, &settings) {
                if paused.contains(&(account.clone(), direction.to_owned())) {
                    continue;
                }
                let last = self.runs.last_requested(&account, direction).await?;
                let now = app::settings::store::now_ms();
                if last.is_none_or(|at| (now - at) as f64 >= every_ms) {
                    self.runs.enqueue(&account, direction, "schedule").await?;
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Claims and runs one due run, if there is one.
    pub async fn work_once(
        &self,
        state: &AppState,
    ) -> Result<Option<(Run, Outcome)>, app::settings::store::StoreError> {
        let Some(run) = self.runs.claim(&self.owner, self.lease_ms()).await? else {
            return Ok(None);
        };
        let started = Instant::now();
        // In a task of its own, so that a panic (partner data reaching a bug) fails this run with the reason
        // instead of ending the worker, which goes on with the other accounts' runs.
        let mut task = {
            let (engine, state, claimed) = (self.clone(), state.clone(), run.clone());
            AbortOnDrop(tokio::spawn(
                async move { engine.run(&state, &claimed).await },
            ))
        };
        let outcome = match (&mut task.0).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let why = if e.is_panic() {
                    panic_text(e.into_panic())
                } else {
                    e.to_string()
                };
                tracing::error!(run = run.id, account = %run.account_key, "sync run panicked: {why}");
                Outcome::Failed(short(&format!(
                    "the run stopped on an internal error (a bug in ibex, logged): {why}"
                )))
            }
        };
        let ended = match &outcome {
            Outcome::Done => self.runs.finish(run.id, &self.owner, "done", None).await?,
            Outcome::DoneWithNote(note) => {
                self.runs
                    .finish(run.id, &self.owner, "done", Some(note))
                    .await?
            }
            Outcome::Failed(reason) => {
                self.runs
                    .finish(run.id, &self.owner, "failed", Some(reason))
                    .await?
            }
            Outcome::Paused(reason) => {
                let pause = i64::try_from(self.config.pause.as_millis()).unwrap_or(30_000);
                self.runs.pause(run.id, &self.owner, pause, reason).await?
            }
            // Due again at once: the claim skips it while its direction stays paused.
            Outcome::Held(reason) => self.runs.pause(run.id, &self.owner, 0, reason).await?,
            Outcome::LostLease => false,
        };
        if ended
            && matches!(
                outcome,
                Outcome::Done | Outcome::DoneWithNote(_) | Outcome::Failed(_)
            )
        {
            if let Err(e) = self.runs.prune_failures(&run.account_key).await {
                tracing::warn!(account = %run.account_key, "old sync failures not pruned: {e}");
            }
            if let Err(e) = self.runs.prune_runs(&run.account_key).await {
                tracing::warn!(account = %run.account_key, "old sync runs not pruned: {e}");
            }
        }
        let counts = self
            .runs
            .get(run.id)
            .await?
            .map(|r| r.counts)
            .unwrap_or_default();
        // One line per run (per attempt of a paused one), with everything an operator asks first.
        tracing::info!(
            run = run.id,
            account = %run.account_key,
            direction = %run.direction,
            outcome = ?outcome,
            recorded = ended,
            read = counts.read,
            created = counts.created,
            updated = counts.updated,
            unchanged = counts.unchanged,
            failed = counts.failed,
            tagged = counts.tagged,
            deleted = counts.deleted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync run"
        );
        Ok(Some((run, outcome)))
    }

    async fn run(&self, state: &AppState, run: &Run) -> Outcome {
        let Some(sync) = &state.definition.sync else {
            return Outcome::Failed("this app defines no [sync]".into());
        };
        let settings = match state.settings.resolved(&run.account_key).await {
            Ok(s) => s,
            Err(app::settings::SettingsError::NotConfigured { missing, .. }) => {
                return Outcome::Failed(format!(
                    "the app is not configured for this account ({} missing)",
                    missing.join(", ")
                ))
            }
            Err(e) => return Outcome::Paused(format!("the settings could not be read: {e}")),
        };
        let target = match PeopleTarget::from_settings(&settings, &self.config) {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let writer = PeopleWriter {
            http: &state.http,
            limits: &self.limits,
            target: &target,
            account_key: &run.account_key,
            sync,
            activity: Some(&state.activity),
        };
        let function = match run.direction.as_str() {
            TO_PEOPLE => Some(&sync.to_people.function),
            FROM_PEOPLE => sync.from_people.as_ref().map(|f| &f.function),
            _ => None,
        };
        let Some(plan) =
            function.and_then(|name| state.functions.iter().find(|p| p.function.name == *name))
        else {
            return Outcome::Failed(format!(
                "this app has no function for the sync direction {}",
                run.direction
            ));
        };
        let off = fields_off(sync, &settings);
        let partner = Partner {
            state,
            plan,
            settings: &settings,
            off: &off,
            account: &run.account_key,
        };
        match (run.direction.as_str(), run.checkpoint.retry_of) {
            (_, Some(of_run)) => self.retry(&partner, &writer, sync, run, of_run).await,
            (FROM_PEOPLE, None) => self.people_to_partner(&partner, &writer, sync, run).await,
            _ => self.partner_to_people(&partner, &writer, sync, run).await,
        }
    }

    /// Partner → People: the partner's list, page by page, each page written to People and committed.
    async fn partner_to_people(
        &self,
        partner: &Partner<'_>,
        writer: &PeopleWriter<'_>,
        sync: &SyncSpec,
        run: &Run,
    ) -> Outcome {
        let Partner {
            state,
            plan,
            settings,
            account,
            ..
        } = *partner;
        let mut checkpoint = run.checkpoint.clone();
        // The next page, read while this one is written to People (People's limit, not the partner, should be
        // what a run waits on). Dropped unused when the run stops.
        let mut fetched = None;
        // Digests of the cursors this attempt has been given (at most `max_pages`): one given again is a loop.
        let mut seen: HashSet<[u8; 32]> = checkpoint.cursor.iter().map(|c| digest(c)).collect();
        // Records this attempt read without a key (only an attempt that began at the first page decides anything).
        let mut unkeyed = 0;
        loop {
            if let Some(stop) = self.held(run).await {
                return stop;
            }
            if let Some(stop) = self.over_bounds(run, checkpoint.pages) {
                return stop;
            }
            let outputs = match fetched.take() {
                Some(outputs) => outputs,
                None => {
                    partner_page(
                        state,
                        plan,
                        settings,
                        account,
                        &page_inputs(sync, &checkpoint),
                    )
                    .await
                }
            };
            let mut outputs = match outputs {
                Ok(outputs) => outputs,
                Err(e) => {
                    let (status, code) = e.status_and_code();
                    return if status.is_server_error() {
                        Outcome::Paused(format!("the partner's list failed ({code})"))
                    } else {
                        Outcome::Failed(format!("the partner's list was refused ({code}): {e}"))
                    };
                }
            };
            // A page without its list is not an empty page: taken for one, it would end the list and have every
            // record taken for gone.
            let records: Vec<Value> = match outputs.remove(&sync.to_people.output) {
                Some(Value::Array(items)) => items,
                other => {
                    return Outcome::Failed(format!(
                        "the partner's page {} has {} `{}` list; the run stopped without deciding what is gone",
                        checkpoint.pages + 1,
                        if other.is_some() { "something else than its" } else { "no" },
                        sync.to_people.output
                    ))
                }
            };
            let count = records.len();
            let most = self.config.max_page_records;
            if count > most {
                return Outcome::Failed(format!(
                    "the partner's page {} has {count} records, more than the {most} one page may have \
                     (IBEX_SYNC_MAX_PAGE_RECORDS); the run stopped before writing it",
                    checkpoint.pages + 1
                ));
            }
            let mut next = match next_checkpoint(sync, &checkpoint, &outputs, count) {
                Ok(next) => next,
                Err(reason) => {
                    return Outcome::Failed(format!(
                        "{reason} (page {}); the run stopped without deciding what is gone",
                        checkpoint.pages + 1
                    ))
                }
            };
            // A cursor too long to keep ends the run after this page (stored at every page, it would weigh on
            // the database and on every read of the run).
            let too_long = next
                .as_ref()
                .and_then(|n| n.cursor.as_deref())
                .filter(|cursor| cursor.len() > MAX_CURSOR_BYTES)
                .map(|cursor| {
                    format!(
                        "the partner's next cursor is {} bytes, longer than the {} KiB one run keeps (after page \
                         {}); the run stopped",
                        cursor.len(),
                        MAX_CURSOR_BYTES / 1024,
                        checkpoint.pages + 1
                    )
                });
            if too_long.is_some() {
                next = None;
            }
            // A cursor given before in this run ends it after this page: the partner would send the same pages
            // again and again while the lease is renewed.
            let looped = next
                .as_ref()
                .and_then(|n| n.cursor.as_deref())
                .filter(|cursor| !seen.insert(digest(cursor)))
                .map(|cursor| {
                    format!(
                        "the partner returned cursor {} again (page {}); the run stopped to avoid a loop",
                        shown(cursor),
                        checkpoint.pages + 1
                    )
                });
            if looped.is_some() {
                next = None;
            }
            let mut page = PageCommit {
                total: sync
                    .to_people
                    .total_output
                    .as_ref()
                    .and_then(|name| outputs.get(name))
                    .and_then(Value::as_i64),
                ..PageCommit::default()
            };
            let write = self.write_page(writer, sync, run, &records, &mut page, partner.off);
            // Not the page past the page cap: it would not be written.
            let prefetch = next
                .as_ref()
                .filter(|_| checkpoint.pages + 1 < self.config.max_pages);
            let written = match prefetch {
                Some(next) => {
                    let given = page_inputs(sync, next);
                    let (written, read) =
                        tokio::join!(write, partner_page(state, plan, settings, account, &given));
                    fetched = Some(read);
                    written
                }
                None => write.await,
            };
            if let Err(e) = written {
                return stopped(e);
            }
            let last = next.is_none();
            page.next = next.unwrap_or(Checkpoint {
                page: checkpoint.page,
                page_size: checkpoint.page_size,
                ..Checkpoint::default()
            });
            page.next.pages = checkpoint.pages + 1;
            if let Some(stop) = self.commit(state, run, &page).await {
                return stop;
            }
            unkeyed += page.unkeyed;
            if let Some(reason) = too_long.or(looped) {
                return Outcome::Failed(reason);
            }
            if last {
                // Only a run that read the whole source in one pass (this attempt began at the first page) decides
                // what is gone: one that was paused or taken over after a page read it in several, and pages can
                // shift in between.
                if run.checkpoint.pages == 0 {
                    if let Some(stop) = self
                        .sweep(partner, writer, sync, run, &page.next, unkeyed)
                        .await
                    {
                        return stop;
                    }
                }
                return Outcome::Done;
            }
            checkpoint = page.next;
        }
    }

    /// After a complete partner → People run: the records it did not read are gone from the source, and are
    /// handled as `[sync] on_delete` says (tagged, or deleted where the account turned that on), `GONE_CHUNK` at
    /// a time, each chunk committed like a page with its counts; a handled record's digest is forgotten, so it is
    /// not handled again. A person People refuses to change is recorded as failed and its record is tried again by
    /// the next complete run. `Some` when the run cannot go on (paused, People down or refusing the key).
    async fn sweep(
        &self,
        partner: &Partner<'_>,
        writer: &PeopleWriter<'_>,
        sync: &SyncSpec,
        run: &Run,
        at: &Checkpoint,
        unkeyed: i64,
    ) -> Option<Outcome> {
        use app::definition::sync::{OnDelete, PEOPLE_SYNC_DELETE_ON};
        let tag = match sync.on_delete {
            OnDelete::Ignore => return None,
            OnDelete::Tag => Some(app::definition::sync::delete_tag(
                sync,
                &partner.state.definition.app.name,
            )),
            OnDelete::Delete
                if partner.settings.get(PEOPLE_SYNC_DELETE_ON) == Some(&Value::Bool(true)) =>
            {
                None
            }
            OnDelete::Delete => return None,
        };
        match self.sweep_refused(run, unkeyed, sync).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                tracing::warn!(run = run.id, account = %run.account_key, "sync deletes skipped: {why}");
                return Some(Outcome::DoneWithNote(format!("deletes skipped: {why}")));
            }
            Err(e) => {
                return Some(Outcome::Paused(format!(
                    "the records gone from the source could not be counted: {e}"
                )))
            }
        }
        let mut after = String::new();
        loop {
            if let Some(stop) = self.held(run).await {
                return Some(stop);
            }
            // The opt-in as it is now, before each chunk: an admin who turns deleting off during a long sweep
            // stops it at the next chunk.
            if tag.is_none() {
                match partner.state.settings.resolved(&run.account_key).await {
                    Ok(settings)
                        if settings.get(PEOPLE_SYNC_DELETE_ON) == Some(&Value::Bool(true)) => {}
                    Ok(_) => return Some(Outcome::DoneWithNote(
                        "deletes stopped: the account turned deleting persons off during the run"
                            .into(),
                    )),
                    Err(e) => {
                        return Some(Outcome::Paused(format!(
                            "the settings could not be read: {e}"
                        )))
                    }
                }
            }
            let keys = match self
                .runs
                .gone(&run.account_key, run.id, &after, GONE_CHUNK)
                .await
            {
                Ok(keys) => keys,
                Err(e) => {
                    return Some(Outcome::Paused(format!(
                        "the records gone from the source could not be read: {e}"
                    )))
                }
            };
            // The lease renewed (and still this instance's) before anything is acted on.
            if let Err(e) = self.report(run, 0, None).await {
                return Some(stopped(e));
            }
            let mut page = PageCommit {
                next: at.clone(),
                ..PageCommit::default()
            };
            let mut reported = Instant::now();
            for key in &keys {
                // Renews the lease: a chunk at People's 5 calls a second takes 20 s.
                if reported.elapsed() >= PROGRESS_EVERY {
                    reported = Instant::now();
                    if let Err(e) = self.report(run, 0, None).await {
                        return Some(stopped(e));
                    }
                }
                let handled = match &tag {
                    Some(tag) => writer.tag(key, tag).await,
                    None => writer.delete(key).await,
                };
                match handled {
                    Ok(found) => {
                        match (&tag, found) {
                            (Some(_), true) => page.counts.tagged += 1,
                            (None, true) => page.counts.deleted += 1,
                            // Not in People (any more): nothing to tag or delete.
                            (_, false) => {}
                        }
                        page.forgotten.push(key.clone());
                    }
                    Err(WriteError::Invalid(reason)) => {
                        let verb = if tag.is_some() { "tag" } else { "delete" };
                        page.fail(self.config.failures_kept, || Failure {
                            record_key: key.clone(),
                            reason: short(&format!(
                                "gone from the source, but People refused to {verb} its person: {reason}"
                            )),
                            record: GONE_RECORD.to_owned(),
                        });
                    }
                    Err(e) => return Some(stopped(e)),
                }
            }
            if let Some(stop) = self.commit(partner.state, run, &page).await {
                return Some(stop);
            }
            match keys.last() {
                Some(last) if keys.len() == GONE_CHUNK as usize => after = last.clone(),
                _ => return None,
            }
        }
    }

    /// Why the records this run did not read cannot be taken for gone from the source, if they cannot. The end of
    /// the partner's list is a guess (an empty page, a short one, no next cursor), and a wrong guess would tag or
    /// delete every person: a run that read nothing, fewer records than the partner said it has, or that would
    /// take more than `IBEX_SYNC_DELETE_MAX_PERCENT` of the records synced for gone, decides nothing.
    async fn sweep_refused(
        &self,
        run: &Run,
        unkeyed: i64,
        sync: &SyncSpec,
    ) -> Result<Option<String>, app::settings::store::StoreError> {
        let Some(read) = self.runs.get(run.id).await? else {
            return Ok(Some("the run could not be read back".into()));
        };
        let count = read.counts.read;
        if count == 0 {
            return Ok(Some(
                "the partner's list had no records (a wrong address or answer is likelier than every record \
                 deleted)"
                    .into(),
            ));
        }
        if let Some(total) = read.total.filter(|total| count < *total) {
            return Ok(Some(format!(
                "the partner said it has {total} records, and the run read {count}"
            )));
        }
        if unkeyed > 0 {
            return Ok(Some(format!(
                "the run read {unkeyed} record(s) whose {} cannot be derived from the mapping, so it cannot tell \
                 which persons they are",
                sync.identifier.as_str()
            )));
        }
        let (gone, known) = self.runs.gone_count(&run.account_key, run.id).await?;
        let most = i64::from(self.config.delete_max_percent);
        if gone.saturating_mul(100) > known.saturating_mul(most) {
            return Ok(Some(format!(
                "{gone} of the {known} records synced were not in the partner's list, more than the {most} % one \
                 run may take for gone (IBEX_SYNC_DELETE_MAX_PERCENT)"
            )));
        }
        Ok(None)
    }

    /// People → partner: persons modified since where the last run got to, oldest first, each written to the
    /// partner by `[sync.from_people] function`; the checkpoint is the newest `modifiedAt` read (and a page
    /// number while many persons share one).
    async fn people_to_partner(
        &self,
        partner: &Partner<'_>,
        writer: &PeopleWriter<'_>,
        sync: &SyncSpec,
        run: &Run,
    ) -> Outcome {
        let mut checkpoint = run.checkpoint.clone();
        if checkpoint == Checkpoint::default() {
            checkpoint.since = match self.runs.last_since(&run.account_key).await {
                Ok(since) => since,
                Err(e) => {
                    return Outcome::Paused(format!("the last checkpoint could not be read: {e}"))
                }
            };
        }
        loop {
            if let Some(stop) = self.held(run).await {
                return stop;
            }
            if let Some(stop) = self.over_bounds(run, checkpoint.pages) {
                return stop;
            }
            let page_no = checkpoint.page.unwrap_or(1);
            let persons = match writer
                .changed(checkpoint.since.as_deref(), page_no, PEOPLE_PAGE)
                .await
            {
                Ok(persons) => persons,
                Err(e) => return stopped(e),
            };
            let mut page = PageCommit::default();
            if let Err(stop) = self
                .write_partner_page(partner, sync, run, &persons, &mut page)
                .await
            {
                return stop;
            }
            let last = persons.len() < PEOPLE_PAGE;
            let newest = persons
                .last()
                .and_then(|p| p["modifiedAt"].as_str())
                .map(str::to_owned);
            // `#gte since` reads the persons at `since` again: a full page all at `since` moves on by page number.
            page.next = match newest {
                Some(at) if Some(&at) != checkpoint.since.as_ref() => Checkpoint {
                    since: Some(at),
                    page: (!last).then_some(1),
                    ..Checkpoint::default()
                },
                _ => Checkpoint {
                    since: checkpoint.since.clone(),
                    page: (!last).then_some(page_no + 1),
                    ..Checkpoint::default()
                },
            };
            page.next.pages = checkpoint.pages + 1;
            if let Some(stop) = self.commit(partner.state, run, &page).await {
                return stop;
            }
            if last {
                return Outcome::Done;
            }
            checkpoint = page.next;
        }
    }

    /// Commits a page; `Some` when the run cannot go on.
    async fn commit(&self, state: &AppState, run: &Run, page: &PageCommit) -> Option<Outcome> {
        match self
            .runs
            .commit_page(run, &self.owner, self.lease_ms(), page)
            .await
        {
            Ok(true) => {
                state
                    .metrics
                    .observe_sync_page(&run.direction, &page.counts);
                None
            }
            Ok(false) => Some(Outcome::LostLease),
            Err(e) => Some(Outcome::Paused(format!("progress could not be saved: {e}"))),
        }
    }

    /// Writes changed persons to the partner through the same middleware and settings as every partner call. A
    /// refusal of one record (4xx, an input it cannot take) is recorded and the page goes on; an outage or a
    /// refused key ends the page uncommitted.
    async fn write_partner_page(
        &self,
        partner: &Partner<'_>,
        sync: &SyncSpec,
        run: &Run,
        persons: &[Value],
        page: &mut PageCommit,
    ) -> Result<(), Outcome> {
        let mut writes = Vec::with_capacity(persons.len());
        for person in persons {
            page.counts.read += 1;
            match person_inputs(sync, person, partner.off) {
                Some(write) => writes.push((write, person)),
                None => page.counts.skipped += 1,
            }
        }
        let keys: Vec<String> = writes.iter().map(|(w, _)| w.key.clone()).collect();
        let known = self
            .runs
            .digests(&run.account_key, &run.direction, &keys)
            .await
            .map_err(|e| Outcome::Paused(format!("the sync records could not be read: {e}")))?;
        let mut handled = page.counts.skipped;
        let mut reported = Instant::now();
        for (write, person) in writes {
            handled += 1;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                self.report(run, handled - 1, None).await.map_err(stopped)?;
            }
            if known.get(&write.key) == Some(&write.digest) {
                page.counts.unchanged += 1;
                continue;
            }
            let given: HashMap<String, Value> = write.inputs.into_iter().collect();
            match partner.write(&given).await {
                Ok(()) => {
                    page.counts.updated += 1;
                    page.written.push((write.key, write.digest));
                }
                Err(PartnerFault::Record(reason)) => {
                    page.fail(self.config.failures_kept, || Failure {
                        record_key: write.key,
                        reason,
                        record: person.to_string(),
                    })
                }
                Err(PartnerFault::Stop(outcome)) => return Err(outcome),
            }
        }
        Ok(())
    }

    /// "Retry failed": `of_run`'s failed records, as they were read, mapped and written again, `RETRY_CHUNK` at a
    /// time in the order they were stored (each chunk committed like a page, so a resumed retry goes on after the
    /// last chunk sent). Those that fail again are this run's failures; the source is not read.
    async fn retry(
        &self,
        partner: &Partner<'_>,
        writer: &PeopleWriter<'_>,
        sync: &SyncSpec,
        run: &Run,
        of_run: i64,
    ) -> Outcome {
        let mut checkpoint = run.checkpoint.clone();
        if checkpoint.retried {
            return Outcome::Done;
        }
        let unavailable = |e: app::settings::store::StoreError| {
            Outcome::Paused(format!("the failed records could not be read: {e}"))
        };
        let total = match self.runs.failure_count(of_run).await {
            Ok(total) => Some(total),
            Err(e) => return unavailable(e),
        };
        loop {
            if let Some(stop) = self.held(run).await {
                return stop;
            }
            if let Some(stop) = self.over_bounds(run, checkpoint.pages) {
                return stop;
            }
            let after = checkpoint.retry_after.unwrap_or(0);
            let chunk = match self
                .runs
                .failures_after(of_run, after, RETRY_CHUNK as i64)
                .await
            {
                Ok(chunk) => chunk,
                Err(e) => return unavailable(e),
            };
            let last = chunk.len() < RETRY_CHUNK;
            let mut page = PageCommit {
                total,
                next: Checkpoint {
                    retry_of: Some(of_run),
                    retry_after: chunk.last().map(|f| f.id).or(checkpoint.retry_after),
                    retried: last,
                    pages: checkpoint.pages + 1,
                    ..Checkpoint::default()
                },
                ..PageCommit::default()
            };
            let (mut records, mut unsendable) = (Vec::with_capacity(chunk.len()), Vec::new());
            for stored in chunk {
                let failure = stored.failure;
                if failure.record == GONE_RECORD {
                    unsendable.push(Failure {
                        reason: "the record is gone from the source; the next complete run handles its person \
                                 again"
                            .into(),
                        ..failure
                    });
                    continue;
                }
                if stored.truncated {
                    unsendable.push(Failure {
                        reason: format!(
                            "the stored record was cut to {} KiB, so it cannot be sent again as it was; the next \
                             full run reads it again",
                            MAX_RECORD_BYTES / 1024
                        ),
                        ..failure
                    });
                    continue;
                }
                match serde_json::from_str::<Value>(&failure.record) {
                    Ok(record) => records.push(record),
                    // Stored by this code from a `Value`, so unreadable only if the row was edited by hand.
                    Err(_) => unsendable.push(Failure {
                        reason: "the stored record could not be read".into(),
                        ..failure
                    }),
                }
            }
            let written = if run.direction == FROM_PEOPLE {
                self.write_partner_page(partner, sync, run, &records, &mut page)
                    .await
            } else {
                self.write_page(writer, sync, run, &records, &mut page, partner.off)
                    .await
                    .map_err(stopped)
            };
            if let Err(stop) = written {
                return stop;
            }
            let unsendable_count = i64::try_from(unsendable.len()).unwrap_or(0);
            page.counts.read += unsendable_count;
            page.counts.failed += unsendable_count;
            page.failures.extend(unsendable);
            if let Some(stop) = self.commit(partner.state, run, &page).await {
                return stop;
            }
            if last {
                return Outcome::Done;
            }
            checkpoint = page.next;
        }
    }

    /// Saves where the page stands and renews the lease; a lost lease stops the page.
    async fn report(&self, run: &Run, done: i64, total: Option<i64>) -> Result<(), WriteError> {
        match self
            .runs
            .progress(run.id, &self.owner, self.lease_ms(), done, total)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(WriteError::Outage("the run's lease was lost".into())),
            Err(e) => Err(WriteError::Outage(format!(
                "progress could not be saved: {e}"
            ))),
        }
    }

    /// Maps and writes one page's records: those whose digest changed go to People in batches of
    /// `batch_size` (one upsert call each), and each person's outcome is taken from People's answer. A record's
    /// own failure is recorded in `page`; an outage or a refused key ends the page (its progress is not committed,
    /// so the page is done again on resume: writes are idempotent upserts by identifier, and what People already
    /// holds comes back `NOT_MODIFIED`).
    async fn write_page(
        &self,
        writer: &PeopleWriter<'_>,
        sync: &SyncSpec,
        run: &Run,
        records: &[Value],
        page: &mut PageCommit,
        off: &FieldsOff,
    ) -> Result<(), WriteError> {
        let keep = self.config.failures_kept;
        let failed_before = page.counts.failed;
        let mut persons = Vec::with_capacity(records.len());
        // What a complete run read: the records it did not are gone from the source. Only where something is done
        // with them: the run that reaches the last page marks everything it reads before it looks.
        let marks = run.checkpoint.retry_of.is_none()
            && sync.on_delete != app::definition::sync::OnDelete::Ignore;
        for record in records {
            page.counts.read += 1;
            if let Some(hook) = &self.record_hook {
                hook(&run.account_key, record);
            }
            if marks {
                match record_key(sync, record, off) {
                    Some(key) => page.seen.push(key),
                    None => page.unkeyed += 1,
                }
            }
            match map_record(sync, record, off) {
                Ok(person) => persons.push((person, record)),
                Err(e) => page.fail(keep, || failure(record, sync, e.to_string())),
            }
        }
        let keys: Vec<String> = persons.iter().map(|(p, _)| p.key.clone()).collect();
        let known = self
            .runs
            .digests(&run.account_key, &run.direction, &keys)
            .await
            .map_err(|e| WriteError::Outage(format!("the sync records could not be read: {e}")))?;
        let mut handled = page.counts.failed - failed_before;
        let (due, same): (Vec<_>, Vec<_>) = persons
            .into_iter()
            .partition(|(person, _)| known.get(&person.key) != Some(&person.digest));
        page.counts.unchanged += i64::try_from(same.len()).unwrap_or(0);
        handled += i64::try_from(same.len()).unwrap_or(0);
        // The progress bar moves within a page, and the lease is renewed on the way: a long page (rate limits,
        // Retry-After) must not outlive it.
        self.report(run, handled, page.total).await?;
        let mut reported = Instant::now();
        // v2's lookup then write is one person per call (two calls each): reported person by person, like a batch.
        let batch_size = match sync.write {
            app::definition::sync::WriteMode::Upsert => self.config.batch_size.clamp(1, 1000),
            app::definition::sync::WriteMode::LookupThenWrite => 1,
        };
        for batch in due.chunks(batch_size) {
            let sent: Vec<&super::person::Person> = batch.iter().map(|(p, _)| p).collect();
            let outcomes = writer.write_batch(&sent).await?;
            for ((person, record), outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    PersonOutcome::Written(Written::Created) => page.counts.created += 1,
                    PersonOutcome::Written(Written::Updated) => page.counts.updated += 1,
                    PersonOutcome::Unchanged => page.counts.unchanged += 1,
                    PersonOutcome::Refused(reason) => {
                        page.fail(keep, || {
                            failure(record, sync, short(&format!("People refused it: {reason}")))
                        });
                        continue;
                    }
                }
                page.written
                    .push((person.key.clone(), person.digest.clone()));
                // People now holds what People → partner would send back: not an echo to send.
                page.mirrored.extend(mirrored(sync, person, off));
            }
            handled += i64::try_from(batch.len()).unwrap_or(0);
            // After every upsert (at most 5 a second); every half second for persons written one by one.
            if batch_size > 1 || reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                self.report(run, handled, page.total).await?;
            }
        }
        Ok(())
    }
}

/// How a People error ends a page: a refused key stops the run until an admin fixes it; anything else pauses it.
fn stopped(e: WriteError) -> Outcome {
    match e {
        WriteError::Refused(_) => Outcome::Failed(e.to_string()),
        _ => Outcome::Paused(e.to_string()),
    }
}

/// The partner function a run calls, with the account's settings.
#[derive(Clone, Copy)]
struct Partner<'a> {
    state: &'a AppState,
    plan: &'a crate::signed::functions::FunctionPlan,
    settings: &'a app::settings::ResolvedSettings,
    /// The person fields this account does not sync.
    off: &'a FieldsOff,
    /// Whose run: its calls count in that account's activity.
    account: &'a str,
}

enum PartnerFault {
    /// This record only: recorded with the reason, the page goes on.
    Record(String),
    /// The run cannot go on now.
    Stop(Outcome),
}

impl Partner<'_> {
    /// One record written by the partner function (its outputs are not needed).
    async fn write(&self, given: &HashMap<String, Value>) -> Result<(), PartnerFault> {
        use crate::partner::PartnerError as P;
        check_person_values(given).map_err(PartnerFault::Record)?;
        let inputs = Inputs::from_values(&self.plan.function, given)
            .map_err(|e| PartnerFault::Record(short(&e.to_string())))?;
        let started = Instant::now();
        let outcome = call_partner(self.state, self.plan, self.settings, &inputs).await;
        count(
            self.state,
            self.account,
            self.plan,
            started,
            outcome.as_ref().err(),
        );
        match outcome {
            Ok(_) => Ok(()),
            // This record's values cannot make a request (`..` in a path, a URL too long): its own failure. A
            // person anyone can edit in People must not stop the account's sync.
            Err(e @ (ApiError::Input(_) | ApiError::Partner(P::Build(_)))) => {
                Err(PartnerFault::Record(short(&e.to_string())))
            }
            Err(ApiError::Partner(P::ClientError { status, excerpt })) => match status {
                401 | 403 => Err(PartnerFault::Stop(Outcome::Failed(format!(
                    "the partner refused the account's credentials (HTTP {status})"
                )))),
                408 | 429 => Err(PartnerFault::Stop(Outcome::Paused(format!(
                    "the partner asked to slow down (HTTP {status})"
                )))),
                _ => Err(PartnerFault::Record(short(&format!(
                    "the partner refused it (HTTP {status}): {excerpt}"
                )))),
            },
            Err(e) => {
                let (status, code) = e.status_and_code();
                Err(PartnerFault::Stop(if status.is_server_error() {
                    Outcome::Paused(format!("the partner's update failed ({code})"))
                } else {
                    Outcome::Failed(short(&format!(
                        "the partner's update was refused ({code}): {e}"
                    )))
                }))
            }
        }
    }
}

/// The longest value a person field may send the partner, and the longest reason kept for a failed record.
const MAX_VALUE_CHARS: usize = 1000;
const MAX_REASON_CHARS: usize = 300;

/// A person's values as People → partner sends them: no control characters (a CR/LF in an email would reach a
/// partner that builds mail headers from it) and no unbounded text. `Err` names the input.
pub fn check_person_values(given: &HashMap<String, Value>) -> Result<(), String> {
    for (input, value) in given {
        let Some(text) = value.as_str() else { continue };
        if text.chars().any(char::is_control) {
            return Err(format!("`{input}` contains control characters"));
        }
        if text.chars().count() > MAX_VALUE_CHARS {
            return Err(format!(
                "`{input}` is longer than {MAX_VALUE_CHARS} characters"
            ));
        }
    }
    Ok(())
}

/// A reason as stored and shown: bounded, so one record's enormous value cannot fill the run's history.
fn short(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => format!("{}…", &reason[..at]),
        None => reason.to_owned(),
    }
}

/// The sync directions the account has turned on (partner → People, and People → partner where declared).
pub fn directions_on(
    state: &AppState,
    settings: &app::settings::ResolvedSettings,
) -> Vec<&'static str> {
    use app::definition::sync::{PEOPLE_SYNC_FROM_ON, PEOPLE_SYNC_ON};
    let on = |key| settings.get(key) == Some(&Value::Bool(true));
    let mut directions = Vec::new();
    if on(PEOPLE_SYNC_ON) {
        directions.push(TO_PEOPLE);
    }
    let declared = state
        .definition
        .sync
        .as_ref()
        .is_some_and(|s| s.from_people.is_some());
    if declared && on(PEOPLE_SYNC_FROM_ON) {
        directions.push(FROM_PEOPLE);
    }
    directions
}

fn failure(record: &Value, sync: &SyncSpec, reason: String) -> Failure {
    let key = sync
        .to_people
        .fields
        .iter()
        .find(|f| f.person == sync.identifier.field())
        .and_then(|f| f.item.as_ref())
        .and_then(|item| record.get(item))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    Failure {
        record_key: key,
        reason,
        record: record.to_string(),
    }
}

/// The list function's inputs for the page at `checkpoint`: its page number or cursor.
fn page_inputs(sync: &SyncSpec, checkpoint: &Checkpoint) -> HashMap<String, Value> {
    let mut given = HashMap::new();
    if let Some(input) = &sync.to_people.page_input {
        given.insert(input.clone(), Value::from(checkpoint.page.unwrap_or(1)));
    }
    if let (Some(input), Some(cursor)) = (&sync.to_people.cursor_input, &checkpoint.cursor) {
        given.insert(input.clone(), Value::from(cursor.clone()));
    }
    given
}

async fn partner_page(
    state: &AppState,
    plan: &crate::signed::functions::FunctionPlan,
    settings: &app::settings::ResolvedSettings,
    account: &str,
    given: &HashMap<String, Value>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let inputs = Inputs::from_values(&plan.function, given)?;
    let started = Instant::now();
    let outcome = call_partner(state, plan, settings, &inputs).await;
    count(state, account, plan, started, outcome.as_ref().err());
    outcome
}

/// One of a run's partner calls, in the account's activity (People's are counted by `PeopleWriter`).
fn count(
    state: &AppState,
    account: &str,
    plan: &crate::signed::functions::FunctionPlan,
    started: Instant,
    error: Option<&ApiError>,
) {
    state.activity.record(&crate::activity::CallRecord::of(
        account,
        crate::activity::Surface::Sync,
        &plan.function.name,
        started.elapsed(),
        error,
    ));
}

/// The checkpoint after a page, or `None` when it was the last: page pagination ends on an empty page or one
/// shorter than the largest seen; cursor pagination ends when no next cursor comes back. `Err` when the page
/// neither goes on nor ends the way a list ends: a next cursor equal to the one just sent, or an empty page that
/// still gives a next cursor (taken for the last page, either would have every record not read taken for gone).
fn next_checkpoint(
    sync: &SyncSpec,
    current: &Checkpoint,
    outputs: &serde_json::Map<String, Value>,
    count: usize,
) -> Result<Option<Checkpoint>, String> {
    let to = &sync.to_people;
    if to.page_input.is_some() {
        if count == 0 || count < current.page_size {
            return Ok(None);
        }
        return Ok(Some(Checkpoint {
            page: Some(current.page.unwrap_or(1) + 1),
            page_size: current.page_size.max(count),
            ..Checkpoint::default()
        }));
    }
    if let Some(output) = &to.cursor_output {
        let Some(next) = outputs
            .get(output)
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|c| !c.is_empty())
        else {
            return Ok(None);
        };
        if Some(&next) == current.cursor.as_ref() {
            return Err(format!(
                "the partner returned cursor {} again",
                shown(&next)
            ));
        }
        if count == 0 {
            return Err(format!(
                "the partner's page has no records but a next cursor {}",
                shown(&next)
            ));
        }
        return Ok(Some(Checkpoint {
            cursor: Some(next),
            page_size: current.page_size.max(count),
            ..Checkpoint::default()
        }));
    }
    Ok(None)
}

/// A cursor's digest: the set of cursors seen holds these, whatever size the partner makes its cursors.
fn digest(cursor: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(cursor.as_bytes()).into()
}

/// A partner's value as a reason quotes it: its start, control characters escaped.
fn shown(value: &str) -> String {
    let start: String = value
        .chars()
        .take(64)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(64).is_some() {
        format!("{start}…")
    } else {
        start
    }
}

/// A cap as the reason names it: "6 h", "90 min", "45 s".
fn duration_text(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// What a panic said (`panic!` with a literal or with a format).
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// A run's task, stopped when the worker that awaits it is dropped (as the run was before it had a task of its
/// own), so no run goes on unwatched.
struct AbortOnDrop(tokio::task::JoinHandle<Outcome>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
