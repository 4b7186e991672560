//! `ibex-sim`: the local Exchange. For now it serves the demo partner API ("Order desk" shop).

use clap::{Parser, Subcommand};
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
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shop { addr, api_key } => ibex_sim::shop::serve(addr, api_key).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ibex-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
