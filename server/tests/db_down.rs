//! The settings database going away and coming back, on PostgreSQL (several instances share one there; a
//! SQLite file does not go down on its own). ibex reaches the database through a TCP proxy the test can cut:
//! connections then are refused, as when PostgreSQL is stopped. Signed calls that need the database answer
//! 503 JSON within the pool's 2 s (under the function's 5 s deadline), and at once while it stays down;
//! `/readyz` says 503; once the database is back both recover without a restart.

mod common;

use common::{Backend, Harness};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A TCP proxy to the test PostgreSQL that can be cut (listener closed, connections dropped) and restored on
/// the same port.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let piped = tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tasks.lock().unwrap().push(piped);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

fn for_account(account: &'static str) -> impl FnOnce(&mut reqwest::header::HeaderMap) {
    move |headers| {
        headers.insert(
            "x-ib-exchange-req-accountkey",
            reqwest::header::HeaderValue::from_static(account),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_answers_503_at_once_and_recovers() {
    let proxy = Proxy::start().await;
    let port = proxy.port;
    let h = Harness::start_through(
        Backend::Postgres,
        &["--allow-loopback-partners"],
        0,
        move |url| url.replace("127.0.0.1:5432", &format!("127.0.0.1:{port}")),
    )
    .await;
    h.configure(
        "ACCT-B",
        &[("api_base_url", &h.shop), ("api_key", common::SHOP_KEY)],
    )
    .await;
    let call = |account: &'static str| {
        h.send(
            reqwest::Method::GET,
            "/fn/order-status/1001",
            b"",
            b"",
            for_account(account),
        )
    };
    assert_eq!(call(common::ACCOUNT).await.0, 200);
    assert_eq!(h.get("/readyz").await.0, 200);

    proxy.cut();
    // A call that needs the database (ACCT-B is not cached yet): a 503 with Exchange's JSON error, within the
    // pool's 2 s; then at once while the database stays down.
    let started = Instant::now();
    let (status, body) = call("ACCT-B").await;
    let first = started.elapsed();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("settings_unavailable")),
        "{body}"
    );
    assert!(first < Duration::from_millis(3_000), "{first:?}");
    let started = Instant::now();
    let (status, _) = call("ACCT-B").await;
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // An account already in the cache is still served: its settings were read before the outage.
    assert_eq!(call(common::ACCOUNT).await.0, 200);
    let (status, _) = h.get("/readyz").await;
    assert_eq!(status, 503);

    // Back: both recover without a restart.
    proxy.restore().await;
    let started = Instant::now();
    loop {
        let (status, body) = call("ACCT-B").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(h.get("/readyz").await.0, 200);
    h.finish().await;
}
