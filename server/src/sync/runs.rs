//! Sync runs as durable jobs in the settings database (SQLite or PostgreSQL), written by hand rather than with a
//! job crate: apalis' SQL backends need sqlx 0.9 in their stable release (ibex is on 0.8), share sqlx's migration
//! table, and lease by worker heartbeat without fencing (docs/sync.md has the comparison).
//!
//! A run is claimed with a lease (`lease_owner`, `lease_until`); on PostgreSQL the claim skips rows another
//! instance holds (`FOR UPDATE SKIP LOCKED`), on SQLite the single UPDATE is atomic. Every page's progress is
//! committed with the lease as a fence: an instance whose lease was taken over (it stalled past `lease_until`)
//! finds its checkpoint refused and stops, so counts and checkpoints come from one holder only. A run whose
//! holder died (`kill -9`) is claimed again once its lease runs out, and resumes at its checkpoint.

use app::settings::store::{now_ms, Backend, SettingsStore, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub const TO_PEOPLE: &str = "to_people";
pub const FROM_PEOPLE: &str = "from_people";

/// Where a run is: the next page (page pagination) or cursor, and whether the source is exhausted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(default)]
    pub page: Option<u64>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// The largest page seen so far: a shorter page is the last one.
    #[serde(default)]
    pub page_size: usize,
    /// People → partner: persons modified at or after this `modifiedAt` are still to be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// A "Retry failed" run: the run whose failed records it sends again, instead of reading the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<i64>,
    /// Set when a retry run's records are committed: a retry resumed after that has nothing left to do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
    /// A retry run reads the failed records in chunks by id: the last id sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<i64>,
    /// Pages this run has committed, held to `IBEX_SYNC_MAX_PAGES` across pauses and takeovers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pages: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The longest failed record stored: past it the record is cut (at a character boundary) and marked, so one
/// enormous record cannot fill the database; the page says so, and "Retry failed" does not send a cut record.
pub const MAX_RECORD_BYTES: usize = 4096;
/// An account's newest runs whose failed records are kept; older runs keep their counts only. With a schedule
/// every minute, a cap per run alone would still let failures pile up run after run.
pub const FAILED_RUNS_KEPT: usize = 10;
/// The longest cursor a run keeps: the partner chooses its cursors, and one is stored in the run's checkpoint at
/// every page, so a longer one ends the run (a hostile partner's 4 MiB cursor would otherwise sit in `sync_runs`).
pub const MAX_CURSOR_BYTES: usize = 2048;
/// An account's newest runs kept in `sync_runs` (older ones are deleted when a run ends), besides any open run and
/// the last completed People → partner run, whose checkpoint the next one starts from.
pub const RUNS_KEPT: usize = 100;
/// What a failed record holds when the record is gone from the source (tagging or deleting its person failed):
/// "Retry failed" has nothing to send for it, and the next complete run handles it again.
pub const GONE_RECORD: &str = "null";
/// A failed record's key and reason as stored (the reason can quote a value of the record).
const MAX_KEY_BYTES: usize = 256;
const MAX_REASON_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
pub fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub read: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub failed: i64,
    /// Records that are not this sync's to write (a person without the identifier).
    #[serde(default)]
    pub skipped: i64,
    /// Persons tagged in People because their record is gone from the source (`[sync] on_delete = "tag"`).
    #[serde(default)]
    pub tagged: i64,
    /// Persons deleted from People because their record is gone from the source (`on_delete = "delete"`).
    #[serde(default)]
    pub deleted: i64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.read += other.read;
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.tagged += other.tagged;
        self.deleted += other.deleted;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub account_key: String,
    pub direction: String,
    pub status: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: i64,
    pub checkpoint: Checkpoint,
    pub counts: Counts,
    pub last_error: Option<String>,
    /// Records in the source, when the list function says.
    pub total: Option<i64>,
    /// Records of the page in flight already handled (not yet in `counts`).
    pub page_done: i64,
}

