//! The real `ibex serve` binary, for the tests that need its listener, its process or its flags.

use super::{client, Harness, ACCOUNT, SECRET};
use ibex::signed::signature::{now_ms, signed_headers};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ibex serve`, killed when dropped: a failed assertion must not leave it serving.
pub struct Ibex(pub std::process::Child);

impl std::ops::Deref for Ibex {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Ibex {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Ibex {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `ibex serve` on a free port against the harness's database and shop, with `args` added, started with
/// a soft open-file limit of 256 (which ibex raises); returns the process, its base URL, its port and its
/// definition file.
pub async fn spawn_ibex(
    h: &Harness,
    args: &[&str],
    threads: &str,
) -> (Ibex, String, u16, std::path::PathBuf) {
    let definition =
        std::env::temp_dir().join(format!("ibex-stop-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&definition, super::test_definition()).unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let ibex = Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_ibex"),
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            "http://127.0.0.1:9",
            "--allow-loopback-partners",
            "--sync-worker",
            "false",
        ])
        .args(args)
        .env("IBEX_SERVE_THREADS", threads)
        .env("DATABASE_URL", &h.db.url)
        .env("IBEX_APP", &definition)
        .env("IBEX_SIGNING_SECRETS", SECRET)
        .env("IBEX_ENCRYPTION_KEY", &h.encryption_key)
        .env("IBEX_OAUTH_CLIENT_ID", "stop-test")
        .env("IBEX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Ibex)
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
    (ibex, base, port, definition)
}

/// A correctly signed call of the order-status function, as Infobip sends it.
pub fn signed_call(base: &str) -> reqwest::RequestBuilder {
    let mut request = client().get(format!("{base}/fn/order-status/1001"));
    for (name, value) in signed_headers(SECRET, ACCOUNT, now_ms(), b"") {
        request = request.header(name, value);
    }
    request
}
