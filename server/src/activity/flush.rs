//! The writer: every `IBEX_ACTIVITY_FLUSH_SECS` it takes the recorder's windows and adds them to the database,
//! prunes what is past retention, and once more when the server stops, so a restart loses no counted call.
//! A write that fails is kept and tried again with the next one (bounded), never counted twice: the counters
//! go in one transaction.

use super::recorder::AccountWindow;
use super::store::{ActivityStore, HealthChange};
use super::Activity;
use app::settings::store::now_ms;
use std::collections::HashMap;
use std::sync::Arc;

/// Cells (one surface's and function's minute of one account, ~300 bytes) kept while the database is
/// unreachable; calls that would go past it are not counted (`ibex_activity_dropped_total`).
const PENDING_CELLS: usize = 500_000;
/// Pruning runs at most this often.
const PRUNE_EVERY_MS: i64 = 10 * 60 * 1000;

pub struct Writer {
    activity: Activity,
    store: ActivityStore,
    state: tokio::sync::Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    /// What a failed write left, one window per account.
    pending: HashMap<Arc<str>, AccountWindow>,
    pruned_at_ms: i64,
}

impl Writer {
    pub fn new(activity: Activity, store: ActivityStore) -> Arc<Self> {
        Arc::new(Writer {
            activity,
            store,
            state: tokio::sync::Mutex::new(WriterState::default()),
        })
    }

    /// Writes what the recorder holds now; what could not be written stays for the next call.
    pub async fn flush(&self) -> Result<Vec<HealthChange>, app::settings::store::StoreError> {
        let now = now_ms();
        let mut state = self.state.lock().await;
        let mut pending = std::mem::take(&mut state.pending);
        let mut held: usize = pending.values().map(AccountWindow::cells).sum();
        for (account, window) in self.activity.recorder.drain(now) {
            if held + window.cells() > PENDING_CELLS {
                let lost: u64 = window.cells.iter().map(|c| c.calls).sum();
                self.activity.recorder.dropped.inc_by(lost);
                continue;
            }
            held += window.cells();
            match pending.get_mut(&account) {
                Some(known) => known.absorb(window),
                None => {
                    pending.insert(account, window);
                }
            }
        }
        let windows: Vec<(Arc<str>, AccountWindow)> = pending.into_iter().collect();
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        match self.store.write(&windows).await {
            Ok(changes) => {
                if now - state.pruned_at_ms >= PRUNE_EVERY_MS {
                    state.pruned_at_ms = now;
                    let retention = i64::try_from(self.activity.config.retention.as_millis())
                        .unwrap_or(i64::MAX);
                    if let Err(e) = self.store.prune(now, retention).await {
                        tracing::warn!(error = %e, "activity: old rows could not be pruned");
                    }
                }
                Ok(changes)
            }
            Err(e) => {
                state.pending = windows.into_iter().collect();
                Err(e)
            }
        }
    }

    /// Flushes every `flush_every` until the process ends; `ibex serve` calls `flush` once more after the
    /// listener has stopped.
    pub fn spawn(self: &Arc<Self>) {
        let writer = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(writer.activity.config.flush_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = writer.flush().await {
                    tracing::warn!(error = %e, "activity: counters could not be written; kept for the next try");
                }
            }
        });
    }
}
