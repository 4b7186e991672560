//! Graceful shutdown of the real binary: SIGTERM to a running `ibex serve` closes its listener at once (new
//! connections are refused), lets the signed call in flight finish with its answer, and the process exits 0
//! well within the grace period.

mod common;

use common::{client, Backend, Harness, ACCOUNT, SECRET};
use ibex::signed::signature::{now_ms, signed_headers};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_in_flight_and_refuses_the_rest() {
    let h = Harness::start(Backend::Sqlite).await;
    let definition =
        std::env::temp_dir().join(format!("ibex-stop-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&definition, common::test_definition()).unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let mut ibex = Command::new(env!("CARGO_BIN_EXE_ibex"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            "http://127.0.0.1:9",
            "--allow-loopback-partners",
            "--shutdown-grace-secs",
            "10",
            "--sync-worker",
            "false",
        ])
        .env("DATABASE_URL", &h.db.url)
        .env("IBEX_APP", &definition)
        .env("IBEX_SIGNING_SECRETS", SECRET)
        .env("IBEX_ENCRYPTION_KEY", &h.encryption_key)
        .env("IBEX_OAUTH_CLIENT_ID", "stop-test")
        .env("IBEX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ibex starts");
    let started = Instant::now();
    while client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ibex did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A signed call whose partner takes 1.5 s, then SIGTERM while it is in flight.
    h.shop_faults(serde_json::json!({"delay_ms": 1500})).await;
    let mut request = client().get(format!("{base}/fn/order-status/1001"));
    for (name, value) in signed_headers(SECRET, ACCOUNT, now_ms(), b"") {
        request = request.header(name, value);
    }
    let in_flight = tokio::spawn(request.send());
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
    assert!(exited.success(), "{exited:?}");
    let _ = std::fs::remove_file(&definition);
    h.finish().await;
}