/// A record the run could not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub record_key: String,
    pub reason: String,
    pub record: String,
}

/// A failed record as stored: its id (the order it was stored in) and whether `record` was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFailure {
    pub id: i64,
    pub failure: Failure,
    pub truncated: bool,
}

/// What one page changes, committed at once.
#[derive(Debug, Default)]
pub struct PageCommit {
    pub next: Checkpoint,
    pub counts: Counts,
    /// (record key, digest) of records written.
    pub written: Vec<(String, String)>,
    pub failures: Vec<Failure>,
    pub total: Option<i64>,
    /// Partner → People: the keys of every record the page read (written, unchanged or failed), marked as seen by
    /// this run; records a complete run did not see are gone from the source.
    pub seen: Vec<String>,
    /// (record key, digest) of what People → partner would send for each person this page wrote to People: a
    /// person ibex itself wrote is then not sent back to the partner unchanged (no echo).
    pub mirrored: Vec<(String, String)>,
    /// Partner → People: records read whose key cannot be derived (no identifier, or one that does not map). Each
    /// may be a record still in the source whose old key would be taken for gone: the run then decides nothing.
    /// Not stored.
    pub unkeyed: i64,
    /// Partner → People: records gone from the source that were handled (tagged, deleted, or found already gone
    /// in People), whose digests are forgotten.
    pub forgotten: Vec<String>,
}

impl PageCommit {
    /// Counts a failed record, and keeps it for storing while fewer than `keep` are kept: past the run's cap
    /// they are not stored anyway, so a page of millions of failing records is counted without building them.
    pub fn fail(&mut self, keep: u64, failure: impl FnOnce() -> Failure) {
        self.counts.failed += 1;
        if u64::try_from(self.failures.len()).unwrap_or(u64::MAX) < keep {
            self.failures.push(failure());
        }
    }
}

#[derive(Clone)]
pub struct Runs {
    store: SettingsStore,
    /// Failed records stored per run; past it a page's failures are counted, not stored.
    failures_kept: u64,
}

const COLUMNS: &str = "id, account_key, direction, status, requested_by, requested_at, started_at, finished_at, \
     attempts, checkpoint, read_count, created_count, updated_count, unchanged_count, failed_count, last_error, total, page_done, skipped_count, \
     tagged_count, deleted_count";

/// `COLUMNS` without the checkpoint (the partner's cursor, up to `MAX_CURSOR_BYTES`): in its place `retry_of`,
/// the one part of it the history shows.
const SUMMARY_COLUMNS: &str = "id, account_key, direction, status, requested_by, requested_at, started_at, \
     finished_at, attempts, retry_of, read_count, created_count, updated_count, unchanged_count, failed_count, last_error, total, page_done, skipped_count, \
     tagged_count, deleted_count";

impl Runs {
    pub fn new(store: SettingsStore) -> Self {
        Runs {
            store,
            failures_kept: super::SyncConfig::FAILURES_KEPT,
        }
    }

    /// The same runs, storing at most `failures_kept` failed records per run (`IBEX_SYNC_FAILURES_KEPT`).
    pub fn keeping(self, failures_kept: u64) -> Self {
        Runs {
            failures_kept,
            ..self
        }
    }

    /// Queues a run unless one is open for the account and direction; returns the open or new run's id.
    pub async fn enqueue(
        &self,
        account_key: &str,
        direction: &str,
        by: &str,
    ) -> Result<i64, StoreError> {
        self.enqueue_from(account_key, direction, by, &Checkpoint::default())
            .await
    }

    /// Queues a run that sends `of_run`'s failed records again (unless a run is open: its id is returned).
    pub async fn enqueue_retry(
        &self,
        account_key: &str,
        direction: &str,
        by: &str,
        of_run: i64,
    ) -> Result<i64, StoreError> {
        let start = Checkpoint {
            retry_of: Some(of_run),
            ..Checkpoint::default()
        };
        self.enqueue_from(account_key, direction, by, &start).await
    }

