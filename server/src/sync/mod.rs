//! People data sync (`[sync]` of the app definition): durable runs in the settings database (`runs`), a record
//! mapped to a person (`person`), written to the account's People API (`people`), driven by a worker in each
//! instance that wants one (`engine`); an admin's pause, resume and resync (`controls`).

pub mod controls;
pub mod engine;
pub mod moments;
pub mod panel;
pub mod people;
pub mod person;
pub mod runs;

use std::time::Duration;

/// People sync's limits, from the command line or environment (cli/config.rs).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// People's v2 `GET /people/2/persons`, per account (documented: 5/s).
    pub reads_per_sec: u32,
    /// The v3 upsert, and v2's `PUT`/`PATCH /people/2/persons`, each per account (documented: 5/s).
    pub writes_per_sec: u32,
    /// v2's `POST /people/2/persons`, per account (documented: 10/s).
    pub creates_per_sec: u32,
    /// Persons per v3 upsert call (the document allows 1 to 1000); a larger page is split.
    pub batch_size: usize,
    /// Hosts an account's People base URL may name: exact, or `*.suffix`.
    pub hosts: Vec<String>,
    /// Loopback People (the simulator), in development only.
    pub allow_loopback: bool,
    pub lease: Duration,
    pub poll: Duration,
    /// How long a run paused by an outage waits before it is tried again.
    pub pause: Duration,
    pub worker: bool,
    /// Pages one run may read before it stops as failed: a partner that never says "last page" cannot keep a
    /// run (and its lease) forever.
    pub max_pages: u64,
    /// How long one run may last, from its first claim (outage pauses included; an admin's pause moves the start
    /// on when it is resumed), before it stops as failed.
    pub max_run: Duration,
    /// Failed records stored per run (each cut to `runs::MAX_RECORD_BYTES`); past it only the count goes on.
    pub failures_kept: u64,
    /// Records one partner page may hold: a page with more ends the run before any of it is mapped. Within the
    /// 4 MiB answer limit, `[0,0,0,…]` is two million records, each a failure to build and hold until the page
    /// commits; a partner that answers everything in one page raises it (`IBEX_SYNC_MAX_PAGE_RECORDS`).
    pub max_page_records: usize,
    /// The largest share (in %) of the account's synced records one complete run may take for gone: a partner
    /// whose list came back short without saying so (a switched address, a bug on its side) would otherwise have
    /// every person tagged or deleted. Past it the run decides nothing and says why (`IBEX_SYNC_DELETE_MAX_PERCENT`).
    pub delete_max_percent: u8,
}

impl SyncConfig {
    /// The documented defaults, for engines built in code (tests, benchmarks).
    pub const MAX_PAGES: u64 = 100_000;
    pub const MAX_RUN: Duration = Duration::from_secs(6 * 3600);
    pub const FAILURES_KEPT: u64 = 1000;
    pub const MAX_PAGE_RECORDS: usize = 10_000;
    pub const DELETE_MAX_PERCENT: u8 = 10;
}
