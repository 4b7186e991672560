//! The activity tables (migration `20261209000001_activity`): written in batches by `flush`, read by `view`.
//! Every write adds to what is there (an upsert per row), so several instances, and an instance restarted within
//! a minute, add up.

use super::recorder::{AccountWindow, FailedCall, Signal, FAILURES_KEPT};
use super::{Surface, LATENCY_BUCKETS};
use app::settings::store::{Backend, SettingsStore, StoreError};
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;
use std::sync::Arc;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// Minute rows serve the last hour's view; a few hours are kept so a late batch still lands.
const MINUTES_KEPT_MS: i64 = 3 * HOUR_MS;
/// Rows per multi-row statement on PostgreSQL, where each statement is a round trip: 36 values each stays far
/// below its bind limit. SQLite, in process, writes one row per (cached, prepared) statement: measured with
/// `examples/bench_activity`, its 200-row upserts took 55 ms each, 0.27 ms a row.
const ROWS_PER_STATEMENT: usize = 200;

/// One row of `activity_calls`, summed over whatever the key does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsRow {
    pub at_ms: i64,
    pub surface: Surface,
    pub function: String,
    pub calls: i64,
    pub failures: i64,
    pub latency: [i64; LATENCY_BUCKETS],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    pub surface: Surface,
    pub function: String,
    pub code: String,
    pub status: u16,
    pub calls: i64,
}

/// A failed call as the view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRow {
    pub at_ms: i64,
    pub request_id: String,
    pub surface: Surface,
    pub function: String,
    pub code: String,
    pub status: u16,
}

/// An account's credentials as one source sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub source: String,
    pub failing_since_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    pub last_status: Option<u16>,
    pub last_ok_ms: Option<i64>,
}

/// A change of an account's credentials' state, written with its row (and, when webhooks are on, its event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub account_key: String,
    pub source: &'static str,
    pub failing: bool,
    pub status: Option<u16>,
    pub since_ms: i64,
}

#[derive(Clone)]
pub struct ActivityStore {
    store: SettingsStore,
}

type CallsKey = (Arc<str>, i64, i64, Surface, Arc<str>);

impl ActivityStore {
    pub fn new(store: SettingsStore) -> Self {
        ActivityStore { store }
    }

