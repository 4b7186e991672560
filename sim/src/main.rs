//! `ibex-sim`: the local Exchange: a portal with the OAuth server Exchange apps use, and the demo partner API.

use clap::{Parser, Subcommand};

/// The same allocator as `ibex`, so that the benchmark's floor proxy is built exactly like ibex.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "ibex-sim",
    version,
    about = "A local stand-in for Infobip Exchange and a demo partner API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo shop API that the bundled Order desk example talks to.
    Shop {
        #[arg(long, env = "IBEX_SIM_SHOP_ADDR", default_value = "127.0.0.1:4001")]
        addr: SocketAddr,
        /// The API key the shop expects in X-Api-Key.
        #[arg(long, env = "IBEX_SIM_SHOP_API_KEY", default_value = "demo-key")]
        api_key: String,
        /// Made-up customers listed after the seeded three (`GET /customers`), for People sync.
        #[arg(long, env = "IBEX_SIM_SHOP_CUSTOMERS", default_value_t = ibex_sim::shop::GENERATED_CUSTOMERS)]
        customers: usize,
        /// The partner's webhook receiver at /webhooks, verifying ibex's Standard Webhooks signatures with this
        /// `whsec_…` secret (the one ibex has in IBEX_WEBHOOK_SECRET); without it, no receiver.
        #[arg(long, env = "IBEX_SIM_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
    },
    /// The benchmark's floor: a bare axum + hyper-util proxy adding the API key (see `scripts/bench.sh`).
    Proxy {
        #[arg(long, default_value = "127.0.0.1:4304")]
        addr: SocketAddr,
        #[arg(long, default_value = "http://127.0.0.1:4001")]
        upstream: String,
        #[arg(long, default_value = "demo-key")]
        api_key: String,
        /// Serving threads, each a single-threaded runtime with its own connection pool, all accepting on one
        /// socket (nginx's model: a worker per core); 0 serves on the work-stealing runtime, as ibex's default.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Serve the simulated Infobip portal (Exchange → My Apps, framing the app's Settings URL) and its OAuth
    /// server at /exchange/1/oauth/authorize and /exchange/1/oauth/token.
    Portal {
        #[arg(long, env = "IBEX_SIM_PORTAL_ADDR", default_value = "127.0.0.1:4100")]
        addr: SocketAddr,
        #[arg(long, default_value = "Order desk")]
        app_name: String,
        /// The app's Client ID, as App shell would show it.
        #[arg(long, env = "IBEX_OAUTH_CLIENT_ID", default_value = "ibex-dev")]
        client_id: String,
        /// Checked only when given (a public PKCE client sends none).
        #[arg(long, env = "IBEX_OAUTH_CLIENT_SECRET")]
        client_secret: Option<String>,
        /// Redirect URLs registered for the app (repeatable).
        #[arg(
            long = "redirect-uri",
            default_value = "http://localhost:3000/oauth/callback"
        )]
        redirect_uris: Vec<String>,
        /// The app's Settings URL, loaded in the configuration iframe.
        #[arg(long, default_value = "http://localhost:3000/settings")]
        settings_url: String,
        /// The app's context card URL, framed beside a conversation in Conversations.
        #[arg(long, default_value = "http://localhost:3000/card")]
        card_url: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shop {
            addr,
            api_key,
            customers,
            webhook_secret,
        } => ibex_sim::shop::serve(addr, api_key, customers, webhook_secret.as_deref()).await,
        Command::Proxy {
            addr,
            upstream,
            api_key,
            threads: 0,
        } => ibex_sim::proxy::serve(addr, upstream, api_key).await,
        Command::Proxy {
            addr,
            upstream,
            api_key,
            threads,
        } => tokio::task::spawn_blocking(move || {
            ibex_sim::proxy::serve_per_thread(addr, upstream, api_key, threads)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        Command::Portal {
            addr,
            app_name,
            client_id,
            client_secret,
            redirect_uris,
            settings_url,
            card_url,
        } => {
            let app = ibex_sim::exchange::AppListing {
                name: app_name,
                client_id,
                client_secret,
                redirect_uris,
                settings_url,
                card_url,
            };
            ibex_sim::exchange::serve(addr, app).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ibex-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
