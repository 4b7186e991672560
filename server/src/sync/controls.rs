//! An admin's (or the operator's) hand on an account's sync: pause and resume it per direction, and "Resync
//! everything" (forget what was written, so the next run sends every record). Each is recorded with who did it
//! (`sync_control_log`, shown in the sync panel's history) and in the audit log. A paused direction gets no
//! scheduled or requested runs; the claim skips its runs (`runs::Runs::claim`), and a run in progress stops at its
//! next page (`engine`), keeping its checkpoint until it is resumed.

use super::runs::{FROM_PEOPLE, TO_PEOPLE};
use app::settings::store::{now_ms, SettingsStore, StoreError};
use sqlx::Row;
use std::collections::HashSet;

/// Control log entries kept per account (older ones are deleted as new ones come).
const LOG_KEPT: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Resync,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Resync => "resync",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "resync" => Some(Action::Resync),
            _ => None,
        }
    }
}

/// A direction as the page and the command line name it.
pub fn direction_label(direction: &str) -> &'static str {
    match direction {
        TO_PEOPLE => "partner → People",
        FROM_PEOPLE => "People → partner",
        _ => "unknown direction",
    }
}

/// One paused direction of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub direction: String,
    pub by: String,
    pub at: i64,
}

/// One line of an account's control log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub action: String,
    /// `None`: every direction of the app.
    pub direction: Option<String>,
    pub actor: String,
    pub at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("a {} run is in progress; pause sync (the run stops at its next page) or wait until it has ended, then resync", direction_label(.0))]
    Running(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ControlError {
    fn from(e: sqlx::Error) -> Self {
        ControlError::Store(e.into())
    }
}

/// What a resync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resynced {
    /// Open runs (queued, or waiting paused) that were ended: the next run starts afresh.
    pub runs_ended: u64,
    /// Records whose digest was forgotten.
    pub records_forgotten: u64,
}

#[derive(Clone)]
pub struct Controls {
    store: SettingsStore,
}

impl Controls {
    pub fn new(store: SettingsStore) -> Self {
        Controls { store }
    }

