//! The `ibex` subcommands. Each is a short sequence over the same pieces the server uses, so the CLI can never
//! accept what the configuration page would refuse.

use crate::cli::config::{
    AdminsCommand, Cli, Command, ConfigError, KeysCommand, LogFormat, ManifestFormat, Options,
    SettingsCommand, SyncCommand, WebhooksCommand,
};
use crate::manifest::manifest;
use crate::routes;
use crate::signed::signature::{now_ms, signed_headers};
use crate::state::{open_settings, AppState, StartError};
use app::definition::{AppDefinition, InputLocation, ValueType};
use app::settings::store::redact_url;
use app::settings::SettingsError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving stopped: {0}")]
    Serve(std::io::Error),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

pub async fn run(cli: Cli) -> Result<ExitCode, CommandError> {
    let mut options = cli.options;
    options.apply_dev_secrets()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&options).await,
        Command::Manifest { product, format } => {
            let definition = options.definition()?;
            let value = manifest(&definition, product.product(), &options.public_url()?);
            let text = match format {
                ManifestFormat::Json => serde_json::to_string_pretty(&value).unwrap_or_default(),
                ManifestFormat::Yaml => yaml_serde::to_string(&value).unwrap_or_default(),
            };
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Settings(SettingsCommand::Set {
            account_key,
            changes,
        }) => settings_set(&options, &account_key, &changes).await,
        Command::Settings(SettingsCommand::Link {
            signed_key,
            settings_key,
        }) => settings_link(&options, &signed_key, Some(&settings_key)).await,
        Command::Settings(SettingsCommand::Unlink { signed_key }) => {
            settings_link(&options, &signed_key, None).await
        }
        Command::Settings(SettingsCommand::Import { file }) => {
            settings_import(&options, &file).await
        }
        Command::Settings(SettingsCommand::Show { account_key }) => {
            settings_show(&options, &account_key).await
        }
        Command::Call {
            function,
            inputs,
            account,
            url,
        } => call(&options, &function, &inputs, &account, url).await,
        Command::Keys(KeysCommand::Rewrap { dry_run }) => keys_rewrap(&options, dry_run).await,
        Command::Admins(command) => admins(&options, command).await,
        Command::Activity { account, period } => activity(&options, &account, &period).await,
        Command::Webhooks(command) => webhooks(&options, command).await,
        Command::Sync(command) => sync_control(&options, command).await,
        Command::Migrate => {
            let settings = open_settings(&options, Arc::new(options.definition()?)).await?;
            settings.store().close().await;
            println!(
                "migrations applied to {}",
                redact_url(&options.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Log lines are written by a background thread, so a request never waits on stderr. Keep the guard alive
/// for as long as the process logs: dropping it flushes what is queued.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IBEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

/// Said loudly at every start while nothing restricts who configures an account: any user of a customer's
/// Infobip account who can open the card can then also change its settings, secrets included.
async fn warn_if_anyone_configures(state: &AppState) {
    if state.admin_policy.restricts() {
        return;
    }
    let listed = state.settings.store().any_admins().await.unwrap_or(false);
    tracing::warn!(
        some_accounts_have_admins = listed,
        "WHO MAY CONFIGURE IS NOT RESTRICTED: on every account without an admin listed, any user who signs in to \
         the configuration page (an agent who can open the card, too) can change its settings, start syncs and \
         issue its Custom cards token. Set IBEX_ADMIN_ROLE, list admins with `ibex admins add ACCOUNT USER_KEY` \
         (or let each account's first admin claim it on the page), or set IBEX_UNLISTED_ACCOUNTS=closed \
         (docs/exchange-assumptions.md, \"Who may configure\")"
    );
}

async fn serve(options: &Options) -> Result<ExitCode, CommandError> {
    let _log_guard = init_logging(options.log_format);
    let state = AppState::build(options).await?;
    state
        .card_sessions
        .spawn_cleanup(std::time::Duration::from_secs(300));
    crate::signin::flows::spawn_cleanup(
        state.settings.store().clone(),
        std::time::Duration::from_secs(300),
    );
    state
        .settings
        .spawn_change_follower(std::time::Duration::from_millis(
            options.settings_poll_ms.max(10),
        ));
    warn_if_anyone_configures(&state).await;
    if state.definition.sync.is_some() && state.sync.worker {
        crate::sync::engine::SyncEngine::for_instance(&state).spawn(state.clone());
    }
    let activity = crate::activity::flush::Writer::new(
        state.activity.clone(),
        crate::activity::store::ActivityStore::new(state.settings.store().clone()),
    );
    activity.spawn();
    // Held for as long as ibex serves; the worker's tasks stop with it.
    let webhook_worker = crate::webhooks::delivery::Deliverer::for_instance(&state)
        .filter(|_| state.webhooks.as_ref().is_some_and(|w| w.worker))
        .map(crate::webhooks::delivery::Deliverer::spawn);
    let bind_error = |source| CommandError::Bind {
        addr: options.addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(options.addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(bind_error)?;
    let public_url = state.public_url.clone();
    if options.dev {
        eprintln!(
            "ibex (development) serving {} at {public_url}\n  signing secret: {}\n  try: ibex --dev call order-status order_id=1001 --account demo-account",
            state.definition.app.name,
            options.signing_secrets.as_deref().unwrap_or_default(),
        );
    }
    tracing::info!(
        app = %state.definition.app.name,
        addr = %options.addr,
        public_url = %public_url,
        database = %redact_url(&options.database_url),
        functions = state.functions.len(),
        // The host only: a URL's path or query may hold the partner's own token.
        webhooks = state.webhooks.as_ref().and_then(|w| w.url.host()).unwrap_or("off"),
        webhook_worker = webhook_worker.is_some(),
        "ibex listening"
    );
    let limits = crate::ops::listen::ListenLimits {
        header_read: std::time::Duration::from_secs(options.header_timeout_secs.max(1)),
        shutdown_grace: std::time::Duration::from_secs(options.shutdown_grace_secs),
    };
    let threads = options.serve_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Each serving thread's partner pool, and the shared one.
    crate::ops::listen::raise_descriptor_limit(threads + 1);
    if threads == 0 {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
        crate::ops::listen::serve(listener, routes::router(state), limits, shutdown_signal()).await;
    } else {
        let routers = (0..threads)
            .map(|_| state.for_serving_thread().map(routes::router))
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::state::StartError::from)?;
        crate::ops::listen::serve_per_thread(listener, routers, limits, shutdown_signal())
            .await
            .map_err(CommandError::Serve)?;
    }
    // The calls counted since the last write: a restart within a minute adds to the same minute's rows.
    if let Err(e) = activity.flush().await {
        tracing::warn!(error = %e, "activity: the last counters could not be written");
    }
    Ok(ExitCode::SUCCESS)
}

async fn activity(
    options: &Options,
    account: &str,
    period: &str,
) -> Result<ExitCode, CommandError> {
    use crate::activity::view::{as_text, Period, ServerActivity};
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let store = settings.store().clone();
    let Some(period) = Period::parse(period) else {
        eprintln!("--period must be hour, day or week");
        return Ok(ExitCode::from(2));
    };
    let source = ServerActivity {
        store: crate::activity::store::ActivityStore::new(store.clone()),
        settings: store.clone(),
    };
    let view = source.view(account, period).await;
    store.close().await;
    let view = view.map_err(|e| CommandError::Settings(e.into()))?;
    print!("{}", as_text(account, &view));
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn parse_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>, CommandError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| CommandError::Usage(format!("`{pair}` is not name=value")))
        })
        .collect()
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

async fn settings_set(
    options: &Options,
    account_key: &str,
    pairs: &[String],
) -> Result<ExitCode, CommandError> {
    let changes = parse_pairs(pairs)?;
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let result = settings.update(account_key, None, &changes, &actor()).await;
    settings.store().close().await;
    match result {
        Ok(saved) => {
            println!("saved {account_key}: version {}", saved.version);
            Ok(ExitCode::SUCCESS)
        }
        Err(SettingsError::Invalid(errors)) => {
            for e in errors {
                eprintln!("{}: {}", e.field, e.message);
            }
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

/// One line of `settings import`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    account_key: String,
    settings: BTreeMap<String, String>,
}

/// Saves go eight at a time: a PostgreSQL round trip per save would make 100 000 accounts take minutes; SQLite
/// queues them on its write lock. Two lines for one account are saved in file order, never side by side (the
/// later one would otherwise race the earlier, and could land first or end as a conflict).
async fn settings_import(
    options: &Options,
    file: &std::path::Path,
) -> Result<ExitCode, CommandError> {
    use tokio::io::AsyncBufReadExt;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin> = if file == std::path::Path::new("-") {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(file)
                .await
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", file.display())))?,
        )
    };
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let actor = actor();
    // Split on bytes, not `lines()`: one line that is not UTF-8 is that line's refusal, not the end of the file.
    let mut lines = tokio::io::BufReader::new(reader).split(b'\n');
    let (mut number, mut saved, mut refused) = (0u64, 0u64, 0u64);
    let mut saves = tokio::task::JoinSet::new();
    let mut in_flight = std::collections::HashSet::new();
    type Done = Result<(u64, String, Result<(), String>), tokio::task::JoinError>;
    let mut finish = |done: Done, in_flight: &mut std::collections::HashSet<String>| match done {
        Ok((_, account, Ok(()))) => {
            in_flight.remove(&account);
            saved += 1;
        }
        Ok((line, account, Err(why))) => {
            in_flight.remove(&account);
            refused += 1;
            eprintln!("line {line}: {why}");
        }
        Err(e) => {
            refused += 1;
            eprintln!("a save stopped: {e}");
        }
    };
    let mut unreadable = 0u64;
    loop {
        let bytes = match lines.next_segment().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break,
            Err(e) => {
                eprintln!("line {}: cannot be read: {e}", number + 1);
                unreadable += 1;
                break;
            }
        };
        number += 1;
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(_) => {
                unreadable += 1;
                eprintln!("line {number}: not UTF-8 text");
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ImportLine = match serde_json::from_str(&line) {
            Ok(parsed) => parsed,
            Err(e) => {
                unreadable += 1;
                eprintln!("line {number}: {e}");
                continue;
            }
        };
        while in_flight.contains(&parsed.account_key) {
            match saves.join_next().await {
                Some(done) => finish(done, &mut in_flight),
                None => break,
            }
        }
        in_flight.insert(parsed.account_key.clone());
        let (service, actor) = (settings.clone(), actor.clone());
        saves.spawn(async move {
            let result = service
                .update(&parsed.account_key, None, &parsed.settings, &actor)
                .await;
            let result = match result {
                Ok(_) => Ok(()),
                Err(SettingsError::Invalid(errors)) => Err(errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")),
                Err(e) => Err(e.to_string()),
            };
            (number, parsed.account_key, result)
        });
        if saves.len() >= 8 {
            if let Some(done) = saves.join_next().await {
                finish(done, &mut in_flight);
            }
        }
    }
    while let Some(done) = saves.join_next().await {
        finish(done, &mut in_flight);
    }
    refused += unreadable;
    settings.store().close().await;
    println!("saved {saved} lines, {refused} lines refused");
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Links (or, without `settings_key`, unlinks) a signed-call account key. The settings key must have settings:
/// a link to nothing would only move the error.
async fn settings_link(
    options: &Options,
    signed_key: &str,
    settings_key: Option<&str>,
) -> Result<ExitCode, CommandError> {
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let store = settings.store();
    let result = async {
        match settings_key {
            Some(target) => {
                if store.load(target).await?.is_none() {
                    eprintln!("account {target} has no settings: link to the key the configuration page saved under");
                    return Ok(ExitCode::from(2));
                }
                store.link(signed_key, target, &actor()).await?;
                println!("signed calls for {signed_key} now use the settings of {target}");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                if store.unlink(signed_key).await? {
                    println!("{signed_key} is no longer linked");
                } else {
                    println!("{signed_key} was not linked");
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    store.close().await;
    result.map_err(|e: app::settings::store::StoreError| CommandError::Settings(e.into()))
}

/// `ibex admins add|remove|list`: the operator's side of who may configure an account. Every change is written
/// to the audit log with the operator's user name.
async fn admins(options: &Options, command: AdminsCommand) -> Result<ExitCode, CommandError> {
    use app::settings::admins::valid_user_key;
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let store = settings.store();
    let result = async {
        match command {
            AdminsCommand::Add { account, user_key } => {
                if !valid_user_key(&user_key) {
                    eprintln!("{user_key:?} is not a user key as Infobip writes them (letters, digits, '-', '_', '.', '@', ':'; at most 128)");
                    return Ok(ExitCode::from(2));
                }
                if store.add_admin(&account, &user_key, "", &actor()).await? {
                    tracing::info!(target: "ibex::audit", account_key = %account, actor = %actor(), user_key = %user_key, action = "added", "account admins changed");
                    println!("{user_key} can now change the settings of account {account}");
                } else {
                    println!("{user_key} already is an admin of account {account}");
                }
            }
            AdminsCommand::Remove { account, user_key } => {
                if store.remove_admin(&account, &user_key, false).await? {
                    tracing::info!(target: "ibex::audit", account_key = %account, actor = %actor(), user_key = %user_key, action = "removed", "account admins changed");
                    println!("{user_key} is no longer an admin of account {account}");
                    if store.admins(&account).await?.is_empty() {
                        println!("account {account} has no admin left: IBEX_UNLISTED_ACCOUNTS decides who configures it");
                    }
                } else {
                    println!("{user_key} was not an admin of account {account}");
                }
            }
            AdminsCommand::List { account } => {
                let admins = store.admins(&account).await?;
                if admins.is_empty() {
                    println!("account {account} has no admin listed");
                }
                for admin in admins {
                    let at = time::OffsetDateTime::from_unix_timestamp(admin.added_at / 1000)
                        .map(|t| t.date().to_string())
                        .unwrap_or_default();
                    println!("{}\tadded by {} on {at}", admin.display(), admin.added_by);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result.map_err(|e: app::settings::store::StoreError| CommandError::Settings(e.into()))
}

/// `ibex webhooks list|replay`: the operator's view of the outbox. Never a payload nor the secret: the list
/// names each event and says how its delivery stands.
async fn webhooks(options: &Options, command: WebhooksCommand) -> Result<ExitCode, CommandError> {
    use app::settings::outbox::{rfc3339, Outbox, Replay};
    let settings = open_settings(options, Arc::new(options.definition()?)).await?;
    let outbox = Outbox::new(settings.store().clone());
    let result = async {
        match command {
            WebhooksCommand::List {
                account,
                state,
                limit,
            } => {
                let events = outbox
                    .list(account.as_deref(), state.as_deref(), limit.clamp(1, 10_000))
                    .await?;
                if events.is_empty() {
                    println!("no webhook events");
                }
                for e in events {
                    let when = match e.state.as_str() {
                        "pending" => format!("next attempt {}", rfc3339(e.next_attempt_at)),
                        "delivered" => format!("delivered {}", rfc3339(e.delivered_at.unwrap_or(0))),
                        _ => "given up".to_owned(),
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{} attempt(s)\tcreated {}\t{when}\t{}",
                        e.event_id,
                        e.event_type,
                        e.account_key,
                        e.state,
                        e.attempts,
                        rfc3339(e.created_at),
                        printable(e.last_error.as_deref().unwrap_or(""))
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhooksCommand::Replay { event_id } => match outbox.replay(&event_id).await? {
                Replay::Queued => {
                    println!("{event_id} queued again under the same id: an instance with IBEX_WEBHOOK_URL sends it");
                    Ok(ExitCode::SUCCESS)
                }
                Replay::InFlight => {
                    eprintln!("{event_id} is being sent right now; list it again to see how that went");
                    Ok(ExitCode::from(1))
                }
                Replay::NotFound => {
                    eprintln!("no webhook event {event_id} (delivered events are kept IBEX_WEBHOOK_KEEP_DAYS days)");
                    Ok(ExitCode::from(2))
                }
            },
        }
    }
    .await;
    settings.store().close().await;
    result.map_err(|e: app::settings::store::StoreError| CommandError::Settings(e.into()))
}

/// Text that came from elsewhere (the partner's answer in a webhook's last error), safe to print to a terminal:
/// its control characters (escape sequences, carriage returns) written out as `\u{1b}` and the like.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// `ibex sync pause|resume|resync`: the operator's hand on an account's sync, the same controls as the page's,
/// recorded in the account's sync history as "operator (cli:USER)" and in the audit log.
async fn sync_control(options: &Options, command: SyncCommand) -> Result<ExitCode, CommandError> {
    use crate::sync::controls::{direction_label, ControlError, Controls};
    let definition = Arc::new(options.definition()?);
    let Some(sync) = definition.sync.clone() else {
        eprintln!("this app defines no [sync]");
        return Ok(ExitCode::from(2));
    };
    let (action, account, direction) = match command {
        SyncCommand::Pause { account, direction } => ("pause", account, direction),
        SyncCommand::Resume { account, direction } => ("resume", account, direction),
        SyncCommand::Resync { account, direction } => ("resync", account, direction),
    };
    let account = account.trim().to_owned();
    if account.is_empty() || account.len() > 256 || account.chars().any(char::is_control) {
        eprintln!("{account:?} is not an account key");
        return Ok(ExitCode::from(2));
    }
    let mut all = vec![crate::sync::runs::TO_PEOPLE];
    if sync.from_people.is_some() {
        all.push(crate::sync::runs::FROM_PEOPLE);
    }
    let directions = match direction.map(|d| d.as_str()) {
        None => all,
        Some(d) if all.contains(&d) => vec![d],
        Some(d) => {
            eprintln!(
                "this app has no {} sync ([sync.from_people] is not defined)",
                direction_label(d)
            );
            return Ok(ExitCode::from(2));
        }
    };
    let settings = open_settings(options, definition).await?;
    let controls = Controls::new(settings.store().clone());
    let by = format!("operator ({})", actor());
    let labels = |ds: &[String]| {
        ds.iter()
            .map(|d| direction_label(d))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let result = async {
        match action {
            "pause" => {
                let paused = controls.pause(&account, &directions, &by).await?;
                if paused.is_empty() {
                    println!("sync of account {account} was paused already");
                } else {
                    println!(
                        "sync of account {account} is paused ({}); a run in progress stops at its next page",
                        labels(&paused)
                    );
                }
            }
            "resume" => {
                let resumed = controls.resume(&account, &directions, &by).await?;
                if resumed.is_empty() {
                    println!("sync of account {account} was not paused");
                } else {
                    println!("sync of account {account} is resumed ({})", labels(&resumed));
                }
            }
            _ => {
                for direction in &directions {
                    match controls.resync(&account, direction, &by).await {
                        Ok(done) => println!(
                            "account {account}, {}: {} record digest(s) forgotten, {} open run(s) ended; the next run sends everything",
                            direction_label(direction),
                            done.records_forgotten,
                            done.runs_ended
                        ),
                        Err(ControlError::Running(_)) => {
                            eprintln!(
                                "account {account}: a {} run is in progress; pause sync first (it stops at its next page), then resync",
                                direction_label(direction)
                            );
                            return Ok(ExitCode::from(1));
                        }
                        Err(ControlError::Store(e)) => return Err(e),
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    settings.store().close().await;
    result.map_err(|e: app::settings::store::StoreError| CommandError::Settings(e.into()))
}

/// `ibex keys rewrap`: prints what it did (or would do); exits 1 when secrets are left unreadable, so a rotation
/// script stops before the old key is removed.
async fn keys_rewrap(options: &Options, dry_run: bool) -> Result<ExitCode, CommandError> {
    let definition = Arc::new(options.definition()?);
    let settings = open_settings(options, definition).await?;
    let report = settings.store().rewrap(dry_run).await;
    settings.store().close().await;
    let report = report.map_err(SettingsError::Store)?;
    let verb = if dry_run {
        "would re-seal"
    } else {
        "re-sealed"
    };
    println!(
        "{} accounts: {verb} {} secret(s) with the first key; {} already sealed with it; {} unreadable; {} conflict(s)",
        report.accounts,
        report.rewrapped,
        report.current,
        report.unreadable.len(),
        report.conflicts
    );
    for (account, field) in &report.unreadable {
        println!("unreadable: account {account}, field {field} (an admin enters it again on the configuration page)");
    }
    if report.conflicts > 0 {
        println!("saved by someone else meanwhile: run again to finish those accounts");
    }
    Ok(if report.unreadable.is_empty() && report.conflicts == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn settings_show(options: &Options, account_key: &str) -> Result<ExitCode, CommandError> {
    let definition = Arc::new(options.definition()?);
    let settings = open_settings(options, definition.clone()).await?;
    let stored = settings.load(account_key).await;
    settings.store().close().await;
    let Some(stored) = stored? else {
        eprintln!("account {account_key} has no settings yet");
        return Ok(ExitCode::from(1));
    };
    let mut fields = Map::new();
    for field in &definition.settings {
        let shown = if stored.secrets.contains_key(&field.key) {
            json!("•••••• (set)")
        } else if stored.unreadable.contains(&field.key) {
            json!("unreadable with the configured keys: enter it again")
        } else if let Some(value) = stored.values.get(&field.key) {
            value.clone()
        } else if let Some(default) = &field.default {
            json!({ "default": default })
        } else {
            Value::Null
        };
        fields.insert(field.key.clone(), shown);
    }
    let out = json!({
        "account_key": stored.account_key,
        "version": stored.version,
        "updated_at": stored.updated_at,
        "updated_by": stored.updated_by,
        "settings": fields,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// Builds the request Infobip would send for these inputs: path inputs in the URI, the rest in the query of a
/// GET or in the JSON body otherwise, typed as the definition says.
pub fn build_call(
    definition: &AppDefinition,
    function: &str,
    pairs: &BTreeMap<String, String>,
) -> Result<(reqwest::Method, String, Vec<u8>), CommandError> {
    let f = definition.function(function).ok_or_else(|| {
        CommandError::Usage(format!("no function `{function}` in the app definition"))
    })?;
    let mut path = format!("/fn/{}", f.name);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut body = Map::new();
    for (name, value) in pairs {
        let input = f.inputs.iter().find(|i| &i.name == name).ok_or_else(|| {
            CommandError::Usage(format!("function `{function}` has no input `{name}`"))
        })?;
        match input.location(f.method) {
            InputLocation::Path => {}
            InputLocation::Query if f.method.as_str() == "GET" => {
                query.append_pair(name, value);
            }
            _ => {
                let typed = match input.kind {
                    ValueType::Number | ValueType::Integer | ValueType::Boolean => {
                        serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.clone()))
                    }
                    _ => Value::String(value.clone()),
                };
                body.insert(name.clone(), typed);
            }
        }
    }
    for input in f.path_inputs() {
        let value = pairs.get(&input.name).ok_or_else(|| {
            CommandError::Usage(format!(
                "input `{}` is required (it is in the URI)",
                input.name
            ))
        })?;
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(
            value,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    let query = query.finish();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    let body = if f.method.as_str() == "GET" {
        Vec::new()
    } else {
        Value::Object(body).to_string().into_bytes()
    };
    let method =
        reqwest::Method::from_bytes(f.method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST);
    Ok((method, path, body))
}

async fn call(
    options: &Options,
    function: &str,
    inputs: &[String],
    account: &str,
    url: Option<String>,
) -> Result<ExitCode, CommandError> {
    let definition = options.definition()?;
    let pairs = parse_pairs(inputs)?;
    let (method, path, body) = build_call(&definition, function, &pairs)?;
    let secrets = options.signing_secrets()?;
    let secret = secrets.first().ok_or(ConfigError::NoSigningSecret)?;
    let base = url.unwrap_or_else(|| format!("http://{}", options.addr));
    let mut request = reqwest::Client::new()
        .request(
            method.clone(),
            format!("{}{path}", base.trim_end_matches('/')),
        )
        .header("content-type", "application/json");
    for (name, value) in signed_headers(secret, account, now_ms(), &body) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{method} {path} → {status}\n{pretty}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_elsewhere_prints_without_its_control_characters() {
        assert_eq!(
            super::printable("503 \u{1b}[2J\rok\n"),
            "503 \\u{1b}[2J\\u{d}ok\\u{a}"
        );
        assert_eq!(super::printable("plain — text"), "plain — text");
    }
}
