//! The activity view's figures for docs/benchmarks.md: how long the view of an account with a week of traffic
//! takes to read and build (p50, p99), and how fast the writer adds windows to the database.
//!
//! `cargo run --release -p server --example bench_activity -- [postgres://…/ADMIN_DB]` (default: a SQLite file
//! in a temporary directory; with a PostgreSQL URL it makes a database of its own there and drops it after).

use app::settings::crypto::KeyRing;
use app::settings::store::{now_ms, SettingsStore};
use ibex::activity::flush::Writer;
use ibex::activity::store::{ActivityStore, HOUR_MS, MINUTE_MS};
use ibex::activity::view::{Period, ServerActivity};
use ibex::activity::{Activity, ActivityConfig, CallRecord, Surface, Upstream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FUNCTIONS: [(Surface, &str); 6] = [
    (Surface::Signed, "order-status"),
    (Surface::Signed, "customer-lookup"),
    (Surface::Signed, "update-customer"),
    (Surface::Card, "customer-lookup"),
    (Surface::CustomCard, "customer-lookup"),
    (Surface::Sync, "list-customers"),
];
const CODES: [(&str, u16); 4] = [
    ("partner_client_error", 404),
    ("partner_client_error", 401),
    ("partner_timeout", 0),
    ("account_not_configured", 0),
];

fn call<'a>(account: &'a str, n: u64) -> CallRecord<'a> {
    let (surface, function) = FUNCTIONS[(n % FUNCTIONS.len() as u64) as usize];
    let failed = n.is_multiple_of(17);
    let (code, status) = CODES[(n / 17 % CODES.len() as u64) as usize];
    CallRecord {
        account,
        surface,
        function,
        elapsed: Duration::from_micros(300 + (n * 7919) % 40_000),
        code: failed.then_some(code),
        status: (failed && status != 0).then_some(status),
        request_id: "3b7e3c1e-7a4d-4a8e-9d0f-1c2b3a4d5e6f",
        verified: true,
        upstream: Upstream::Partner,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `RUST_LOG=sqlx=debug` shows each statement and its time.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let dir = std::env::temp_dir().join(format!("ibex-bench-activity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (url, own_db) = database(std::env::args().nth(1), &dir).await?;
    let keys = Arc::new(KeyRing::parse(&KeyRing::generate_spec("bench"))?);
    let store = SettingsStore::connect(&url, keys).await?;
    store.migrate().await?;
    for table in [
        "activity_calls",
        "activity_outcomes",
        "activity_failures",
        "credential_health",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(store.pool())
            .await?;
    }
    let activity_store = ActivityStore::new(store.clone());

    // A week of one busy account: a window per minute for the last 3 hours (the minute rows kept), then one per
    // hour for the week before (an hour's calls land in its hour row either way), 40 calls each over the six
    // surface-and-function pairs; and 2000 other accounts with a day of hourly traffic around it.
    let now = now_ms();
    let account = "BENCH-ACCOUNT";
    let started = Instant::now();
    let mut windows = 0u64;
    let mut n = 0u64;
    let mut times: Vec<i64> = (0..180).map(|m| now - m * MINUTE_MS).collect();
    times.extend((3..168).map(|h| now - h * HOUR_MS));
    for at in times {
        let activity = Activity::new(ActivityConfig::default(), Default::default());
        for _ in 0..40 {
            activity.recorder.record(&call(account, n), at);
            n += 1;
        }
        Writer::new(activity, activity_store.clone())
            .flush()
            .await?;
        windows += 1;
    }
    let one = started.elapsed();
    // The writer's rate: one flush of 2000 accounts' windows, 24 times (a day, hourly).
    let others: Vec<String> = (0..2000).map(|i| format!("OTHER-{i:05}")).collect();
    let activity = Activity::new(ActivityConfig::default(), Default::default());
    let writer = Writer::new(activity.clone(), activity_store.clone());
    let started = Instant::now();
    let mut written = 0u64;
    for h in 0..24 {
        for other in &others {
            for k in 0..6 {
                activity
                    .recorder
                    .record(&call(other, n + k), now - h * HOUR_MS);
            }
        }
        n += 6;
        writer.flush().await?;
        written += others.len() as u64;
    }
    let many = started.elapsed();
    println!(
        "seeded {windows} windows of {account} in {:.1} s; wrote {written} account windows (6 cells each) in {:.1} s: {:.0} account windows/s",
        one.as_secs_f64(),
        many.as_secs_f64(),
        written as f64 / many.as_secs_f64()
    );

    let source = ServerActivity {
        store: activity_store.clone(),
        settings: store.clone(),
    };
    for period in ["hour", "day", "week"] {
        let period = Period::parse(period).ok_or("period")?;
        let mut took = Vec::new();
        let mut calls = 0;
        for _ in 0..200 {
            let started = Instant::now();
            let view = source.view(account, period).await?;
            took.push(started.elapsed());
            calls = view.calls;
        }
        took.sort();
        println!(
            "view {:>4}: {calls} calls shown; p50 {:.2} ms, p99 {:.2} ms ({} reads)",
            period.name,
            took[took.len() / 2].as_secs_f64() * 1000.0,
            took[took.len() * 99 / 100].as_secs_f64() * 1000.0,
            took.len()
        );
    }
    store.close().await;
    drop_database(own_db).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A SQLite file in `dir`, or a PostgreSQL database of this run's own beside the one `given` names.
async fn database(
    given: Option<String>,
    dir: &std::path::Path,
) -> Result<(String, Option<(String, String)>), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    let Some(admin) = given.filter(|u| u.starts_with("postgres")) else {
        return Ok((
            format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
            None,
        ));
    };
    let name = format!("ibex_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => return Err("a PostgreSQL URL names a database".into()),
    };
    Ok((url, Some((admin, name))))
}

async fn drop_database(own: Option<(String, String)>) -> Result<(), Box<dyn std::error::Error>> {
    use sqlx::Connection;
    if let Some((admin, name)) = own {
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}
