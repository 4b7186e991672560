//! Graceful shutdown of the real binary: SIGTERM to a running `ibex serve` closes its listener at once (new
//! connections are refused), lets the signed call in flight finish with its answer, and the process exits 0
//! well within the grace period.

mod common;

use common::binary::{signed_call, spawn_ibex};
use common::{Backend, Harness};
use std::process::Command;
use std::time::{Duration, Instant};

/// Both serving models: a thread per core (the default, `IBEX_SERVE_THREADS` unset) and tokio's shared runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_in_flight_and_refuses_the_rest() {
    let h = Harness::start(Backend::Sqlite).await;
    for threads in ["2", "0"] {
        sigterm_with(&h, threads).await;
    }
    h.finish().await;
}

async fn sigterm_with(h: &Harness, threads: &str) {
    let (mut ibex, base, port, definition) =
        spawn_ibex(h, &["--shutdown-grace-secs", "10"], threads).await;
    // A signed call whose partner takes 1.5 s, then SIGTERM while it is in flight.
    h.shop_faults(serde_json::json!({"delay_ms": 1500})).await;
    let in_flight = tokio::spawn(signed_call(&base).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let term = Command::new("kill")
        .args(["-TERM", &ibex.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let terminated = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "new connections are still accepted after SIGTERM"
    );
    let answer = in_flight
        .await
        .unwrap()
        .expect("the call in flight got an answer");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "shipped", "{body}");

    let exited = loop {
        if let Some(status) = ibex.try_wait().unwrap() {
            break status;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(10),
            "ibex did not exit within its grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "threads {threads}: {exited:?}");
    h.shop_faults(serde_json::json!({})).await;
    let _ = std::fs::remove_file(&definition);
}

/// Started as systemd starts a service, with a soft open-file limit far under the hard one, ibex raises it to
/// the hard one: its partner pools alone may keep 512 idle connections each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_raises_its_open_file_limit() {
    let h = Harness::start(Backend::Sqlite).await;
    let (mut ibex, _, _, definition) = spawn_ibex(&h, &[], "2").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", ibex.id())).unwrap();
    let _ = ibex.kill();
    let _ = ibex.wait();
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert!(
        numbers[1] == "unlimited" || numbers[1].parse::<u64>().unwrap() > 256,
        "{line}"
    );
    assert_eq!(numbers[0], numbers[1], "{line}");
}

/// `IBEX_MAX_CONCURRENT_REQUESTS` bounds the whole process, not each serving thread: with a limit of 1, two
/// threads and a slow partner, of many calls sent at once exactly one is served and the rest are shed (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_threads_share_one_request_limit() {
    let h = Harness::start(Backend::Sqlite).await;
    let (mut ibex, base, _, definition) =
        spawn_ibex(&h, &["--max-concurrent-requests", "1"], "2").await;
    h.shop_faults(serde_json::json!({"delay_ms": 800})).await;
    let calls: Vec<_> = (0..12)
        .map(|_| tokio::spawn(signed_call(&base).send()))
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap().unwrap().status().as_u16());
    }
    statuses.sort_unstable();
    let served = statuses.iter().filter(|s| **s == 200).count();
    let _ = ibex.kill();
    let _ = ibex.wait();
    h.shop_faults(serde_json::json!({})).await;
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
    assert_eq!(served, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
}