    /// Adds the windows' counters (per minute and per hour), their failed calls and their credentials' news (with
    /// their events) in one transaction, so a failed write can be retried whole without counting anything twice.
    pub async fn write(
        &self,
        windows: &[(Arc<str>, AccountWindow)],
    ) -> Result<Vec<HealthChange>, StoreError> {
        // A signed key the operator linked to another account's settings (`ibex settings link`) counts for that
        // account, as its calls use that account's settings: its view and its events name one account, and a
        // later re-link does not carry this history along. Links are the operator's few exceptions: read whole.
        let links: HashMap<String, Arc<str>> =
            sqlx::query("SELECT signed_key, settings_key FROM account_links")
                .fetch_all(self.store.pool())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get::<String, _>(0)?,
                        Arc::from(row.try_get::<String, _>(1)?),
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?;
        let windows: Vec<(Arc<str>, &AccountWindow)> = windows
            .iter()
            .map(|(account, window)| {
                (
                    links
                        .get(&**account)
                        .cloned()
                        .unwrap_or_else(|| account.clone()),
                    window,
                )
            })
            .collect();
        let mut calls: HashMap<CallsKey, (i64, i64, [i64; LATENCY_BUCKETS])> = HashMap::new();
        let mut outcomes: HashMap<(CallsKey, &'static str, u16), i64> = HashMap::new();
        for (account, window) in &windows {
            for cell in &window.cells {
                for (span, at) in [
                    (MINUTE_MS, cell.minute_ms),
                    (HOUR_MS, cell.minute_ms - cell.minute_ms.rem_euclid(HOUR_MS)),
                ] {
                    let key = (
                        account.clone(),
                        span,
                        at,
                        cell.surface,
                        cell.function.clone(),
                    );
                    let entry = calls
                        .entry(key.clone())
                        .or_insert((0, 0, [0; LATENCY_BUCKETS]));
                    entry.0 += cell.calls as i64;
                    entry.1 += cell.failures as i64;
                    for (sum, n) in entry.2.iter_mut().zip(cell.latency) {
                        *sum += n as i64;
                    }
                    for &(code, status, n) in &cell.outcomes {
                        *outcomes.entry((key.clone(), code, status)).or_default() += n as i64;
                    }
                }
            }
        }
        let rows_per_statement = match self.store.backend() {
            Backend::Postgres => ROWS_PER_STATEMENT,
            Backend::Sqlite => 1,
        };
        let mut tx = self.store.pool().begin().await?;
        // In key order: instances writing the same rows at once then lock them in one order, never crosswise.
        let mut calls: Vec<_> = calls.into_iter().collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        for chunk in calls.chunks(rows_per_statement) {
            let lat: Vec<String> = (0..LATENCY_BUCKETS).map(|k| format!("lat{k}")).collect();
            let mut sql = format!(
                "INSERT INTO activity_calls (account_key, span_ms, at_ms, surface, function, calls, failures, {}) VALUES ",
                lat.join(", ")
            );
            push_placeholders(&mut sql, chunk.len(), 7 + LATENCY_BUCKETS);
            sql.push_str(
                " ON CONFLICT (account_key, span_ms, at_ms, surface, function) DO UPDATE SET \
                 calls = activity_calls.calls + excluded.calls, \
                 failures = activity_calls.failures + excluded.failures",
            );
            for l in &lat {
                sql.push_str(&format!(", {l} = activity_calls.{l} + excluded.{l}"));
            }
            let mut query = sqlx::query(&sql);
            for ((account, span, at, surface, function), (n, failed, latency)) in chunk {
                query = query
                    .bind(account.to_string())
                    .bind(*span)
                    .bind(*at)
                    .bind(surface.as_str())
                    .bind(function.to_string())
                    .bind(*n)
                    .bind(*failed);
                for count in latency {
                    query = query.bind(*count);
                }
            }
            query.execute(&mut *tx).await?;
        }
        let mut outcomes: Vec<_> = outcomes.into_iter().collect();
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        for chunk in outcomes.chunks(rows_per_statement) {
            let mut sql = String::from(
                "INSERT INTO activity_outcomes (account_key, span_ms, at_ms, surface, function, code, status, calls) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 8);
            sql.push_str(
                " ON CONFLICT (account_key, span_ms, at_ms, surface, function, code, status) DO UPDATE SET \
                 calls = activity_outcomes.calls + excluded.calls",
            );
            let mut query = sqlx::query(&sql);
            for (((account, span, at, surface, function), code, status), n) in chunk {
                query = query
                    .bind(account.to_string())
                    .bind(*span)
                    .bind(*at)
                    .bind(surface.as_str())
                    .bind(function.to_string())
                    .bind(*code)
                    .bind(i64::from(*status))
                    .bind(*n);
            }
            query.execute(&mut *tx).await?;
        }
        let failed: Vec<(&Arc<str>, &FailedCall)> = windows
            .iter()
            .flat_map(|(account, w)| w.failures.iter().map(move |f| (account, f)))
            .collect();
        for chunk in failed.chunks(rows_per_statement) {
            let mut sql = String::from(
                "INSERT INTO activity_failures (account_key, at_ms, request_id, surface, function, code, status) VALUES ",
            );
            push_placeholders(&mut sql, chunk.len(), 7);
            let mut query = sqlx::query(&sql);
            for (account, f) in chunk {
                query = query
                    .bind(account.to_string())
                    .bind(f.at_ms)
                    .bind(f.request_id.clone())
                    .bind(f.surface.as_str())
                    .bind(f.function.to_string())
                    .bind(f.code)
                    .bind(i64::from(f.status));
            }
            query.execute(&mut *tx).await?;
        }
        for (account, _) in windows.iter().filter(|(_, w)| !w.failures.is_empty()) {
            sqlx::query(
                "DELETE FROM activity_failures WHERE account_key = $1 AND id <= \
                 (SELECT id FROM activity_failures WHERE account_key = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(account.to_string())
            .bind(FAILURES_KEPT as i64)
            .execute(&mut *tx)
            .await?;
        }
        let changes = self.write_health(&mut tx, &windows).await?;
        tx.commit().await?;
        Ok(changes)
    }

    /// The credentials' rows of the accounts whose window says something new: a refusal, or an accepted call
    /// of an account recorded as failing. Steady working accounts write nothing (one query finds the failing).
    async fn write_health(
        &self,
        tx: &mut AnyConnection,
        windows: &[(Arc<str>, &AccountWindow)],
    ) -> Result<Vec<HealthChange>, StoreError> {
        let failing: std::collections::HashSet<(String, String)> = sqlx::query(
            "SELECT account_key, source FROM credential_health WHERE failing_since_ms IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        // Rows are locked in key order, so two instances writing at once cannot deadlock on them.
        let mut news: Vec<(&str, &'static str, &Signal)> = Vec::new();
        for (account, window) in windows {
            for (source, signal) in [("partner", &window.partner), ("people", &window.people)] {
                let known_failing = failing.contains(&(account.to_string(), source.to_owned()));
                if signal.last_failure.is_some() || (known_failing && signal.last_ok_ms.is_some()) {
                    news.push((account, source, signal));
                }
            }
        }
        news.sort_by_key(|(account, source, _)| (*account, *source));
        let mut changes = Vec::new();
        for (account, source, signal) in news {
            if let Some(change) = self.health_news(tx, account, source, signal).await? {
                changes.push(change);
            }
        }
        Ok(changes)
    }

    async fn health_news(
        &self,
        tx: &mut AnyConnection,
        account: &str,
        source: &'static str,
        signal: &Signal,
    ) -> Result<Option<HealthChange>, StoreError> {
        sqlx::query(
            "INSERT INTO credential_health (account_key, source) VALUES ($1, $2) \
             ON CONFLICT (account_key, source) DO NOTHING",
        )
        .bind(account)
        .bind(source)
        .execute(&mut *tx)
        .await?;
        let lock = match self.store.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT failing_since_ms, last_failure_ms, last_status, last_ok_ms FROM credential_health \
             WHERE account_key = $1 AND source = $2{lock}"
        ))
        .bind(account)
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        let was_failing: Option<i64> = row.try_get(0)?;
        let mut last_failure: Option<i64> = row.try_get(1)?;
        let mut last_status: Option<i64> = row.try_get(2)?;
        let mut last_ok: Option<i64> = row.try_get(3)?;
        // What is known already decides when it is newer: an instance whose window ends with an accepted call
        // older than a refusal another instance recorded does not declare a recovery, and the reverse.
        let (known_failure, known_ok) = (last_failure, last_ok);
        if let Some((at, status)) = signal.last_failure {
            if last_failure.is_none_or(|known| at >= known) {
                last_failure = Some(at);
                last_status = Some(i64::from(status));
            }
        }
        if let Some(at) = signal.last_ok_ms {
            last_ok = Some(last_ok.map_or(at, |known| known.max(at)));
        }
        let failing_since = match signal.failing_from_ms {
            Some(from) if known_ok.is_none_or(|ok| from > ok) => Some(was_failing.unwrap_or(from)),
            Some(_) => was_failing,
            None => match signal.last_ok_ms {
                Some(ok) if known_failure.is_none_or(|failed| ok > failed) => None,
                _ => was_failing,
            },
        };
        sqlx::query(
            "UPDATE credential_health SET failing_since_ms = $3, last_failure_ms = $4, last_status = $5, \
             last_ok_ms = $6 WHERE account_key = $1 AND source = $2",
        )
        .bind(account)
        .bind(source)
        .bind(failing_since)
        .bind(last_failure)
        .bind(last_status)
        .bind(last_ok)
        .execute(&mut *tx)
        .await?;
        let change = match (was_failing, failing_since) {
            (None, Some(since)) => Some(HealthChange {
                account_key: account.to_owned(),
                source,
                failing: true,
                status: last_status.and_then(|s| u16::try_from(s).ok()),
                since_ms: since,
            }),
            // Recovered: `status` is the last refusal's.
            (Some(_), None) => Some(HealthChange {
                account_key: account.to_owned(),
                source,
                failing: false,
                status: last_status.and_then(|s| u16::try_from(s).ok()),
                since_ms: last_ok.unwrap_or_default(),
            }),
            _ => None,
        };
        if let Some(change) = &change {
            enqueue_health_event(&self.store, tx, change, was_failing).await?;
        }
        Ok(change)
    }

    /// Deletes minute rows older than a few hours, and everything else older than `retention_ms`.
    pub async fn prune(&self, now_ms: i64, retention_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // One span at a time, so each delete walks the (span_ms, at_ms) index instead of the whole table.
        for table in ["activity_calls", "activity_outcomes"] {
            for (span, kept) in [(MINUTE_MS, MINUTES_KEPT_MS), (HOUR_MS, retention_ms)] {
                deleted += sqlx::query(&format!(
                    "DELETE FROM {table} WHERE span_ms = $1 AND at_ms < $2"
                ))
                .bind(span)
                .bind(now_ms - kept.min(retention_ms))
                .execute(self.store.pool())
                .await?
                .rows_affected();
            }
        }
        deleted += sqlx::query("DELETE FROM activity_failures WHERE at_ms < $1")
            .bind(now_ms - retention_ms)
            .execute(self.store.pool())
            .await?
            .rows_affected();
        Ok(deleted)
    }

    /// Rows of `span_ms` from `from_ms` on, summed per time, surface and function.
    pub async fn calls(
        &self,
        account: &str,
        span_ms: i64,
        from_ms: i64,
    ) -> Result<Vec<CallsRow>, StoreError> {
        let sums: Vec<String> = (0..LATENCY_BUCKETS)
            .map(|k| format!("CAST(SUM(lat{k}) AS BIGINT)"))
            .collect();
        let sql = format!(
            "SELECT at_ms, surface, function, CAST(SUM(calls) AS BIGINT), CAST(SUM(failures) AS BIGINT), {} FROM activity_calls \
             WHERE account_key = $3 AND span_ms = $1 AND at_ms >= $2 GROUP BY at_ms, surface, function \
             ORDER BY at_ms",
            sums.join(", "),
        );
        let rows = sqlx::query(&sql)
            .bind(span_ms)
            .bind(from_ms)
            .bind(account)
            .fetch_all(self.store.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(surface) = Surface::parse(row.try_get::<String, _>(1)?.as_str()) else {
                continue;
            };
            let mut latency = [0i64; LATENCY_BUCKETS];
            for (k, slot) in latency.iter_mut().enumerate() {
                *slot = row.try_get(5 + k)?;
            }
            out.push(CallsRow {
                at_ms: row.try_get(0)?,
                surface,
                function: row.try_get(2)?,
                calls: row.try_get(3)?,
                failures: row.try_get(4)?,
                latency,
            });
        }
        Ok(out)
    }

    pub async fn outcomes(
        &self,
        account: &str,
        span_ms: i64,
        from_ms: i64,
    ) -> Result<Vec<OutcomeRow>, StoreError> {
        let query = sqlx::query(
            "SELECT surface, function, code, status, CAST(SUM(calls) AS BIGINT) FROM activity_outcomes \
             WHERE account_key = $3 AND span_ms = $1 AND at_ms >= $2 \
             GROUP BY surface, function, code, status ORDER BY SUM(calls) DESC",
        )
        .bind(span_ms)
        .bind(from_ms)
        .bind(account);
        let mut out = Vec::new();
        for row in query.fetch_all(self.store.pool()).await? {
            let Some(surface) = Surface::parse(row.try_get::<String, _>(0)?.as_str()) else {
                continue;
            };
            out.push(OutcomeRow {
                surface,
                function: row.try_get(1)?,
                code: row.try_get(2)?,
                status: u16::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
                calls: row.try_get(4)?,
            });
        }
        Ok(out)
    }

    /// The newest failed calls, newest first.
    pub async fn failures(&self, account: &str, limit: i64) -> Result<Vec<FailedRow>, StoreError> {
        let query = sqlx::query(
            "SELECT at_ms, request_id, surface, function, code, status FROM activity_failures \
             WHERE account_key = $2 ORDER BY at_ms DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .bind(account);
        let mut out = Vec::new();
        for row in query.fetch_all(self.store.pool()).await? {
            let Some(surface) = Surface::parse(row.try_get::<String, _>(2)?.as_str()) else {
                continue;
            };
            out.push(FailedRow {
                at_ms: row.try_get(0)?,
                request_id: row.try_get(1)?,
                surface,
                function: row.try_get(3)?,
                code: row.try_get(4)?,
                status: u16::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub async fn health(&self, account: &str) -> Result<Vec<Health>, StoreError> {
        let query = sqlx::query(
            "SELECT source, failing_since_ms, last_failure_ms, last_status, last_ok_ms \
             FROM credential_health WHERE account_key = $1 ORDER BY source",
        )
        .bind(account);
        let mut out = Vec::new();
        for row in query.fetch_all(self.store.pool()).await? {
            out.push(Health {
                source: row.try_get(0)?,
                failing_since_ms: row.try_get(1)?,
                last_failure_ms: row.try_get(2)?,
                last_status: row
                    .try_get::<Option<i64>, _>(3)?
                    .and_then(|s| u16::try_from(s).ok()),
                last_ok_ms: row.try_get(4)?,
            });
        }
        Ok(out)
    }
}

/// The webhook for a change of the credentials' state, in the transaction that records it (when the deployment
/// has a webhook endpoint).
async fn enqueue_health_event(
    store: &SettingsStore,
    tx: &mut AnyConnection,
    change: &HealthChange,
    failing_since_ms: Option<i64>,
) -> Result<(), StoreError> {
    use app::settings::outbox::{enqueue, rfc3339, EventKind};
    if !store.webhooks_enabled() {
        return Ok(());
    }
    let (kind, data) = if change.failing {
        (
            EventKind::CredentialsFailed,
            serde_json::json!({
                "source": change.source,
                "status": change.status,
                "failing_since": rfc3339(change.since_ms),
            }),
        )
    } else {
        (
            EventKind::CredentialsRecovered,
            serde_json::json!({
                "source": change.source,
                "status": change.status,
                "failing_since": failing_since_ms.map(rfc3339),
                "recovered_at": rfc3339(change.since_ms),
            }),
        )
    };
    enqueue(tx, &change.account_key, kind, data).await?;
    Ok(())
}

fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
}