    async fn enqueue_from(
        &self,
        account_key: &str,
        direction: &str,
        by: &str,
        start: &Checkpoint,
    ) -> Result<i64, StoreError> {
        let pool = self.store.pool();
        if let Some(open) = self.open(account_key, direction).await? {
            return Ok(open.id);
        }
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO sync_runs (account_key, direction, status, requested_by, requested_at, next_attempt_at, checkpoint, \
             retry_of) VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(account_key)
        .bind(direction)
        .bind(by)
        .bind(now)
        .bind(now)
        .bind(serde_json::to_string(start)?)
        .bind(start.retry_of)
        .fetch_one(pool)
        .await;
        match inserted {
            Ok(row) => Ok(row.try_get(0)?),
            // Another instance (or click) queued one between the check and the insert: the unique index says so.
            Err(e) if is_unique_violation(&e) => match self.open(account_key, direction).await? {
                Some(open) => Ok(open.id),
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn open(
        &self,
        account_key: &str,
        direction: &str,
    ) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM sync_runs WHERE account_key = $1 AND direction = $2 \
             AND status IN ('queued', 'running', 'paused') ORDER BY id DESC LIMIT 1"
        ))
        .bind(account_key)
        .bind(direction)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    pub async fn get(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sync_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Newest first, without the checkpoints (the page asks once a second while a run is open): each run's
    /// `checkpoint` holds only `retry_of`.
    pub async fn history(&self, account_key: &str, limit: i64) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sync_runs WHERE account_key = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(account_key)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let checkpoint = Checkpoint {
                    retry_of: row.try_get(9)?,
                    ..Checkpoint::default()
                };
                decode_with(row, checkpoint)
            })
            .collect()
    }

    /// Claims the oldest due run for `owner` until `lease_ms` from now: a queued or paused run whose time has
    /// come, or a running one whose holder's lease ran out; never a run of a direction an admin paused
    /// (`sync_pauses`), which waits, checkpoint and all, until it is resumed.
    pub async fn claim(&self, owner: &str, lease_ms: i64) -> Result<Option<Run>, StoreError> {
        let now = now_ms();
        let lock = match self.store.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE sync_runs SET status = 'running', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $3), page_done = 0 \
             WHERE id = (SELECT id FROM sync_runs WHERE \
                 ((status IN ('queued', 'paused') AND next_attempt_at <= $3) \
                 OR (status = 'running' AND lease_until < $3)) \
                 AND NOT EXISTS (SELECT 1 FROM sync_pauses p WHERE p.account_key = sync_runs.account_key \
                     AND p.direction = sync_runs.direction) \
               ORDER BY id LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Where the page in flight stands (and the source's size, once known), for the progress bar; also extends
    /// the lease. False when the lease is no longer `owner`'s.
    pub async fn progress(
        &self,
        id: i64,
        owner: &str,
        lease_ms: i64,
        page_done: i64,
        total: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sync_runs SET page_done = $1, total = COALESCE($2, total), lease_until = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(page_done)
        .bind(total)
        .bind(now_ms() + lease_ms)
        .bind(id)
        .bind(owner)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends the lease; false when it is no longer `owner`'s.
    pub async fn renew(&self, id: i64, owner: &str, lease_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sync_runs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(now_ms() + lease_ms)
        .bind(id)
        .bind(owner)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits one page: the digests of written records, the failures, the counts and the next checkpoint, in
    /// one transaction fenced by the lease. False (and nothing written) when the lease is no longer `owner`'s.
    pub async fn commit_page(
        &self,
        run: &Run,
        owner: &str,
        lease_ms: i64,
        page: &PageCommit,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.store.pool().begin().await?;
        let fenced = sqlx::query(
            "UPDATE sync_runs SET checkpoint = $1, read_count = read_count + $2, created_count = created_count + $3, \
             updated_count = updated_count + $4, unchanged_count = unchanged_count + $5, \
             failed_count = failed_count + $6, lease_until = $7, total = COALESCE($10, total), page_done = 0, \
             skipped_count = skipped_count + $11, tagged_count = tagged_count + $12, deleted_count = deleted_count + $13 \
             WHERE id = $8 AND lease_owner = $9 AND status = 'running'",
        )
        .bind(serde_json::to_string(&page.next)?)
        .bind(page.counts.read)
        .bind(page.counts.created)
        .bind(page.counts.updated)
        .bind(page.counts.unchanged)
        .bind(page.counts.failed)
        .bind(now + lease_ms)
        .bind(run.id)
        .bind(owner)
        .bind(page.total)
        .bind(page.counts.skipped)
        .bind(page.counts.tagged)
        .bind(page.counts.deleted)
        .execute(&mut *tx)
        .await?;
        if fenced.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for (key, digest) in &page.written {
            sqlx::query(
                "INSERT INTO sync_records (account_key, direction, record_key, digest, synced_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_key, direction, record_key) DO UPDATE SET digest = $4, synced_at = $5",
            )
            .bind(&run.account_key)
            .bind(&run.direction)
            .bind(key)
            .bind(digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // What People → partner would send for the persons just written: the same as People now holds, so not
        // sent back unchanged.
        for (key, digest) in &page.mirrored {
            sqlx::query(
                "INSERT INTO sync_records (account_key, direction, record_key, digest, synced_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account_key, direction, record_key) DO UPDATE SET digest = $4, synced_at = $5",
            )
            .bind(&run.account_key)
            .bind(FROM_PEOPLE)
            .bind(key)
            .bind(digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // One statement per chunk keeps within both databases' parameter limits.
        for chunk in page.seen.chunks(200) {
            let sql = format!(
                "UPDATE sync_records SET seen_run = $1 WHERE account_key = $2 AND direction = $3 \
                 AND record_key IN ({})",
                placeholders(4, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(run.id)
                .bind(&run.account_key)
                .bind(&run.direction);
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in page.forgotten.chunks(200) {
            let sql = format!(
                "DELETE FROM sync_records WHERE account_key = $1 AND direction = $2 AND record_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(&run.account_key)
                .bind(&run.direction);
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(&mut *tx).await?;
        }
        // Up to `failures_kept` per run, each cut to its bounds: the count (above) goes on past it.
        let room = if page.failures.is_empty() {
            0
        } else {
            let kept: i64 = sqlx::query("SELECT COUNT(*) FROM sync_failures WHERE run_id = $1")
                .bind(run.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            usize::try_from(i64::try_from(self.failures_kept).unwrap_or(i64::MAX) - kept)
                .unwrap_or(0)
        };
        for failure in page.failures.iter().take(room) {
            let (record, truncated) = cut(&failure.record, MAX_RECORD_BYTES);
            sqlx::query(
                "INSERT INTO sync_failures (run_id, account_key, record_key, reason, record, failed_at, truncated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run.id)
            .bind(&run.account_key)
            .bind(cut(&failure.record_key, MAX_KEY_BYTES).0)
            .bind(cut(&failure.reason, MAX_REASON_BYTES).0)
            .bind(record)
            .bind(now)
            .bind(i64::from(truncated))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records what was written for one record outside a run (the Moments endpoint), so the next run finds it
    /// unchanged.
    pub async fn remember(
        &self,
        account_key: &str,
        direction: &str,
        key: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_records (account_key, direction, record_key, digest, synced_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account_key, direction, record_key) DO UPDATE SET digest = $4, synced_at = $5",
        )
        .bind(account_key)
        .bind(direction)
        .bind(key)
        .bind(digest)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Up to `limit` keys (after `after`, in key order) of the account's partner → People records that run `run_id`
    /// did not read: gone from the source, when that run read all of it.
    pub async fn gone(
        &self,
        account_key: &str,
        run_id: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_key FROM sync_records WHERE account_key = $1 AND direction = $2 \
             AND (seen_run IS NULL OR seen_run < $3) AND record_key > $4 ORDER BY record_key LIMIT $5",
        )
        .bind(account_key)
        .bind(TO_PEOPLE)
        .bind(run_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// How many of the account's partner → People records run `run_id` did not read (as `gone` lists them), and
    /// how many there are.
    pub async fn gone_count(
        &self,
        account_key: &str,
        run_id: i64,
    ) -> Result<(i64, i64), StoreError> {
        let gone: i64 = sqlx::query(
            "SELECT COUNT(*) FROM sync_records WHERE account_key = $1 AND direction = $2 \
             AND (seen_run IS NULL OR seen_run < $3)",
        )
        .bind(account_key)
        .bind(TO_PEOPLE)
        .bind(run_id)
        .fetch_one(self.store.pool())
        .await?
        .try_get(0)?;
        let known: i64 = sqlx::query(
            "SELECT COUNT(*) FROM sync_records WHERE account_key = $1 AND direction = $2",
        )
        .bind(account_key)
        .bind(TO_PEOPLE)
        .fetch_one(self.store.pool())
        .await?
        .try_get(0)?;
        Ok((gone, known))
    }

    /// The digests last written for these records of the account.
    pub async fn digests(
        &self,
        account_key: &str,
        direction: &str,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut found = std::collections::HashMap::new();
        // One query per chunk keeps the statement within both databases' parameter limits.
        for chunk in keys.chunks(200) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT record_key, digest FROM sync_records WHERE account_key = $1 AND direction = $2 \
                 AND record_key IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(account_key).bind(direction);
            for key in chunk {
                query = query.bind(key);
            }
            for row in query.fetch_all(self.store.pool()).await? {
                found.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        Ok(found)
    }

    /// Ends a run: `done`, or `failed` with the reason (a run that cannot go on without a person's help, such
    /// as missing People credentials). Its checkpoint loses the cursor: an ended run is never resumed, and the
    /// next partner → People run starts at the first page; what the next People → partner run starts from
    /// (`since`) and what the history shows stay.
    pub async fn finish(
        &self,
        id: i64,
        owner: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let held = sqlx::query(
            "SELECT checkpoint FROM sync_runs WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(held) = held else {
            return Ok(false);
        };
        // Unreadable only if edited by hand: the run ends all the same, with an empty checkpoint.
        let checkpoint = serde_json::from_str::<Checkpoint>(&held.try_get::<String, _>(0)?)
            .map(|c| Checkpoint { cursor: None, ..c })
            .unwrap_or_default();
        // Fenced again: a takeover between the read and this write leaves the run to its new holder. One
        // transaction with the run's webhook event, when the deployment has an endpoint (webhooks::events).
        let mut tx = self.store.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE sync_runs SET status = $1, finished_at = $2, last_error = $3, lease_owner = NULL, \
             lease_until = NULL, checkpoint = $6 WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(status)
        .bind(now_ms())
        .bind(error)
        .bind(id)
        .bind(owner)
        .bind(serde_json::to_string(&checkpoint)?)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if self.store.webhooks_enabled() {
            crate::webhooks::events::run_finished(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Pauses a run after an outage: it keeps its checkpoint and is claimed again after `retry_in_ms`.
    pub async fn pause(
        &self,
        id: i64,
        owner: &str,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'paused', next_attempt_at = $1, last_error = $2, page_done = 0, lease_owner = NULL, \
             lease_until = NULL WHERE id = $3 AND lease_owner = $4 AND status = 'running'",
        )
        .bind(now_ms() + retry_in_ms)
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where the account's last completed People → partner run got to (retries excluded): the next run reads
    /// persons modified since then.
    /// `prune_runs` keeps this run whatever its age.
    pub async fn last_since(&self, account_key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT checkpoint FROM sync_runs WHERE account_key = $1 AND direction = $2 AND status = 'done' \
             AND retry_of IS NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(account_key)
        .bind(FROM_PEOPLE)
        .fetch_optional(self.store.pool())
        .await?;
        match row {
            Some(row) => {
                let checkpoint: Checkpoint =
                    serde_json::from_str(row.try_get::<String, _>(0)?.as_str())?;
                Ok(checkpoint.since)
            }
            None => Ok(None),
        }
    }

    /// Every failed record a run stored (at most `failures_kept`), for tests and tools: the page and "Retry
    /// failed" read them a bounded number at a time (`failure_list`, `failures_after`).
    pub async fn failures(&self, run_id: i64) -> Result<Vec<Failure>, StoreError> {
        let limit = i64::try_from(self.failures_kept).unwrap_or(i64::MAX);
        Ok(self
            .failures_after(run_id, 0, limit)
            .await?
            .into_iter()
            .map(|f| f.failure)
            .collect())
    }

    /// Up to `limit` of a run's failed records stored after the one with id `after`, in the order stored.
    pub async fn failures_after(
        &self,
        run_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredFailure>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, record_key, reason, record, truncated FROM sync_failures \
             WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(run_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredFailure {
                    id: r.try_get(0)?,
                    failure: Failure {
                        record_key: r.try_get(1)?,
                        reason: r.try_get(2)?,
                        record: r.try_get(3)?,
                    },
                    truncated: r.try_get::<i64, _>(4)? != 0,
                })
            })
            .collect()
    }

    /// The first `limit` failed records of a run for the page, without the records themselves: (key, reason,
    /// whether the stored record was cut).
    pub async fn failure_list(
        &self,
        run_id: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_key, reason, truncated FROM sync_failures WHERE run_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(run_id)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? != 0)))
            .collect()
    }

    /// Deletes the stored failed records of the account's runs older than its newest `FAILED_RUNS_KEPT` (the
    /// page and "Retry failed" only read the newest finished run's); those runs keep their counts.
    pub async fn prune_failures(&self, account_key: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sync_failures WHERE account_key = $1 AND run_id < (SELECT MIN(id) FROM \
             (SELECT id FROM sync_runs WHERE account_key = $1 ORDER BY id DESC LIMIT $2) AS newest)",
        )
        .bind(account_key)
        .bind(i64::try_from(FAILED_RUNS_KEPT).unwrap_or(i64::MAX))
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes the account's ended runs older than its newest `RUNS_KEPT`, so a schedule every minute does not
    /// grow `sync_runs` without end. Kept whatever their age: open runs, and the last completed People → partner
    /// run (`last_since` reads its checkpoint). Their failed records went before (`prune_failures`).
    pub async fn prune_runs(&self, account_key: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sync_runs WHERE account_key = $1 AND status IN ('done', 'failed') \
             AND id < (SELECT MIN(id) FROM \
                 (SELECT id FROM sync_runs WHERE account_key = $1 ORDER BY id DESC LIMIT $2) AS newest) \
             AND id <> COALESCE((SELECT MAX(id) FROM sync_runs WHERE account_key = $1 AND direction = $3 \
                 AND status = 'done' AND retry_of IS NULL), 0)",
        )
        .bind(account_key)
        .bind(i64::try_from(RUNS_KEPT).unwrap_or(i64::MAX))
        .bind(FROM_PEOPLE)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// How many failed records a run stored.
    pub async fn failure_count(&self, run_id: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM sync_failures WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(self.store.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The accounts that turned a sync direction on: the schedule looks at these, not at every configured
    /// account (with 100 000 accounts, reading each one every minute took a core; docs/benchmarks.md).
    /// The database only narrows by text (both backends, no JSON parse there): `"key":true` as serde_json
    /// writes it (compact), so accounts that turned sync off are not even read. One hand-edited row that is not
    /// JSON is skipped with a warning here instead of failing the query and with it every account's schedule.
    pub async fn syncing_accounts(&self) -> Result<Vec<String>, StoreError> {
        use app::definition::sync::{PEOPLE_SYNC_FROM_ON, PEOPLE_SYNC_ON};
        let rows = sqlx::query(
            "SELECT account_key, values_json FROM account_settings \
             WHERE values_json LIKE $1 OR values_json LIKE $2 ORDER BY account_key",
        )
        .bind(format!("%\"{PEOPLE_SYNC_ON}\":true%"))
        .bind(format!("%\"{PEOPLE_SYNC_FROM_ON}\":true%"))
        .fetch_all(self.store.pool())
        .await?;
        let mut accounts = Vec::new();
        for row in &rows {
            let account: String = row.try_get(0)?;
            let values: String = row.try_get(1)?;
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&values) {
                Ok(values) => {
                    let on = |key: &str| values.get(key) == Some(&serde_json::Value::Bool(true));
                    if on(PEOPLE_SYNC_ON) || on(PEOPLE_SYNC_FROM_ON) {
                        accounts.push(account);
                    }
                }
                Err(e) => tracing::warn!(
                    account = %account,
                    "stored settings are not valid JSON, so the sync schedule skips this account: {e}"
                ),
            }
        }
        Ok(accounts)
    }

    /// When the account's newest run of `direction` was asked for.
    pub async fn last_requested(
        &self,
        account_key: &str,
        direction: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(requested_at) FROM sync_runs WHERE account_key = $1 AND direction = $2",
        )
        .bind(account_key)
        .bind(direction)
        .fetch_one(self.store.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Runs waiting to be claimed (queued, or paused and due), for the queue-depth metric.
    pub async fn depth(&self) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM sync_runs WHERE status IN ('queued', 'paused')")
                .fetch_one(self.store.pool())
                .await?;
        Ok(row.try_get(0)?)
    }
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Run, StoreError> {
    let checkpoint = serde_json::from_str(row.try_get::<String, _>(9)?.as_str())?;
    decode_with(row, checkpoint)
}

/// A run from a row of `COLUMNS` or `SUMMARY_COLUMNS`, with its checkpoint read already.
fn decode_with(row: &sqlx::any::AnyRow, checkpoint: Checkpoint) -> Result<Run, StoreError> {
    Ok(Run {
        id: row.try_get(0)?,
        account_key: row.try_get(1)?,
        direction: row.try_get(2)?,
        status: row.try_get(3)?,
        requested_by: row.try_get(4)?,
        requested_at: row.try_get(5)?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        attempts: row.try_get(8)?,
        checkpoint,
        counts: Counts {
            read: row.try_get(10)?,
            created: row.try_get(11)?,
            updated: row.try_get(12)?,
            unchanged: row.try_get(13)?,
            failed: row.try_get(14)?,
            skipped: row.try_get(18)?,
            tagged: row.try_get(19)?,
            deleted: row.try_get(20)?,
        },
        last_error: row.try_get(15)?,
        total: row.try_get(16)?,
        page_done: row.try_get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::{cut, Failure, PageCommit};

    #[test]
    fn a_page_keeps_failures_up_to_the_cap_and_counts_them_all() {
        let mut page = PageCommit::default();
        let mut built = 0;
        for n in 0..5 {
            page.fail(2, || {
                built += 1;
                Failure {
                    record_key: n.to_string(),
                    reason: "bad".into(),
                    record: "0".into(),
                }
            });
        }
        assert_eq!((page.counts.failed, page.failures.len(), built), (5, 2, 2));
    }

    #[test]
    fn a_cut_ends_at_a_character_boundary() {
        assert_eq!(cut("abc", 3), ("abc", false));
        assert_eq!(cut("abcd", 3), ("abc", true));
        // "Ž" is two bytes: three bytes of "ŽŽ" would split the second one.
        assert_eq!(cut("ŽŽ", 3), ("Ž", true));
        assert_eq!(cut("Ž", 1), ("", true));
    }
}
