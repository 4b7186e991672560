//! The crash test of People sync, with real processes: an `ibex serve` is killed with SIGKILL in the middle of a
//! run (page 1 committed, page 2's first batch written and its second in flight), a new one is started on the
//! same database, and the run resumes where it stopped. Afterwards People holds exactly the source's persons,
//! each created once, and the run's counts count every record once. On SQLite and PostgreSQL.

mod common;

use common::{client, Backend, Harness, ACCOUNT, SECRET};
use ibex::sync::runs::{Runs, TO_PEOPLE};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GENERATED: usize = 247;

fn start_ibex(h: &Harness, definition: &std::path::Path) -> Child {
    start_ibex_at(h, definition, "50", "20")
}

fn start_ibex_at(
    h: &Harness,
    definition: &std::path::Path,
    writes_per_sec: &str,
    batch_size: &str,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ibex"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--public-url",
            "http://127.0.0.1:9",
            "--allow-loopback-partners",
            "--sync-poll-ms",
            "100",
            "--sync-lease-secs",
            "5",
        ])
        .env("DATABASE_URL", &h.db.url)
        .env("IBEX_APP", definition)
        .env("IBEX_SIGNING_SECRETS", SECRET)
        .env("IBEX_ENCRYPTION_KEY", &h.encryption_key)
        .env("IBEX_OAUTH_CLIENT_ID", "crash-test")
        .env("IBEX_PEOPLE_WRITES_PER_SEC", writes_per_sec)
        .env("IBEX_PEOPLE_BATCH_SIZE", batch_size)
        .env("IBEX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ibex starts")
}

async fn crash(backend: Backend) {
    let h = Harness::start_with_shop(backend, &["--allow-loopback-partners"], GENERATED).await;
    let definition =
        std::env::temp_dir().join(format!("ibex-crash-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&definition, common::test_definition()).unwrap();
    // A slow People (each batch answered 150 ms after it was applied), so the kill lands with a batch in flight.
    client()
        .post(format!("{}/_sim/people", h.portal))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 50, "delay_ms": 150}))
        .send()
        .await
        .unwrap();
    h.configure(
        ACCOUNT,
        &[
            ("people_base_url", h.portal.as_str()),
            ("people_api_key", ibex_sim::people::API_KEY),
        ],
    )
    .await;
    let runs = Runs::new(h.state.settings.store().clone());
    let id = runs
        .enqueue(ACCOUNT, TO_PEOPLE, "crash-test")
        .await
        .unwrap();

    // Kill the first instance once page 1 is committed and page 2's first batch of 20 is written: its second
    // batch is then in People's hands (applied, not yet answered).
    let mut first = start_ibex(&h, &definition);
    let started = Instant::now();
    loop {
        let run = runs.get(id).await.unwrap().unwrap();
        if run.counts.read >= 100 && run.page_done >= 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL: no shutdown, no cleanup
    first.wait().unwrap();
    let killed = runs.get(id).await.unwrap().unwrap();
    assert_eq!(
        killed.status, "running",
        "the dead instance's lease is still on it"
    );
    let written_before = common::people_state(&h).await["persons"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        written_before > 100,
        "page 2 was partly written: {written_before}"
    );
    client()
        .post(format!("{}/_sim/people", h.portal))
        .json(&json!({"reads_per_sec": 0, "writes_per_sec": 50}))
        .send()
        .await
        .unwrap();

    // A new instance takes the run over once the lease has run out, and finishes it from its checkpoint.
    let mut second = start_ibex(&h, &definition);
    let run = loop {
        let run = runs.get(id).await.unwrap().unwrap();
        if run.status == "done" {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not resumed: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(run.attempts, 2, "claimed twice: {run:?}");
    let c = &run.counts;
    assert_eq!(c.read, 250, "every record counted once: {c:?}");
    assert_eq!(
        (c.created + c.updated + c.unchanged, c.failed),
        (246, 4),
        "{c:?}"
    );
    // What page 2 had sent before the kill is sent again on resume, and People says it holds it already.
    assert!(c.unchanged >= 20, "{c:?}");
    let stats = &common::people_state(&h).await["stats"];
    assert_eq!(
        (stats["creates"].as_u64(), stats["updates"].as_u64()),
        (Some(246), Some(0)),
        "each person created once, none written twice: {stats}"
    );

    // People holds exactly the source's persons, each once.
    let persons = common::people_state(&h).await["persons"]
        .as_array()
        .unwrap()
        .clone();
    let mut ids: Vec<String> = persons
        .iter()
        .map(|p| p["externalId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = ["c-100", "c-101"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            (0..GENERATED)
                .filter(|n| n % 97 != 13)
                .map(|n| format!("g-{n:06}")),
        )
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}

on_both_backends!(killed_mid_run, crash);

/// Two instances on one PostgreSQL share the queued runs and never run one twice: four accounts' runs, both
/// workers polling, every run claimed once, and People written exactly once per record and account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let h =
            Harness::start_with_shop(Backend::Postgres, &["--allow-loopback-partners"], GENERATED)
                .await;
        let definition =
            std::env::temp_dir().join(format!("ibex-pair-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&definition, common::test_definition()).unwrap();
        client()
            .post(format!("{}/_sim/people", h.portal))
            .json(&json!({"reads_per_sec": 0, "writes_per_sec": 0}))
            .send()
            .await
            .unwrap();
        let accounts = [ACCOUNT, "ACCT-2", "ACCT-3", "ACCT-4"];
        let runs = Runs::new(h.state.settings.store().clone());
        let mut ids = Vec::new();
        for account in accounts {
            h.configure(
                account,
                &[
                    ("api_base_url", h.shop.as_str()),
                    ("api_key", common::SHOP_KEY),
                    ("people_base_url", h.portal.as_str()),
                    ("people_api_key", ibex_sim::people::API_KEY),
                ],
            )
            .await;
            ids.push(runs.enqueue(account, TO_PEOPLE, "pair-test").await.unwrap());
        }
        let mut a = start_ibex_at(&h, &definition, "100", "1000");
        let mut b = start_ibex_at(&h, &definition, "100", "1000");
        let started = Instant::now();
        let done = loop {
            let mut all = Vec::new();
            for id in &ids {
                all.push(runs.get(*id).await.unwrap().unwrap());
            }
            if all.iter().all(|r| r.status == "done") {
                break all;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "not done: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for child in [&mut a, &mut b] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        for run in &done {
            assert_eq!(
                (run.attempts, run.counts.read),
                (1, 250),
                "claimed once: {run:?}"
            );
        }
        // The accounts share the shop, so their persons are the same 246: the first run to reach a person
        // creates it, the others find it as they would write it. Any page run twice would show as more persons
        // sent.
        let stats = &common::people_state(&h).await["stats"];
        let sent = stats["creates"].as_u64().unwrap()
            + stats["updates"].as_u64().unwrap()
            + stats["unchanged"].as_u64().unwrap();
        assert_eq!(sent, 4 * 246, "{stats}");
        assert_eq!(stats["creates"].as_u64(), Some(246), "{stats}");
        let _ = std::fs::remove_file(&definition);
        h.finish().await;
    })
    .await
    .expect("the test did not finish within 120 s");
}
