//! Everything a request handler needs, built once at start-up from the configuration.

use crate::cli::config::{ConfigError, Options};
use crate::ops::metrics::Metrics;
use crate::partner::probe::PartnerProbe;
use crate::partner::{PartnerClient, RetryPolicy};
use crate::signed::functions::{self, FunctionPlan};
use crate::signed::signature::Verifier;
use crate::signin::oauth::OAuthConfig;
use app::definition::AppDefinition;
use app::settings::crypto::KeyRing;
use app::settings::probe::ConnectionProbe;
use app::settings::store::{SettingsStore, StoreError};
use app::settings::SettingsService;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("app definition, {0}")]
    Compile(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot set up TLS for the partner client: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot read the Leptos site configuration: {0}")]
    Leptos(String),
    #[error(transparent)]
    CardSessions(#[from] crate::signin::card_sessions::CardSessionError),
}

/// What every handler shares. Axum clones the state for each extractor and middleware of every request, so
/// the handle is one `Arc`: a flat struct of a dozen `Arc`s (and the settings cache's own) cost ~40 atomic
/// operations per clone-and-drop, a visible share of a signed call in the profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    pub definition: Arc<AppDefinition>,
    pub functions: Arc<Vec<Arc<FunctionPlan>>>,
    pub settings: SettingsService,
    pub verifier: Arc<Verifier>,
    pub partner: PartnerClient,
    pub metrics: Arc<Metrics>,
    pub leptos_options: Arc<LeptosOptions>,
    pub max_body_bytes: usize,
    pub public_url: Arc<str>,
    pub keys: Arc<KeyRing>,
    pub oauth: Arc<OAuthConfig>,
    /// The configuration page's "Test connection"; `None` when the app definition has no probe.
    pub probe: Option<Arc<dyn ConnectionProbe>>,
    /// For calls to Infobip (OAuth token exchange); partner calls have their own client.
    pub http: reqwest::Client,
    /// Slots for signed calls and for pages, each pool its own (`ops::admission`), shared by every serving
    /// thread's router.
    pub slots: crate::ops::admission::Slots,
    /// Largest body of a page or server-function request (`IBEX_MAX_PAGE_BODY_BYTES`).
    pub max_page_body_bytes: usize,
    /// Sign-ins this instance starts per second at most (`IBEX_SIGN_IN_STARTS_PER_SEC`): each writes a row.
    pub sign_in_starts: Arc<governor::DefaultDirectRateLimiter>,
    /// The context card's actions done in the last minute (`card::ServerCard`), shared by every serving thread.
    pub card_actions_done: moka::future::Cache<String, String>,
    /// Signatures seen within the replay window, when the opt-in guard is on (per instance).
    pub replay_guard: Option<moka::sync::Cache<String, ()>>,
    pub body_timeout: Duration,
    /// Required to read `/metrics` when set.
    pub metrics_token: Option<String>,
    /// Development mode (`--dev`): `/metrics` is open without a token, and the configuration page and the card
    /// may be opened outside a frame.
    pub dev: bool,
    /// The context card's sign-ins, Infobip token included, on the server.
    pub card_sessions: crate::signin::card_sessions::CardSessions,
    pub infobip: crate::infobip::InfobipClient,
    /// Who may change an account's settings (`IBEX_ADMIN_ROLE`, `IBEX_UNLISTED_ACCOUNTS`).
    pub admin_policy: Arc<app::settings::admins::AdminPolicy>,
    /// People sync's limits and where People may be (the worker and the configuration page's panel).
    pub sync: crate::sync::SyncConfig,
    /// People's rate limits per account, shared by this instance's sync worker and the Moments endpoint.
    pub people_limits: Arc<crate::sync::people::Limits>,
    /// Every surface's calls, counted per account for the activity view (`activity`).
    pub activity: crate::activity::Activity,
    /// The partner's webhook endpoint (`IBEX_WEBHOOK_URL`), when configured: changes then write lifecycle
    /// events to the outbox, and this instance's worker may deliver them.
    pub webhooks: Option<Arc<crate::webhooks::WebhookConfig>>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        (*state.leptos_options).clone()
    }
}

/// Opens the settings database and applies pending migrations, failing fast with the reason.
pub async fn open_settings(
    options: &Options,
    definition: Arc<AppDefinition>,
) -> Result<SettingsService, StartError> {
    open_settings_with(options, definition, Arc::new(options.key_ring()?), false).await
}