    /// Pauses `directions` of the account; returns those that were not paused already (only they are logged).
    pub async fn pause(
        &self,
        account_key: &str,
        directions: &[&str],
        by: &str,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut tx = self.store.pool().begin().await?;
        let mut paused = Vec::new();
        for direction in directions {
            let done = sqlx::query(
                "INSERT INTO sync_pauses (account_key, direction, paused_by, paused_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account_key, direction) DO NOTHING",
            )
            .bind(account_key)
            .bind(*direction)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                paused.push((*direction).to_owned());
            }
        }
        if !paused.is_empty() {
            log(
                &mut tx,
                account_key,
                Action::Pause,
                scope(directions),
                by,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if !paused.is_empty() {
            tracing::info!(target: "ibex::audit", account_key = %account_key, actor = %by, directions = ?paused, "people sync paused");
        }
        Ok(paused)
    }

    /// Resumes `directions`; returns those that were paused. Their waiting runs are due at once.
    pub async fn resume(
        &self,
        account_key: &str,
        directions: &[&str],
        by: &str,
    ) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut tx = self.store.pool().begin().await?;
        let mut resumed = Vec::new();
        for direction in directions {
            let done = sqlx::query(
                "DELETE FROM sync_pauses WHERE account_key = $1 AND direction = $2 RETURNING paused_at",
            )
            .bind(account_key)
            .bind(*direction)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = done {
                resumed.push((*direction).to_owned());
                // The admin's pause does not count against the run's time bound (IBEX_SYNC_MAX_RUN_SECS): a run
                // it held has its start moved on by as long as the pause lasted.
                let held = (now - row.try_get::<i64, _>(0)?).max(0);
                sqlx::query(
                    "UPDATE sync_runs SET next_attempt_at = $1, started_at = started_at + $4 \
                     WHERE account_key = $2 AND direction = $3 AND status = 'paused'",
                )
                .bind(now)
                .bind(account_key)
                .bind(*direction)
                .bind(held)
                .execute(&mut *tx)
                .await?;
            }
        }
        if !resumed.is_empty() {
            log(
                &mut tx,
                account_key,
                Action::Resume,
                scope(directions),
                by,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if !resumed.is_empty() {
            tracing::info!(target: "ibex::audit", account_key = %account_key, actor = %by, directions = ?resumed, "people sync resumed");
        }
        Ok(resumed)
    }

    /// "Resync everything" for one direction, in one transaction: an open run that no worker holds is ended (a
    /// held one refuses the resync: it would go on writing with digests it no longer has), the records' digests
    /// are forgotten (the next run writes every record, and for partner → People no longer knows which records it
    /// wrote, so a record removed from the source before then is not found gone), and so are the checkpoints the
    /// next People → partner run would start from (it reads every person).
    pub async fn resync(
        &self,
        account_key: &str,
        direction: &str,
        by: &str,
    ) -> Result<Resynced, ControlError> {
        let now = now_ms();
        let mut tx = self.store.pool().begin().await?;
        // On PostgreSQL the open runs are locked first: a worker's claim that took one meanwhile is waited for and
        // then seen held (the count below reads after it), and a claim that comes after skips the locked rows
        // until the resync has ended them. SQLite's writers are serialised already.
        if matches!(
            self.store.backend(),
            app::settings::store::Backend::Postgres
        ) {
            sqlx::query(
                "SELECT id FROM sync_runs WHERE account_key = $1 AND direction = $2 \
                 AND status IN ('queued', 'running', 'paused') FOR UPDATE",
            )
            .bind(account_key)
            .bind(direction)
            .fetch_all(&mut *tx)
            .await?;
        }
        let held = sqlx::query(
            "SELECT COUNT(*) FROM sync_runs WHERE account_key = $1 AND direction = $2 AND status = 'running' \
             AND lease_until >= $3",
        )
        .bind(account_key)
        .bind(direction)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>(0)?;
        if held > 0 {
            tx.rollback().await?;
            return Err(ControlError::Running(direction.to_owned()));
        }
        let ended_ids = sqlx::query(
            "UPDATE sync_runs SET status = 'failed', finished_at = $1, last_error = $2, lease_owner = NULL, \
             lease_until = NULL, page_done = 0 WHERE account_key = $3 AND direction = $4 \
             AND (status IN ('queued', 'paused') OR (status = 'running' AND lease_until < $1)) RETURNING id",
        )
        .bind(now)
        .bind(format!(
            "ended by \"Resync everything\" ({by}): the next run sends every record"
        ))
        .bind(account_key)
        .bind(direction)
        .fetch_all(&mut *tx)
        .await?;
        let ended = u64::try_from(ended_ids.len()).unwrap_or(u64::MAX);
        // Ended like any failed run: its `sync.run.failed` event, in this transaction (as `Runs::finish` writes it).
        if self.store.webhooks_enabled() {
            for row in &ended_ids {
                crate::webhooks::events::run_finished(&mut tx, row.try_get(0)?).await?;
            }
        }
        let forgotten =
            sqlx::query("DELETE FROM sync_records WHERE account_key = $1 AND direction = $2")
                .bind(account_key)
                .bind(direction)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        // Ended runs keep their counts and `retry_of` (columns of their own); their checkpoints only told the next
        // People → partner run where to start.
        sqlx::query(
            "UPDATE sync_runs SET checkpoint = '{}' WHERE account_key = $1 AND direction = $2 \
             AND status IN ('done', 'failed')",
        )
        .bind(account_key)
        .bind(direction)
        .execute(&mut *tx)
        .await?;
        log(
            &mut tx,
            account_key,
            Action::Resync,
            Some(direction),
            by,
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(target: "ibex::audit", account_key = %account_key, actor = %by, direction, runs_ended = ended,
            records_forgotten = forgotten, "people sync resynced");
        Ok(Resynced {
            runs_ended: ended,
            records_forgotten: forgotten,
        })
    }

    /// The account's paused directions, with who paused them.
    pub async fn paused(&self, account_key: &str) -> Result<Vec<Pause>, StoreError> {
        let rows = sqlx::query(
            "SELECT direction, paused_by, paused_at FROM sync_pauses WHERE account_key = $1 ORDER BY direction DESC",
        )
        .bind(account_key)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Pause {
                    direction: r.try_get(0)?,
                    by: r.try_get(1)?,
                    at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Who paused this direction of the account, if it is paused.
    pub async fn paused_by(
        &self,
        account_key: &str,
        direction: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT paused_by FROM sync_pauses WHERE account_key = $1 AND direction = $2",
        )
        .bind(account_key)
        .bind(direction)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Every paused (account, direction): the schedule reads them once, not once per account.
    pub async fn all_paused(&self) -> Result<HashSet<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT account_key, direction FROM sync_pauses")
            .fetch_all(self.store.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The account's newest control log entries, newest first.
    pub async fn log(&self, account_key: &str, limit: i64) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT action, direction, actor, at FROM sync_control_log WHERE account_key = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(account_key)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    action: r.try_get(0)?,
                    direction: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    at: r.try_get(3)?,
                })
            })
            .collect()
    }
}

/// The direction a control names in the log: one, or `None` for every direction asked.
fn scope<'a>(directions: &[&'a str]) -> Option<&'a str> {
    match directions {
        [one] => Some(one),
        _ => None,
    }
}

async fn log(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    account_key: &str,
    action: Action,
    direction: Option<&str>,
    by: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sync_control_log (account_key, action, direction, actor, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_key)
    .bind(action.as_str())
    .bind(direction)
    .bind(by)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM sync_control_log WHERE account_key = $1 AND id < (SELECT MIN(id) FROM \
         (SELECT id FROM sync_control_log WHERE account_key = $1 ORDER BY id DESC LIMIT $2) AS newest)",
    )
    .bind(account_key)
    .bind(LOG_KEPT)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
