//! Command line and environment. Every option has a flag and an environment variable (the flag wins); a bad
//! value is reported with the variable's name, before anything starts.

use crate::signed::signature::{SecretError, Verifier};
use app::definition::{AppDefinition, DefinitionError, Product, BUNDLED_EXAMPLE};
use app::settings::crypto::{KeyError, KeyRing};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ibex",
    version,
    about = "An Infobip Exchange app server",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Settings database: sqlite://path?mode=rwc or postgres://user@host/db.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/ibex.db?mode=rwc",
        global = true
    )]
    pub database_url: String,
    /// App definition (TOML). Without it, the bundled Order desk example.
    #[arg(long = "app", env = "IBEX_APP", global = true)]
    pub app: Option<PathBuf>,
    #[arg(
        long,
        env = "IBEX_ADDR",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub addr: SocketAddr,
    /// Public base URL Infobip reaches this server at, used in manifests; http://IBEX_ADDR when absent.
    #[arg(long, env = "IBEX_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Comma-separated signing secrets from App shell; all are accepted, so one can be rotated at a time.
    #[arg(
        long,
        env = "IBEX_SIGNING_SECRETS",
        hide_env_values = true,
        global = true
    )]
    pub signing_secrets: Option<String>,
    /// Base64 of 32 bytes, or id:base64 entries separated by commas (the first one encrypts).
    #[arg(
        long,
        env = "IBEX_ENCRYPTION_KEY",
        hide_env_values = true,
        global = true
    )]
    pub encryption_key: Option<String>,
    /// Replay window for signed calls, in both directions.
    #[arg(
        long,
        env = "IBEX_SIGNATURE_TOLERANCE_SECS",
        default_value_t = 300,
        global = true
    )]
    pub signature_tolerance_secs: u64,
    /// Largest signed request body accepted (413 above it).
    #[arg(long, env = "IBEX_MAX_BODY_BYTES", default_value_t = 64 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// How long a cached account's settings are used before the database is read again. Saves are followed
    /// sooner: this instance's own at once, other instances' and the CLI's within IBEX_SETTINGS_POLL_MS; the TTL
    /// is the bound for what the change log does not carry (an `ibex settings unlink`).
    #[arg(
        long,
        env = "IBEX_SETTINGS_CACHE_TTL_SECS",
        default_value_t = 300,
        global = true
    )]
    pub settings_cache_ttl_secs: u64,
    /// How often this instance reads the change log for saves made elsewhere (another instance, the CLI).
    #[arg(
        long,
        env = "IBEX_SETTINGS_POLL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub settings_poll_ms: u64,
    /// Memory the settings cache may hold, in MiB (each account reckoned by its keys and values; the least used
    /// accounts are dropped above it). 0 turns the cache off: every signed call reads the database.
    #[arg(
        long,
        env = "IBEX_SETTINGS_CACHE_MB",
        default_value_t = 64,
        global = true
    )]
    pub settings_cache_mb: u64,
    #[arg(long, env = "IBEX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    /// Development mode: when the signing secret or encryption key is not given, generate them once into
    /// IBEX_DATA_DIR/dev-secrets.env and reuse them. Never for production.
    #[arg(long, env = "IBEX_DEV", global = true)]
    pub dev: bool,
    #[arg(long, env = "IBEX_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// Exchange's OAuth authorization endpoint (the simulator's in --dev mode).
    #[arg(long, env = "IBEX_OAUTH_AUTHORIZE_URL", global = true)]
    pub oauth_authorize_url: Option<String>,
    /// Exchange's OAuth token endpoint (the simulator's in --dev mode).
    #[arg(long, env = "IBEX_OAUTH_TOKEN_URL", global = true)]
    pub oauth_token_url: Option<String>,
    /// The app's Client ID from App shell (`ibex-dev` in --dev mode).
    #[arg(long, env = "IBEX_OAUTH_CLIENT_ID", global = true)]
    pub oauth_client_id: Option<String>,
    /// The app's Client Secret from App shell; sent with the token request when set.
    #[arg(
        long,
        env = "IBEX_OAUTH_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub oauth_client_secret: Option<String>,
    /// Origins allowed to frame the configuration page (space-separated), Infobip's portal by default and the
    /// simulator's in --dev mode.
    #[arg(long, env = "IBEX_FRAME_ANCESTORS", global = true)]
    pub frame_ancestors: Option<String>,
    /// Let partner calls reach loopback addresses (127.0.0.0/8, ::1), which are refused otherwise so that an
    /// account's URL setting cannot aim ibex at services on its own host. On in --dev for the simulator.
    #[arg(long, env = "IBEX_ALLOW_LOOPBACK_PARTNERS", global = true)]
    pub allow_loopback_partners: bool,
    /// Call partners over https only, whatever the app definition says (an operator's policy on top of
    /// `[partner.egress] https_only`): an http partner URL is refused with 409 partner_address_forbidden.
    #[arg(long, env = "IBEX_PARTNER_HTTPS_ONLY", global = true)]
    pub partner_https_only: bool,
    /// Refuse a signed request whose signature this instance already accepted within the replay window
    /// (409 replayed). Per instance: behind a load balancer, a replay sent to another instance is not seen.
    #[arg(long, env = "IBEX_REPLAY_GUARD", global = true)]
    pub replay_guard: bool,
    /// Signed calls (and the other server-to-server requests: health, metrics, Custom cards) served at once;
    /// more are answered 503 at once (load shedding) instead of queueing up. Pages have their own pool.
    #[arg(
        long,
        env = "IBEX_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024,
        global = true
    )]
    pub max_concurrent_requests: usize,
    /// Page requests (configuration page, card, their server functions, sign-in, static files) served at once,
    /// apart from the signed calls' pool, so that slow page requests cannot starve Infobip's signed calls.
    #[arg(
        long,
        env = "IBEX_MAX_CONCURRENT_PAGE_REQUESTS",
        default_value_t = 256,
        global = true
    )]
    pub max_concurrent_page_requests: usize,
    /// Signed-path request bodies read at once before their signature can be checked (each for at most
    /// `IBEX_BODY_TIMEOUT_SECS`); they hold none of the signed calls' slots, which are taken after verification.
    #[arg(
        long,
        env = "IBEX_MAX_UNVERIFIED_BODIES",
        default_value_t = 1024,
        global = true
    )]
    pub max_unverified_bodies: usize,
    /// Calls of Infobip's messages API (the card's end-user lookup) per account and minute on this instance:
    /// Infobip documents 500 a minute; past it the card says to retry shortly without calling.
    #[arg(
        long,
        env = "IBEX_INFOBIP_MESSAGES_PER_MINUTE",
        default_value_t = 500,
        global = true
    )]
    pub infobip_messages_per_minute: u32,
    /// Sign-ins (`/oauth/start`) this instance starts per second, with bursts of ten times as many: each records
    /// a row in the settings database and needs no sign-in, so a script could otherwise fill the table.
    #[arg(
        long,
        env = "IBEX_SIGN_IN_STARTS_PER_SEC",
        default_value_t = 20,
        global = true
    )]
    pub sign_in_starts_per_sec: u32,
    /// The role (or group) in Infobip's token answer that makes a user an admin of their account's settings;
    /// unset, only the account's admin list (`ibex admins`) decides.
    #[arg(long, env = "IBEX_ADMIN_ROLE", global = true)]
    pub admin_role: Option<String>,
    /// Who configures an account with no admin listed (and no role deciding): `open`, anyone signed in (logged
    /// as a warning at start-up), or `closed`, nobody until the operator adds an admin.
    #[arg(
        long,
        env = "IBEX_UNLISTED_ACCOUNTS",
        value_enum,
        default_value_t = UnlistedAccounts::Open,
        global = true
    )]
    pub unlisted_accounts: UnlistedAccounts,
    /// Largest body of a page or server-function request (413 above it).
    #[arg(
        long,
        env = "IBEX_MAX_PAGE_BODY_BYTES",
        default_value_t = 256 * 1024,
        global = true
    )]
    pub max_page_body_bytes: usize,
    /// Seconds a client may take to send its whole request body, from the end of its headers (a slow client
    /// holds a connection and a slot otherwise).
    #[arg(
        long,
        env = "IBEX_BODY_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub body_timeout_secs: u64,
    /// Seconds a client may take to send its request headers (slow clients hold connections otherwise).
    #[arg(
        long,
        env = "IBEX_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub header_timeout_secs: u64,
    /// Seconds requests in flight get to finish after SIGTERM before ibex exits anyway.
    #[arg(
        long,
        env = "IBEX_SHUTDOWN_GRACE_SECS",
        default_value_t = 20,
        global = true
    )]
    pub shutdown_grace_secs: u64,
    /// Serving threads, each a single-threaded runtime with its own partner connection pool, all accepting on
    /// the one socket (a worker per core, as nginx runs); unset means one per CPU, 0 serves on the shared
    /// work-stealing runtime instead.
    #[arg(long, env = "IBEX_SERVE_THREADS", global = true)]
    pub serve_threads: Option<usize>,
    /// Bearer token that `/metrics` requires; without it, metrics are served in --dev mode only.
    #[arg(
        long,
        env = "IBEX_METRICS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub metrics_token: Option<String>,
    /// OAuth scopes asked for at sign-in, space-separated.
    #[arg(
        long,
        env = "IBEX_OAUTH_SCOPE",
        default_value = "conversations",
        global = true
    )]
    pub oauth_scope: String,
    /// Base URL of Infobip's API for the context card's calls (the simulator's portal in --dev mode).
    #[arg(long, env = "IBEX_INFOBIP_API_URL", global = true)]
    pub infobip_api_url: Option<String>,
    /// The scheme before the Exchange token in `Authorization` when calling Infobip's API; unset, the token
    /// answer's own `token_type` (as Infobip's sample app sends it).
    #[arg(long, env = "IBEX_INFOBIP_AUTH_SCHEME", global = true)]
    pub infobip_auth_scheme: Option<String>,
    /// People calls per second per account and instance: reads (lookups) and writes, Infobip's documented
    /// limits by default.
    #[arg(
        long,
        env = "IBEX_PEOPLE_READS_PER_SEC",
        default_value_t = 5,
        global = true
    )]
    pub people_reads_per_sec: u32,
    /// The v3 batch upsert (and v2's PUT/PATCH), each at Infobip's documented 5 requests/s by default.
    #[arg(
        long,
        env = "IBEX_PEOPLE_WRITES_PER_SEC",
        default_value_t = 5,
        global = true
    )]
    pub people_writes_per_sec: u32,
    /// v2's `POST /people/2/persons` (lookup_then_write creating a person), documented at 10 requests/s.
    #[arg(
        long,
        env = "IBEX_PEOPLE_CREATES_PER_SEC",
        default_value_t = 10,
        global = true
    )]
    pub people_creates_per_sec: u32,
    /// Persons per People upsert call, 1 to 1000 (Infobip's documented maximum); a larger page is split.
    #[arg(
        long,
        env = "IBEX_PEOPLE_BATCH_SIZE",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u16).range(1..=1000),
        global = true
    )]
    pub people_batch_size: u16,
    /// Hosts an account's People base URL may name (space-separated, exact or `*.suffix`): it comes from a
    /// setting, so it is held to Infobip's own hosts. The host of IBEX_INFOBIP_API_URL is always allowed.
    #[arg(
        long,
        env = "IBEX_PEOPLE_HOSTS",
        default_value = "*.api.infobip.com api.infobip.com",
        global = true
    )]
    pub people_hosts: String,
    /// Run People sync jobs in this instance (several instances on one PostgreSQL share them).
    #[arg(long, env = "IBEX_SYNC_WORKER", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub sync_worker: bool,
    /// How long a claimed sync run is held without progress before another instance may take it over.
    #[arg(
        long,
        env = "IBEX_SYNC_LEASE_SECS",
        default_value_t = 60,
        global = true
    )]
    pub sync_lease_secs: u64,
    /// How long a sync run paused by a People or partner outage waits before it is tried again.
    #[arg(
        long,
        env = "IBEX_SYNC_PAUSE_SECS",
        default_value_t = 30,
        global = true
    )]
    pub sync_pause_secs: u64,
    /// Pages one sync run may read before it stops as failed (a partner that never ends its list).
    #[arg(
        long,
        env = "IBEX_SYNC_MAX_PAGES",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub sync_max_pages: u64,
    /// How long one sync run may last, outage pauses included (an admin's not), before it stops as failed.
    #[arg(
        long,
        env = "IBEX_SYNC_MAX_RUN_SECS",
        default_value_t = 21_600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub sync_max_run_secs: u64,
    /// Records one partner page may hold in a sync run; a page with more ends the run before any is mapped.
    #[arg(
        long,
        env = "IBEX_SYNC_MAX_PAGE_RECORDS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        global = true
    )]
    pub sync_max_page_records: u64,
    /// The largest share (in %) of an account's synced records one run may take for gone from the source; past
    /// it the run tags and deletes nothing and says why.
    #[arg(
        long,
        env = "IBEX_SYNC_DELETE_MAX_PERCENT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u8).range(0..=100),
        global = true
    )]
    pub sync_delete_max_percent: u8,
    /// Failed records kept per sync run (each cut to 4 KiB); past it the run only counts them.
    #[arg(
        long,
        env = "IBEX_SYNC_FAILURES_KEPT",
        default_value_t = 1000,
        global = true
    )]
    pub sync_failures_kept: u64,
    /// How often the activity counters (the configuration page's activity view) are written to the database.
    #[arg(
        long,
        env = "IBEX_ACTIVITY_FLUSH_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub activity_flush_secs: u64,
    /// Days the activity view's hourly figures and failed calls are kept.
    #[arg(
        long,
        env = "IBEX_ACTIVITY_RETENTION_DAYS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u64).range(1..=400),
        global = true
    )]
    pub activity_retention_days: u64,
    /// Accounts whose calls the activity view counts in memory at once; further accounts are not counted.
    #[arg(
        long,
        env = "IBEX_ACTIVITY_MAX_ACCOUNTS",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000),
        global = true
    )]
    pub activity_max_accounts: u64,
    /// Whether calls are counted for the activity view at all (off only to measure what counting costs).
    #[arg(
        long,
        env = "IBEX_ACTIVITY_RECORDING",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub activity_recording: bool,
    /// How often an idle sync worker looks for due runs.
    #[arg(long, env = "IBEX_SYNC_POLL_MS", default_value_t = 1000, global = true)]
    pub sync_poll_ms: u64,
    /// The partner's endpoint for lifecycle webhooks (docs/webhooks.md); unset, no events are written or sent.
    /// It passes the same egress policy as partner calls.
    #[arg(long, env = "IBEX_WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,
    /// The endpoint's signing secret as Standard Webhooks writes it: `whsec_` and the base64 of 24 to 64 random
    /// bytes.
    #[arg(
        long,
        env = "IBEX_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,
    /// How long an event is retried, from when it was queued, before it is given up (dead).
    #[arg(
        long,
        env = "IBEX_WEBHOOK_RETRY_SECS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub webhook_retry_secs: u64,
    /// The wait before an event's first retry; each next one waits twice as long (at most an hour), less a
    /// random part of up to half.
    #[arg(
        long,
        env = "IBEX_WEBHOOK_BACKOFF_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub webhook_backoff_ms: u64,
    /// How long the endpoint has to answer one delivery attempt.
    #[arg(
        long,
        env = "IBEX_WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300),
        global = true
    )]
    pub webhook_timeout_secs: u64,
    /// Days delivered and given-up events are kept for `ibex webhooks list|replay`.
    #[arg(
        long,
        env = "IBEX_WEBHOOK_KEEP_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub webhook_keep_days: u64,
    /// How often an idle webhook worker looks for due events.
    #[arg(
        long,
        env = "IBEX_WEBHOOK_POLL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub webhook_poll_ms: u64,
    /// Deliver webhook events from this instance (instances on one PostgreSQL share them).
    #[arg(long, env = "IBEX_WEBHOOK_WORKER", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub webhook_worker: bool,
    /// How long a configuration-page sign-in lasts.
    #[arg(
        long,
        env = "IBEX_SESSION_TTL_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub session_ttl_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnlistedAccounts {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the configuration page, the signed function endpoints and the operational endpoints (default).
    Serve,
    /// Print the manifest to paste into App shell for one product.
    Manifest {
        #[arg(long, value_enum)]
        product: ManifestProduct,
        #[arg(long, value_enum, default_value_t = ManifestFormat::Json)]
        format: ManifestFormat,
    },
    /// Read or change an account's settings, through the same validation as the configuration page.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Sign a request exactly as Infobip does and call a running ibex.
    Call {
        /// Function name from the app definition.
        function: String,
        /// Inputs as name=value.
        inputs: Vec<String>,
        #[arg(long)]
        account: String,
        /// Base URL of the running ibex; http://IBEX_ADDR when absent.
        #[arg(long)]
        url: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Encryption key rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Who may change an account's settings on the configuration page, when Infobip's sign-in carries no role
    /// that decides (`IBEX_ADMIN_ROLE`).
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// What an account's calls did: calls per function and surface, failures by cause, time taken, the last
    /// failed calls and the credentials' state (the configuration page's activity view).
    Activity {
        account: String,
        #[arg(long, value_parser = ["hour", "day", "week"], default_value = "day")]
        period: String,
    },
    /// The lifecycle events sent to the partner's webhook endpoint: list them, or send one again.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Pause, resume or resync an account's People sync (recorded in its history as the operator's).
    #[command(subcommand)]
    Sync(SyncCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Recent events, newest first, with their state (pending, delivered, dead), attempts and last error.
    List {
        /// Only this account's events.
        #[arg(long)]
        account: Option<String>,
        /// Only events in this state.
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue an event again under its own id (its receiver can tell it from a new one); due at once, with a
    /// fresh retry window.
    Replay { event_id: String },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Stop ACCOUNT's sync: no scheduled or requested runs, and a run in progress stops at its next page.
    Pause {
        account: String,
        /// One direction only; every direction of the app when absent.
        #[arg(long, value_enum)]
        direction: Option<SyncDirection>,
    },
    /// Let ACCOUNT's sync run again; a run that was stopped goes on from its checkpoint.
    Resume {
        account: String,
        #[arg(long, value_enum)]
        direction: Option<SyncDirection>,
    },
    /// Forget what was last synced (digests and checkpoints), so the next run sends every record again.
    Resync {
        account: String,
        #[arg(long, value_enum)]
        direction: Option<SyncDirection>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SyncDirection {
    /// Partner → People.
    ToPeople,
    /// People → partner.
    FromPeople,
}

impl SyncDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncDirection::ToPeople => crate::sync::runs::TO_PEOPLE,
            SyncDirection::FromPeople => crate::sync::runs::FROM_PEOPLE,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Let USER_KEY change ACCOUNT's settings; once an account has an admin, only its admins can.
    Add { account: String, user_key: String },
    /// Take USER_KEY off ACCOUNT's admins (the last one too: the account then falls back to
    /// IBEX_UNLISTED_ACCOUNTS).
    Remove { account: String, user_key: String },
    /// Show ACCOUNT's admins.
    List { account: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every stored secret with the first key of IBEX_ENCRYPTION_KEY (the older keys, listed after it,
    /// open what they sealed). One account at a time: an interrupted run is finished by running it again.
    /// Secrets no key opens are listed and left as they are.
    Rewrap {
        /// Count what would be re-sealed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Set fields: field=value…; an empty value clears a field.
    Set {
        account_key: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Show an account's settings with secrets masked.
    Show { account_key: String },
    /// Set many accounts from FILE ("-" for standard input), one JSON object per line:
    /// {"account_key": "…", "settings": {"field": "value", …}}. Each line is checked and saved as `settings set`
    /// would; a bad line is reported with its number and the others still saved (exit code 2 then).
    Import { file: std::path::PathBuf },
    /// Let signed calls that name SIGNED_KEY use the settings saved under SETTINGS_KEY (for when Infobip's
    /// signed-call account key differs from the configuration page's OAuth accountKey).
    Link {
        signed_key: String,
        settings_key: String,
    },
    /// Remove a link made with `settings link`.
    Unlink { signed_key: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestProduct {
    Answers,
    Flow,
    Conversations,
}

impl ManifestProduct {
    pub fn product(self) -> Option<Product> {
        match self {
            ManifestProduct::Answers => Some(Product::Answers),
            ManifestProduct::Flow => Some(Product::Flow),
            ManifestProduct::Conversations => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("IBEX_APP: {0}")]
    Definition(#[from] DefinitionError),
    #[error("IBEX_SIGNING_SECRETS is not set: copy the signing secret from App shell → Security (or use --dev)")]
    NoSigningSecret,
    #[error("{0}")]
    SigningSecret(#[from] SecretError),
    #[error("IBEX_ENCRYPTION_KEY is not set: generate one with `openssl rand -base64 32` (or use --dev)")]
    NoEncryptionKey,
    #[error("{0}")]
    EncryptionKey(#[from] KeyError),
    #[error("IBEX_PUBLIC_URL {0:?} is not an absolute http(s) URL")]
    PublicUrl(String),
    #[error("IBEX_MAX_BODY_BYTES must be at least 1")]
    MaxBody,
    #[error("{name} {value:?} is not an absolute http(s) URL")]
    OAuthUrl { name: &'static str, value: String },
    #[error(
        "IBEX_FRAME_ANCESTORS {0:?} holds characters a Content-Security-Policy header cannot carry"
    )]
    FrameAncestors(String),
    #[error("IBEX_INFOBIP_AUTH_SCHEME {0:?} must be one word of letters, digits or `-` (e.g. IBSSO, Bearer)")]
    AuthScheme(String),
    #[error("IBEX_WEBHOOK_URL is not an absolute http(s) URL")]
    WebhookUrl,
    #[error("IBEX_WEBHOOK_URL must not hold a user name or password: the endpoint knows ibex by the webhook-signature it verifies with IBEX_WEBHOOK_SECRET")]
    WebhookUrlCredentials,
    #[error("IBEX_WEBHOOK_URL is refused by the partner egress policy: {0} (IBEX_ALLOW_LOOPBACK_PARTNERS allows loopback, [partner.egress] of the app definition the rest)")]
    WebhookEgress(crate::partner::EgressError),
    #[error("{0}")]
    WebhookSecret(#[from] crate::webhooks::signature::SecretError),
    #[error("{0} is set but {1} is not: the webhook endpoint and its signing secret go together")]
    WebhookHalf(&'static str, &'static str),
    #[error("cannot keep development secrets in {path}: {source}")]
    DevSecrets {
        path: String,
        source: std::io::Error,
    },
}

impl Options {
    /// `IBEX_SIGN_IN_STARTS_PER_SEC`, at least one, with bursts of ten times as many.
    /// Who may configure an account (`settings::admins`).
    pub fn admin_policy(&self) -> app::settings::admins::AdminPolicy {
        use app::settings::admins::{AdminPolicy, Unlisted};
        AdminPolicy {
            role: self
                .admin_role
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            unlisted: match self.unlisted_accounts {
                UnlistedAccounts::Open => Unlisted::Open,
                UnlistedAccounts::Closed => Unlisted::Closed,
            },
        }
    }

    pub fn sign_in_quota(&self) -> governor::Quota {
        let rate = std::num::NonZeroU32::new(self.sign_in_starts_per_sec.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst =
            rate.saturating_mul(std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN));
        governor::Quota::per_second(rate).allow_burst(burst)
    }

    pub fn definition(&self) -> Result<AppDefinition, ConfigError> {
        let definition = match &self.app {
            Some(path) => AppDefinition::from_file(path)?,
            None => AppDefinition::from_toml(BUNDLED_EXAMPLE)?,
        };
        Ok(if self.dev {
            definition.with_dev_defaults()
        } else {
            definition
        })
    }

    /// Where partner calls may connect: the app definition's `[partner.egress]`, plus loopback when the
    /// operator allows it or in development.
    pub fn egress(&self, definition: &AppDefinition) -> crate::partner::EgressPolicy {
        let mut spec = definition.partner.egress.clone();
        spec.https_only |= self.partner_https_only;
        crate::partner::EgressPolicy::new(&spec, self.allow_loopback_partners || self.dev)
    }

    /// The partner's webhook endpoint, when one is configured: its URL must pass `egress` as far as it can be
    /// checked before connecting (scheme, allowed hosts, an IP literal's address); a name's addresses are
    /// checked on every connection, as for partner calls.
    pub fn webhooks(
        &self,
        egress: &crate::partner::EgressPolicy,
    ) -> Result<Option<crate::webhooks::WebhookConfig>, ConfigError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let (url, secret) = match (given(&self.webhook_url), given(&self.webhook_secret)) {
            (None, None) => return Ok(None),
            (Some(url), Some(secret)) => (url, secret),
            (Some(_), None) => {
                return Err(ConfigError::WebhookHalf(
                    "IBEX_WEBHOOK_URL",
                    "IBEX_WEBHOOK_SECRET",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::WebhookHalf(
                    "IBEX_WEBHOOK_SECRET",
                    "IBEX_WEBHOOK_URL",
                ))
            }
        };
        match url::Url::parse(&url) {
            // A user name or password in the URL would be dropped silently (no Basic auth is sent): refused, so
            // the partner authenticates ibex by the signature, as Standard Webhooks means it to.
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                return Err(ConfigError::WebhookUrlCredentials)
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ => return Err(ConfigError::WebhookUrl),
        }
        let uri: http::Uri = url.parse().map_err(|_| ConfigError::WebhookUrl)?;
        egress.check_uri(&uri).map_err(ConfigError::WebhookEgress)?;
        Ok(Some(crate::webhooks::WebhookConfig {
            url: uri,
            secret: crate::webhooks::signature::Secret::parse(&secret)?,
            retry_for: Duration::from_secs(self.webhook_retry_secs),
            backoff: Duration::from_millis(self.webhook_backoff_ms),
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            keep: Duration::from_secs(self.webhook_keep_days.saturating_mul(86_400)),
            poll: Duration::from_millis(self.webhook_poll_ms.max(10)),
            worker: self.webhook_worker,
        }))
    }

    pub fn public_url(&self) -> Result<String, ConfigError> {
        let url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr));
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                Ok(url.trim_end_matches('/').to_owned())
            }
            _ => Err(ConfigError::PublicUrl(url)),
        }
    }

    /// Comma-separated; spaces around entries are dropped, an empty entry is an error, not ignored.
    pub fn signing_secrets(&self) -> Result<Vec<String>, ConfigError> {
        let raw = self
            .signing_secrets
            .as_deref()
            .ok_or(ConfigError::NoSigningSecret)?;
        Ok(raw.split(',').map(|s| s.trim().to_owned()).collect())
    }

    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        Ok(Verifier::new(
            &self.signing_secrets()?,
            Duration::from_secs(self.signature_tolerance_secs),
        )?)
    }

    pub fn key_ring(&self) -> Result<KeyRing, ConfigError> {
        let spec = self
            .encryption_key
            .as_deref()
            .ok_or(ConfigError::NoEncryptionKey)?;
        Ok(KeyRing::parse(spec)?)
    }

    pub fn oauth(&self) -> Result<crate::signin::oauth::OAuthConfig, ConfigError> {
        const SIM: &str = "http://127.0.0.1:4100/exchange/1/oauth";
        // Infobip's documented host for Exchange OAuth; older variants exist, hence configurable.
        const INFOBIP: &str = "https://oneapi.infobip.com/exchange/1/oauth";
        let base = if self.dev { SIM } else { INFOBIP };
        let url = |name: &'static str, value: &Option<String>, path: &str| {
            let value = value.clone().unwrap_or_else(|| format!("{base}/{path}"));
            match url::Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
                _ => Err(ConfigError::OAuthUrl { name, value }),
            }
        };
        let ancestors = self.frame_ancestors.clone().unwrap_or_else(|| {
            if self.dev {
                "https://portal.infobip.com http://127.0.0.1:4100 http://localhost:4100".into()
            } else {
                "https://portal.infobip.com".into()
            }
        });
        Ok(crate::signin::oauth::OAuthConfig {
            authorize_url: url(
                "IBEX_OAUTH_AUTHORIZE_URL",
                &self.oauth_authorize_url,
                "authorize",
            )?,
            token_url: url("IBEX_OAUTH_TOKEN_URL", &self.oauth_token_url, "token")?,
            client_id: self
                .oauth_client_id
                .clone()
                .or_else(|| self.dev.then(|| "ibex-dev".to_owned())),
            client_secret: self.oauth_client_secret.clone(),
            redirect_url: format!("{}/oauth/callback", self.public_url()?),
            frame_policy: http::HeaderValue::try_from(format!(
                "frame-ancestors {}",
                ancestors.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
            .map_err(|_| ConfigError::FrameAncestors(ancestors.clone()))?,
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            scope: self.oauth_scope.clone(),
        })
    }

    pub fn activity(&self) -> crate::activity::ActivityConfig {
        crate::activity::ActivityConfig {
            flush_every: Duration::from_secs(self.activity_flush_secs.max(1)),
            retention: Duration::from_secs(self.activity_retention_days.saturating_mul(24 * 3600)),
            max_accounts: usize::try_from(self.activity_max_accounts).unwrap_or(usize::MAX),
            recording: self.activity_recording,
        }
    }

    /// People sync's limits and where an account's People base URL may point.
    pub fn sync(&self) -> Result<crate::sync::SyncConfig, ConfigError> {
        let mut hosts: Vec<String> = self
            .people_hosts
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        if let Some(host) = self.infobip()?.base_url.host_str() {
            hosts.push(host.to_ascii_lowercase());
        }
        Ok(crate::sync::SyncConfig {
            reads_per_sec: self.people_reads_per_sec,
            writes_per_sec: self.people_writes_per_sec,
            creates_per_sec: self.people_creates_per_sec,
            batch_size: usize::from(self.people_batch_size),
            hosts,
            allow_loopback: self.allow_loopback_partners || self.dev,
            lease: Duration::from_secs(self.sync_lease_secs.max(5)),
            poll: Duration::from_millis(self.sync_poll_ms.max(50)),
            pause: Duration::from_secs(self.sync_pause_secs),
            worker: self.sync_worker,
            max_pages: self.sync_max_pages,
            max_run: Duration::from_secs(self.sync_max_run_secs),
            failures_kept: self.sync_failures_kept,
            max_page_records: usize::try_from(self.sync_max_page_records).unwrap_or(usize::MAX),
            delete_max_percent: self.sync_delete_max_percent,
        })
    }

    /// Infobip's API for the card: `https://api.infobip.com` unless configured (the account's own
    /// `xxxxx.api.infobip.com` works too), the simulator's portal in development.
    pub fn infobip(&self) -> Result<crate::infobip::InfobipConfig, ConfigError> {
        let value = self.infobip_api_url.clone().unwrap_or_else(|| {
            if self.dev {
                "http://127.0.0.1:4100".into()
            } else {
                "https://api.infobip.com".into()
            }
        });
        let base_url = match url::Url::parse(&value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
            _ => {
                return Err(ConfigError::OAuthUrl {
                    name: "IBEX_INFOBIP_API_URL",
                    value,
                })
            }
        };
        if let Some(scheme) = &self.infobip_auth_scheme {
            if scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(ConfigError::AuthScheme(scheme.clone()));
            }
        }
        Ok(crate::infobip::InfobipConfig {
            base_url,
            auth_scheme: self.infobip_auth_scheme.clone(),
            timeout: Duration::from_secs(5),
            messages_per_minute: self.infobip_messages_per_minute,
        })
    }

    /// In development, fills in missing secrets from (or into) IBEX_DATA_DIR/dev-secrets.env.
    pub fn apply_dev_secrets(&mut self) -> Result<(), ConfigError> {
        if !self.dev || (self.signing_secrets.is_some() && self.encryption_key.is_some()) {
            return Ok(());
        }
        let path = self.data_dir.join("dev-secrets.env");
        let io = |source| ConfigError::DevSecrets {
            path: path.display().to_string(),
            source,
        };
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let lookup = |name: &str| {
            existing
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let (mut secret, mut key) = (
            lookup("IBEX_SIGNING_SECRETS"),
            lookup("IBEX_ENCRYPTION_KEY"),
        );
        if secret.is_none() || key.is_none() {
            use rand::RngCore;
            let mut bytes = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut bytes);
            let secret_value =
                secret.get_or_insert_with(|| format!("dev-{}", const_hex::encode(bytes)));
            let key_value = key.get_or_insert_with(|| KeyRing::generate_spec("dev1"));
            std::fs::create_dir_all(&self.data_dir).map_err(io)?;
            let text = format!(
                "# Development secrets generated by `ibex --dev`. Never use them in production.\n\
                 IBEX_SIGNING_SECRETS={secret_value}\nIBEX_ENCRYPTION_KEY={key_value}\n"
            );
            std::fs::write(&path, text).map_err(io)?;
            eprintln!("ibex: generated development secrets in {}", path.display());
        }
        self.signing_secrets
            .get_or_insert_with(|| secret.unwrap_or_default());
        self.encryption_key
            .get_or_insert_with(|| key.unwrap_or_default());
        Ok(())
    }
}

/// Parses the command line; a bad value also names its environment variable, since that is where most
/// deployments set it.
pub fn parse_cli() -> Cli {
    use clap::error::{ContextKind, ContextValue};
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os());
    let result = matches.and_then(|m| Cli::from_arg_matches(&m));
    match result {
        Ok(cli) => cli,
        Err(error) => {
            let invalid = match error.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => Some(arg.clone()),
                _ => None,
            };
            let env = invalid.and_then(|arg| {
                let long = arg
                    .trim_start_matches("--")
                    .split([' ', '='])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long.as_str()))
                    .and_then(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned())
            });
            match env {
                Some(var) if error.kind() == clap::error::ErrorKind::ValueValidation => {
                    eprintln!("ibex: {var} (or its flag) is invalid:");
                    error.exit()
                }
                _ => error.exit(),
            }
        }
    }
}