/// `serving`: a serving instance decides by its own webhook configuration and records it for the deployment;
/// any other process (the command line) also writes events when the serving instances have an endpoint.
async fn open_settings_with(
    options: &Options,
    definition: Arc<AppDefinition>,
    keys: Arc<KeyRing>,
    serving: bool,
) -> Result<SettingsService, StartError> {
    let webhooks = options.webhooks(&options.egress(&definition))?.is_some();
    let store = SettingsStore::connect(&options.database_url, keys).await?;
    store.migrate().await?;
    let webhooks = if serving {
        store.record_webhooks_deployed(webhooks).await?;
        webhooks
    } else {
        webhooks || store.webhooks_deployed().await?
    };
    let store = store.with_webhooks(webhooks);
    Ok(SettingsService::new(
        definition,
        store,
        Duration::from_secs(options.settings_cache_ttl_secs),
        options.settings_cache_mb.saturating_mul(1024 * 1024),
    ))
}

impl AppState {
    /// A copy for one serving thread: everything shared (settings cache, metrics, limits) but the partner
    /// connection pool, which is the thread's own, so a call and its pooled connection never wake another
    /// thread.
    pub fn for_serving_thread(&self) -> Result<AppState, rustls::Error> {
        let mut shared = (*self.0).clone();
        shared.partner = shared.partner.with_own_pool()?;
        Ok(AppState(Arc::new(shared)))
    }

    pub async fn build(options: &Options) -> Result<Self, StartError> {
        if options.max_body_bytes == 0 {
            return Err(ConfigError::MaxBody.into());
        }
        let definition = Arc::new(options.definition()?);
        let verifier = Arc::new(options.verifier()?);
        let public_url = options.public_url()?;
        let metrics = Arc::new(Metrics::new());
        let functions = functions::compile(&definition, &metrics).map_err(StartError::Compile)?;
        let oauth = Arc::new(options.oauth()?);
        let keys = Arc::new(options.key_ring()?);
        let settings = open_settings_with(options, definition.clone(), keys.clone(), true).await?;
        let webhooks = options
            .webhooks(&options.egress(&definition))?
            .map(Arc::new);
        let partner = PartnerClient::new(RetryPolicy::default(), options.egress(&definition))?;
        let probe = PartnerProbe::compile(&definition, partner.clone())
            .map_err(StartError::Compile)?
            .map(|p| Arc::new(p) as Arc<dyn ConnectionProbe>);
        let card_sessions = crate::signin::card_sessions::CardSessions::connect(
            &options.database_url,
            keys.clone(),
        )
        .await?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let infobip = crate::infobip::InfobipClient::new(http.clone(), options.infobip()?);
        let sync = options.sync()?;
        let people_limits = crate::sync::people::Limits::new(&sync, metrics.clone());
        let activity =
            crate::activity::Activity::new(options.activity(), metrics.activity_dropped.clone());
        Ok(AppState(Arc::new(Shared {
            functions: Arc::new(functions),
            settings,
            verifier,
            partner,
            probe,
            metrics,
            leptos_options: Arc::new(leptos_options(options)?),
            max_body_bytes: options.max_body_bytes,
            public_url: public_url.into(),
            keys,
            oauth,
            http,
            metrics_token: options.metrics_token.clone().filter(|t| !t.is_empty()),
            slots: crate::ops::admission::Slots::new(
                options.max_concurrent_requests,
                options.max_concurrent_page_requests,
                options.max_unverified_bodies,
            ),
            max_page_body_bytes: options.max_page_body_bytes.max(1),
            sign_in_starts: Arc::new(governor::RateLimiter::direct(options.sign_in_quota())),
            card_actions_done: crate::card::ServerCard::new_done_record(),
            // Both directions of the window: a signature can be valid for twice the tolerance.
            replay_guard: options.replay_guard.then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(Duration::from_secs(
                        options.signature_tolerance_secs.saturating_mul(2).max(1),
                    ))
                    .build()
            }),
            body_timeout: Duration::from_secs(options.body_timeout_secs.max(1)),
            dev: options.dev,
            card_sessions,
            infobip,
            admin_policy: Arc::new(options.admin_policy()),
            sync,
            people_limits,
            activity,
            webhooks,
            definition,
        })))
    }
}

/// cargo-leptos passes the site layout in LEPTOS_* variables; a plain `ibex serve` uses the same defaults.
fn leptos_options(options: &Options) -> Result<LeptosOptions, StartError> {
    if std::env::var_os("LEPTOS_OUTPUT_NAME").is_some() {
        let mut conf = leptos::config::get_configuration(None)
            .map_err(|e| StartError::Leptos(e.to_string()))?
            .leptos_options;
        conf.site_addr = options.addr;
        return Ok(conf);
    }
    Ok(LeptosOptions::builder()
        .output_name("ibex")
        .site_root(std::env::var("LEPTOS_SITE_ROOT").unwrap_or_else(|_| "target/site".into()))
        .site_pkg_dir("pkg")
        .site_addr(options.addr)
        .build())
}
