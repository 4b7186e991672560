#![recursion_limit = "256"]

use std::process::ExitCode;

/// mimalloc: the signed path allocates many small short-lived buffers, which glibc malloc serves with lock
/// contention across tokio workers (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = ibex::cli::config::parse_cli();
    match ibex::cli::commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ibex: {e}");
            ExitCode::FAILURE
        }
    }
}
