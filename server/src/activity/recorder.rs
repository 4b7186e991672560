//! The activity counters in memory: one window per account, filled by every call on whichever thread serves it,
//! and emptied by the writer (`flush.rs`) every few seconds. A call costs a clock read, a hash of the account
//! key and a short lock of one of 64 shards; nothing on the call's path waits for the database.

use super::{CallRecord, Surface, Upstream, LATENCY_BUCKETS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Failed calls each account keeps in the view: the window keeps the newest of them too.
pub const FAILURES_KEPT: usize = 50;
const SHARDS: usize = 64;
/// An account with no call for this long leaves memory at the next drain (its rows stay in the database).
const IDLE_MS: i64 = 24 * 3600 * 1000;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
type Shard = Mutex<Map<Arc<str>, AccountWindow>>;

pub struct Recorder {
    shards: Box<[Shard]>,
    accounts: AtomicUsize,
    max_accounts: usize,
    /// Calls not counted because `max_accounts` accounts were already in memory, or whose account could not be
    /// told (an unverified signature naming an account with no verified call): `ibex_activity_dropped_total`.
    pub dropped: prometheus_client::metrics::counter::Counter,
    hasher: foldhash::fast::FixedState,
}

/// What one account's calls did since the last drain.
#[derive(Debug, Default)]
pub struct AccountWindow {
    pub cells: Vec<Cell>,
    /// Newest last; at most `FAILURES_KEPT`.
    pub failures: Vec<FailedCall>,
    pub partner: Signal,
    pub people: Signal,
    last_seen_ms: i64,
}

/// One surface's and function's calls within one minute.
#[derive(Debug, Clone)]
pub struct Cell {
    pub surface: Surface,
    pub function: Arc<str>,
    pub minute_ms: i64,
    pub calls: u64,
    pub failures: u64,
    pub latency: [u64; LATENCY_BUCKETS],
    /// (code, upstream status or 0, calls)
    pub outcomes: Vec<(&'static str, u16, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCall {
    pub at_ms: i64,
    pub request_id: String,
    pub surface: Surface,
    pub function: Arc<str>,
    pub code: &'static str,
    pub status: u16,
}

/// What one source (the partner, or People) said of an account's credentials within a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signal {
    /// The first 401/403 after the window's last accepted call (or from the window's start).
    pub failing_from_ms: Option<i64>,
    /// The last 401/403 and its status.
    pub last_failure: Option<(i64, u16)>,
    pub last_ok_ms: Option<i64>,
}

impl Signal {
    fn failed(&mut self, at_ms: i64, status: u16) {
        if self.failing_from_ms.is_none() {
            self.failing_from_ms = Some(at_ms);
        }
        self.last_failure = Some((at_ms, status));
    }

    fn accepted(&mut self, at_ms: i64) {
        self.failing_from_ms = None;
        self.last_ok_ms = Some(at_ms);
    }

    pub fn is_empty(&self) -> bool {
        self.last_failure.is_none() && self.last_ok_ms.is_none()
    }

    /// Whether the window ended with the credentials refused.
    pub fn ends_failing(&self) -> bool {
        self.failing_from_ms.is_some()
    }
}

/// Which kind of credentials a call's outcome speaks of, if any.
enum Credentials {
    Partner,
    People,
}

impl Recorder {
    pub fn new(max_accounts: usize, dropped: prometheus_client::metrics::counter::Counter) -> Self {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
            accounts: AtomicUsize::new(0),
            max_accounts,
            dropped,
            hasher: foldhash::fast::FixedState::with_seed(0x1b3e),
        }
    }

    fn shard(&self, account: &str) -> &Shard {
        use std::hash::BuildHasher;
        let index = self.hasher.hash_one(account) as usize % SHARDS;
        &self.shards[index]
    }

    /// Counts one call. `verified` says whether the account key was proven (a valid signature, a card session,
    /// a card token, the sync worker): an unproven key is counted only for an account that already has verified
    /// calls in memory, so nobody can fill the view (or the account bound) with made-up accounts.
    pub fn record(&self, call: &CallRecord<'_>, now_ms: i64) {
        if call.account.is_empty() {
            self.dropped.inc();
            return;
        }
        let Ok(mut shard) = self.shard(call.account).lock() else {
            return;
        };
        let window = match shard.get_mut(call.account) {
            Some(window) => window,
            None => {
                if !call.verified || self.accounts.load(Ordering::Relaxed) >= self.max_accounts {
                    self.dropped.inc();
                    return;
                }
                self.accounts.fetch_add(1, Ordering::Relaxed);
                shard.entry(call.account.into()).or_default()
            }
        };
        window.add(call, now_ms);
    }

    /// Takes every account's window, leaving the accounts in memory (an account idle for a day leaves).
    pub fn drain(&self, now_ms: i64) -> Vec<(Arc<str>, AccountWindow)> {
        let mut drained = Vec::new();
        for shard in self.shards.iter() {
            let Ok(mut shard) = shard.lock() else {
                continue;
            };
            for (account, window) in shard.iter_mut() {
                if window.has_news() {
                    let last_seen_ms = window.last_seen_ms;
                    let taken = std::mem::take(window);
                    window.last_seen_ms = last_seen_ms;
                    drained.push((account.clone(), taken));
                }
            }
            let before = shard.len();
            shard.retain(|_, window| now_ms - window.last_seen_ms < IDLE_MS);
            self.accounts
                .fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
        drained
    }

    /// Accounts in memory now.
    pub fn accounts(&self) -> usize {
        self.accounts.load(Ordering::Relaxed)
    }
}

impl AccountWindow {
    fn has_news(&self) -> bool {
        !self.cells.is_empty() || !self.partner.is_empty() || !self.people.is_empty()
    }

    fn add(&mut self, call: &CallRecord<'_>, now_ms: i64) {
        self.last_seen_ms = now_ms;
        let minute_ms = now_ms - now_ms.rem_euclid(60_000);
        let cell = match self.cells.iter().position(|c| {
            c.minute_ms == minute_ms && c.surface == call.surface && *c.function == *call.function
        }) {
            Some(i) => &mut self.cells[i],
            None => {
                self.cells.push(Cell {
                    surface: call.surface,
                    function: call.function.into(),
                    minute_ms,
                    calls: 0,
                    failures: 0,
                    latency: [0; LATENCY_BUCKETS],
                    outcomes: Vec::new(),
                });
                let last = self.cells.len() - 1;
                &mut self.cells[last]
            }
        };
        cell.calls += 1;
        let status = call.status.unwrap_or(0);
        if !call.verified {
            // Anyone who knows the account's key can send these: counted by code, but never with a request id or
            // a time of their choosing, and never in the failed-call list, which stays the account's own.
            if let Some(code) = call.code {
                cell.failures += 1;
                cell.outcome(code, status);
            }
            return;
        }
        cell.latency[super::latency_bucket(call.elapsed)] += 1;
        if let Some(code) = call.code {
            cell.failures += 1;
            cell.outcome(code, status);
            if self.failures.len() == FAILURES_KEPT {
                self.failures.remove(0);
            }
            let function = cell.function.clone();
            self.failures.push(FailedCall {
                at_ms: now_ms,
                request_id: call.request_id.chars().take(64).collect(),
                surface: call.surface,
                function,
                code,
                status,
            });
        }
        match credentials(call.code, status, call.upstream) {
            Some((Credentials::Partner, true)) => self.partner.failed(now_ms, status),
            Some((Credentials::Partner, false)) => self.partner.accepted(now_ms),
            Some((Credentials::People, true)) => self.people.failed(now_ms, status),
            Some((Credentials::People, false)) => self.people.accepted(now_ms),
            None => {}
        }
    }
}

impl Cell {
    fn outcome(&mut self, code: &'static str, status: u16) {
        match self
            .outcomes
            .iter_mut()
            .find(|(c, s, _)| *c == code && *s == status)
        {
            Some(outcome) => outcome.2 += 1,
            None => self.outcomes.push((code, status, 1)),
        }
    }

    fn same_place(&self, other: &Cell) -> bool {
        self.minute_ms == other.minute_ms
            && self.surface == other.surface
            && self.function == other.function
    }

    fn absorb(&mut self, other: Cell) {
        self.calls += other.calls;
        self.failures += other.failures;
        for (sum, n) in self.latency.iter_mut().zip(other.latency) {
            *sum += n;
        }
        for (code, status, n) in other.outcomes {
            match self
                .outcomes
                .iter_mut()
                .find(|(c, s, _)| *c == code && *s == status)
            {
                Some(outcome) => outcome.2 += n,
                None => self.outcomes.push((code, status, n)),
            }
        }
    }
}

impl Signal {
    /// This window followed by a `later` one.
    fn then(&mut self, later: Signal) {
        self.failing_from_ms = match (later.last_ok_ms, later.failing_from_ms) {
            (Some(_), from) => from,
            (None, from) => self.failing_from_ms.or(from),
        };
        self.last_failure = later.last_failure.or(self.last_failure);
        self.last_ok_ms = later.last_ok_ms.or(self.last_ok_ms);
    }
}

impl AccountWindow {
    /// Adds a later window of the same account (a write that failed is retried with the next one): one window
    /// per account however long the database is away.
    pub fn absorb(&mut self, later: AccountWindow) {
        for cell in later.cells {
            match self.cells.iter_mut().find(|c| c.same_place(&cell)) {
                Some(known) => known.absorb(cell),
                None => self.cells.push(cell),
            }
        }
        self.failures.extend(later.failures);
        let excess = self.failures.len().saturating_sub(FAILURES_KEPT);
        self.failures.drain(..excess);
        self.partner.then(later.partner);
        self.people.then(later.people);
        self.last_seen_ms = self.last_seen_ms.max(later.last_seen_ms);
    }

    /// Cells held, for the bound on what a failing database may keep in memory.
    pub fn cells(&self) -> usize {
        self.cells.len()
    }
}

/// What an outcome says of the account's credentials: `(whose, refused)`. A call that succeeded reached the
/// partner with them; an answer other than 401/403 means the partner accepted them (a 404 is about the record);
/// failures that never reached anyone (settings missing, a timeout) say nothing.
fn credentials(
    code: Option<&'static str>,
    status: u16,
    upstream: Upstream,
) -> Option<(Credentials, bool)> {
    match code {
        None => Some((
            match upstream {
                Upstream::Partner => Credentials::Partner,
                Upstream::People => Credentials::People,
            },
            false,
        )),
        Some("partner_client_error") => Some((Credentials::Partner, matches!(status, 401 | 403))),
        Some("partner_bad_answer") => Some((Credentials::Partner, false)),
        Some("people_key_refused") => Some((Credentials::People, true)),
        Some("people_refused") => Some((Credentials::People, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn call<'a>(
        account: &'a str,
        code: Option<&'static str>,
        status: Option<u16>,
    ) -> CallRecord<'a> {
        CallRecord {
            account,
            surface: Surface::Signed,
            function: "order-status",
            elapsed: Duration::from_millis(3),
            code,
            status,
            request_id: "req-1",
            verified: true,
            upstream: Upstream::Partner,
        }
    }

    #[test]
    fn calls_of_one_minute_share_a_cell_and_failures_keep_their_code() {
        let recorder = Recorder::new(10, Default::default());
        let t = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
        recorder.record(&call("acc", None, None), t + 1);
        recorder.record(&call("acc", Some("partner_client_error"), Some(401)), t + 2);
        recorder.record(&call("acc", None, None), t + 60_000);
        let drained = recorder.drain(t + 60_001);
        assert_eq!(drained.len(), 1);
        let window = &drained[0].1;
        assert_eq!(window.cells.len(), 2);
        assert_eq!(window.cells[0].calls, 2);
        assert_eq!(window.cells[0].failures, 1);
        assert_eq!(
            window.cells[0].outcomes,
            vec![("partner_client_error", 401, 1)]
        );
        assert_eq!(window.failures.len(), 1);
        assert_eq!(window.failures[0].status, 401);
        // Failed at t+2, accepted again at t+60000: the window ends working.
        assert_eq!(window.partner.last_failure, Some((t + 2, 401)));
        assert!(!window.partner.ends_failing());
        // Drained: nothing new until the next call.
        assert!(recorder.drain(t + 60_002).is_empty());
    }

    #[test]
    fn unverified_calls_count_only_for_known_accounts_and_the_bound_holds() {
        let recorder = Recorder::new(2, Default::default());
        let mut unverified = call("ghost", Some("signature_mismatch"), None);
        unverified.verified = false;
        recorder.record(&unverified, 1);
        assert_eq!(recorder.accounts(), 0);
        recorder.record(&call("a", None, None), 1);
        recorder.record(&call("b", None, None), 1);
        recorder.record(&call("c", None, None), 1);
        assert_eq!(recorder.accounts(), 2);
        assert_eq!(recorder.dropped.get(), 2);
        unverified.account = "a";
        recorder.record(&unverified, 2);
        let drained = recorder.drain(3);
        let a = drained.iter().find(|(k, _)| &**k == "a").unwrap();
        assert_eq!(a.1.cells[0].calls, 2);
    }

    #[test]
    fn the_newest_failures_are_kept_and_idle_accounts_leave() {
        let recorder = Recorder::new(10, Default::default());
        for i in 0..(FAILURES_KEPT as i64 + 5) {
            recorder.record(&call("a", Some("partner_timeout"), None), i);
        }
        let drained = recorder.drain(100);
        assert_eq!(drained[0].1.failures.len(), FAILURES_KEPT);
        assert_eq!(drained[0].1.failures[0].at_ms, 5);
        assert_eq!(recorder.accounts(), 1);
        recorder.drain(100 + IDLE_MS);
        assert_eq!(recorder.accounts(), 0);
        // A window is written before its account leaves, however late the drain.
        recorder.record(&call("b", None, None), 200);
        assert_eq!(recorder.drain(200 + 2 * IDLE_MS).len(), 1);
        assert_eq!(recorder.accounts(), 0);
    }

    #[test]
    fn a_retried_window_absorbs_the_next_one_in_time_order() {
        let recorder = Recorder::new(10, Default::default());
        recorder.record(&call("a", Some("partner_client_error"), Some(401)), 10);
        let mut first = recorder.drain(20).pop().unwrap().1;
        recorder.record(&call("a", None, None), 30);
        recorder.record(&call("a", None, None), 60_030);
        let later = recorder.drain(60_040).pop().unwrap().1;
        first.absorb(later);
        assert_eq!(first.cells.len(), 2);
        assert_eq!(first.cells[0].calls, 2);
        assert_eq!(
            first.cells[0].outcomes,
            vec![("partner_client_error", 401, 1)]
        );
        assert_eq!(first.failures.len(), 1);
        // Refused at 10, accepted at 30: the credentials work again.
        assert!(!first.partner.ends_failing());
        assert_eq!(first.partner.last_failure, Some((10, 401)));
        assert_eq!(first.partner.last_ok_ms, Some(60_030));
    }
}
