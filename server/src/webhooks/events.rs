//! The events that server-side changes write to the outbox, each inside the change's own transaction. The
//! settings save and the card token are written by the settings store itself (`app::settings::store`).

use app::settings::outbox::{enqueue, rfc3339, EventKind};
use app::settings::store::StoreError;
use serde_json::json;
use sqlx::Row;

/// `sync.run.succeeded` or `sync.run.failed` for a run that `Runs::finish` has just ended in `conn`'s
/// transaction, with the counts as the run's history shows them.
pub async fn run_finished(
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
) -> Result<String, StoreError> {
    let row = sqlx::query(
        "SELECT account_key, direction, status, requested_by, requested_at, started_at, finished_at, attempts, \
         read_count, created_count, updated_count, unchanged_count, failed_count, skipped_count, total, \
         last_error, retry_of FROM sync_runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    let account_key: String = row.try_get(0)?;
    let status: String = row.try_get(2)?;
    let kind = if status == "done" {
        EventKind::SyncRunSucceeded
    } else {
        EventKind::SyncRunFailed
    };
    let time = |ms: Option<i64>| ms.map(rfc3339);
    let data = json!({
        "run_id": run_id,
        "direction": row.try_get::<String, _>(1)?,
        "status": status,
        "requested_by": row.try_get::<String, _>(3)?,
        "requested_at": rfc3339(row.try_get(4)?),
        "started_at": time(row.try_get(5)?),
        "finished_at": time(row.try_get(6)?),
        "attempts": row.try_get::<i64, _>(7)?,
        "counts": {
            "read": row.try_get::<i64, _>(8)?,
            "created": row.try_get::<i64, _>(9)?,
            "updated": row.try_get::<i64, _>(10)?,
            "unchanged": row.try_get::<i64, _>(11)?,
            "failed": row.try_get::<i64, _>(12)?,
            "skipped": row.try_get::<i64, _>(13)?,
        },
        "total": row.try_get::<Option<i64>, _>(14)?,
        "error": row.try_get::<Option<String>, _>(15)?,
        "retry_of": row.try_get::<Option<i64>, _>(16)?,
    });
    enqueue(conn, &account_key, kind, data).await
}
