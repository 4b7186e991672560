//! The webhook outbox's delivery rate for docs/benchmarks.md: N events written to the outbox, one instance's
//! worker (its four lanes) delivering them to the simulator's verifying receiver on loopback, timed until the
//! last is marked delivered.
//!
//! `cargo run --release -p server --example bench_webhooks -- [EVENTS]` (a SQLite file in a temporary directory).

use clap::Parser;
use ibex::cli::config::Cli;
use ibex::state::AppState;
use serde_json::json;
use sqlx::Row;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("ibex-bench-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.display());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/webhooks", listener.local_addr()?);
    let router = ibex_sim::webhooks::router(SECRET)?;
    tokio::spawn(async move { axum::serve(listener, router).await });

    let key = app::settings::crypto::KeyRing::generate_spec("bench");
    let cli = Cli::try_parse_from([
        "ibex",
        "--database-url",
        &url,
        "--signing-secrets",
        "bench-signing-secret",
        "--encryption-key",
        &key,
        "--allow-loopback-partners",
        "--webhook-url",
        &receiver,
        "--webhook-secret",
        SECRET,
        "--webhook-poll-ms",
        "50",
    ])?;
    let state = AppState::build(&cli.options).await?;
    let store = state.settings.store().clone();
    let started = Instant::now();
    for i in 0..events {
        store
            .enqueue_event(
                &format!("ACCOUNT-{:04}", i % 500),
                app::settings::outbox::EventKind::SyncRunSucceeded,
                json!({"run_id": i, "direction": "to_people", "read": 250, "created": 246, "failed": 4}),
            )
            .await?;
    }
    let written = started.elapsed();
    let started = Instant::now();
    let _worker = ibex::webhooks::delivery::Deliverer::for_instance(&state)
        .ok_or("no webhook configuration")?
        .spawn();
    loop {
        let delivered: i64 =
            sqlx::query("SELECT COUNT(*) FROM webhook_outbox WHERE state = 'delivered'")
                .fetch_one(store.pool())
                .await?
                .try_get(0)?;
        if delivered as usize >= events {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {delivered} of {events} delivered in 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    println!(
        "{events} events: written one by one in {:.2} s ({:.0}/s); delivered, signed and verified, in {:.2} s ({:.0}/s)",
        written.as_secs_f64(),
        events as f64 / written.as_secs_f64(),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
