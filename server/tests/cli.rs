//! The `ibex` binary as an operator uses it: configuration errors that name the variable, settings through the
//! CLI, manifests, and a served instance called with `ibex call`, whose logs must not contain any secret.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SIGNING: &str = "cli-test-signing-secret";
const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SHOP_KEY: &str = "cli-shop-key-123";

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ibex-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn ibex(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibex"));
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/ibex.db?mode=rwc", self.dir.display()),
            )
            .env("IBEX_SIGNING_SECRETS", SIGNING)
            .env("IBEX_ENCRYPTION_KEY", KEY)
            .env("IBEX_ALLOW_LOOPBACK_PARTNERS", "true");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.ibex().args(args).output().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ibex <command>` with one variable set (or removed, for `None`), checks that it refused to go on, and
/// returns what it printed on stderr.
fn refused(env: &Env, var: &str, value: Option<&std::ffi::OsStr>, command: &str) -> String {
    let mut ibex = env.ibex();
    match value {
        Some(value) => ibex.env(var, value),
        None => ibex.env_remove(var),
    };
    let out = ibex.arg(command).output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{var}={value:?} was accepted: {err}");
    err
}

#[test]
fn configuration_errors_name_the_variable() {
    let env = Env::new();
    // A page served without its frame-ancestors policy could be framed by anyone: refuse to start instead.
    let cases: [(&str, Option<&str>, &str, &str); 6] = [
        (
            "IBEX_SIGNING_SECRETS",
            Some("good, "),
            "serve",
            "IBEX_SIGNING_SECRETS holds an empty secret",
        ),
        (
            "IBEX_ENCRYPTION_KEY",
            None,
            "serve",
            "IBEX_ENCRYPTION_KEY is not set",
        ),
        (
            "IBEX_ENCRYPTION_KEY",
            Some("short"),
            "serve",
            "IBEX_ENCRYPTION_KEY",
        ),
        ("IBEX_ADDR", Some("not-an-address"), "serve", "IBEX_ADDR"),
        (
            "IBEX_FRAME_ANCESTORS",
            Some("https://portal.infobip.com\u{7f}"),
            "serve",
            "IBEX_FRAME_ANCESTORS",
        ),
        ("DATABASE_URL", Some("mysql://x"), "migrate", "DATABASE_URL"),
    ];
    for (var, value, command, expected) in cases {
        let err = refused(&env, var, value.map(std::ffi::OsStr::new), command);
        assert!(err.contains(expected), "{var}: {err}");
    }

    let broken = env.dir.join("broken.toml");
    let example =
        app::definition::BUNDLED_EXAMPLE.replace("pointer = \"/status\"", "pointer = \"status\"");
    std::fs::write(&broken, example).unwrap();
    let err = refused(&env, "IBEX_APP", Some(broken.as_os_str()), "serve");
    assert!(
        err.contains("function `order-status`, output `status`") && err.contains("IBEX_APP"),
        "{err}"
    );
}

#[test]
fn manifests_in_json_and_yaml() {
    let env = Env::new();
    let out = env.run(&[
        "manifest",
        "--product",
        "answers",
        "--public-url",
        "https://ibex.example.com",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        manifest["functions"][0]["uri"],
        "https://ibex.example.com/fn/order-status/{order_id}"
    );
    let out = env.run(&["manifest", "--product", "flow", "--format", "yaml"]);
    assert!(
        text(&out.stdout).contains("viewClass: SelectView"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn admins_through_the_cli() {
    let env = Env::new();
    let out = env.run(&["admins", "list", "ACC"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no admin listed"));
    let out = env.run(&["admins", "add", "ACC", "not a key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a user key"));
    let out = env.run(&["admins", "add", "ACC", "U-ANA-7F21"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("U-ANA-7F21 can now change the settings of account ACC"));
    let out = env.run(&["admins", "add", "ACC", "U-ANA-7F21"]);
    assert!(text(&out.stdout).contains("already is an admin"));
    let out = env.run(&["admins", "list", "ACC"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains("U-ANA-7F21") && listed.contains("added by cli:"),
        "{listed}"
    );
    // Another account's list is its own.
    let out = env.run(&["admins", "list", "OTHER"]);
    assert!(text(&out.stdout).contains("no admin listed"));
    // The operator may remove the last one: the account then falls back to IBEX_UNLISTED_ACCOUNTS.
    let out = env.run(&["admins", "remove", "ACC", "U-ANA-7F21"]);
    let said = text(&out.stdout);
    assert!(
        said.contains("no longer an admin") && said.contains("IBEX_UNLISTED_ACCOUNTS"),
        "{said}"
    );
}

#[test]
fn settings_through_the_cli() {
    let env = Env::new();
    let out = env.run(&["settings", "set", "ACC", "currency=XXX", "max_orders=0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("currency: must be one of") && err.contains("max_orders: must be at least 1"),
        "{err}"
    );
    assert!(err.contains("api_key: is required"), "{err}");
    // Outside --dev the example's loopback URL is no default: a customer must name their own.
    assert!(err.contains("api_base_url: is required"), "{err}");

    let out = env.run(&["settings", "show", "ACC"]);
    assert!(!out.status.success(), "nothing was saved");

    let out = env.run(&[
        "settings",
        "set",
        "ACC",
        &format!("api_key={SHOP_KEY}"),
        "api_base_url=https://shop.example",
        "currency=USD",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(&["settings", "show", "ACC"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("\"currency\": \"USD\"") && shown.contains("(set)"),
        "{shown}"
    );
    assert!(!shown.contains(SHOP_KEY), "secret must be masked: {shown}");

    // Links for signed-call keys that differ from the configuration page's: only to a key with settings.
    let out = env.run(&["settings", "link", "SIGNED-ACC", "ACC"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("now use the settings of ACC"));
    let out = env.run(&["settings", "link", "SIGNED-X", "NOBODY"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has no settings"));
    let out = env.run(&["settings", "unlink", "SIGNED-ACC"]);
    assert!(
        text(&out.stdout).contains("no longer linked"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn served_instance_called_with_ibex_call_logs_no_secret() {
    let env = Env::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shop_listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
        .unwrap();
    let shop_port = shop_listener.local_addr().unwrap().port();
    runtime
        .spawn(async move { axum::serve(shop_listener, ibex_sim::shop::router(SHOP_KEY)).await });

    let shop_url = format!("api_base_url=http://127.0.0.1:{shop_port}");
    let out = env.run(&[
        "settings",
        "set",
        "ACC",
        &format!("api_key={SHOP_KEY}"),
        &shop_url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = env
        .ibex()
        .args(["serve", "--addr", &addr])
        .env("IBEX_LOG", "info,ibex::calls=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ibex did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://{addr}");
    let out = env.run(&[
        "call",
        "order-status",
        "order_id=1001",
        "--account",
        "ACC",
        "--url",
        &url,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("200 OK") && stdout.contains("\"status\": \"shipped\""),
        "{stdout}"
    );

    let out = env.run(&[
        "call",
        "order-status",
        "order_id=1001",
        "--account",
        "NOBODY",
        "--url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("account_not_configured"),
        "{}",
        text(&out.stdout)
    );

    let out = env.run(&[
        "call",
        "customer-lookup",
        "email=nobody@example.com",
        "--account",
        "ACC",
        "--url",
        &url,
    ]);
    assert!(
        text(&out.stdout).contains("partner_client_error"),
        "{}",
        text(&out.stdout)
    );

    // SIGTERM: a graceful stop, which also flushes the queued log lines.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    // The refused call's one log line: JSON, with its request id, path, status and error code.
    let refused = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["code"] == "partner_client_error")
        .unwrap_or_else(|| panic!("no JSON log line for the refused call: {logs}"));
    assert_eq!(
        refused["request_id"].as_str().map(str::len),
        Some(36),
        "{refused}"
    );
    assert_eq!(refused["path"], "/fn/customer-lookup", "{refused}");
    assert_eq!(refused["status"], 502, "{refused}");
    // With `ibex::calls=debug`, the successful call has its line too.
    assert!(
        logs.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .any(|line| line["message"] == "function call"
                && line["path"] == "/fn/order-status/1001"
                && line["status"] == 200),
        "no debug line for the successful call: {logs}"
    );
    for secret in [
        SIGNING,
        SHOP_KEY,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs: {logs}");
    }

    // The calls were written when the server stopped (its last flush, well within the 10 s interval), and
    // `ibex activity` shows them: the account's own calls, its failure with the partner's status, and nobody
    // else's (NOBODY was never configured, so its call named an account that proves nothing beyond the key).
    let out = env.run(&["activity", "ACC", "--period", "hour"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("2 calls, 1 failed"), "{said}");
    assert!(
        said.contains("order-status") && said.contains("customer-lookup"),
        "{said}"
    );
    assert!(
        said.contains("partner_client_error (404)") || said.contains("partner_client_error ("),
        "{said}"
    );
    assert!(
        !said.contains(SHOP_KEY) && !said.contains(SIGNING),
        "{said}"
    );
    let out = env.run(&["activity", "OTHER", "--period", "week"]);
    assert!(
        text(&out.stdout).contains("0 calls, 0 failed"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(&["activity", "ACC", "--period", "year"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `ibex settings import`: each good line saved (secrets sealed like any save), each bad one named by its number
/// with the reason, and the exit code says some were refused.
#[test]
fn settings_import_saves_good_lines_and_names_bad_ones() {
    let env = Env::new();
    let file = env.dir.join("accounts.jsonl");
    let mut lines: Vec<Vec<u8>> = [
        r#"{"account_key": "IMP-1", "settings": {"api_key": "imported-key-1", "api_base_url": "https://shop.example", "note_author": "One"}}"#,
        "",
        r#"{"account_key": "IMP-2", "settings": {"api_key": "imported-key-2"}"#,
        r#"{"account_key": "IMP-3", "settings": {"api_key": "k3", "api_base_url": "https://shop.example", "currency": "XYZ"}}"#,
        r#"{"account_key": "IMP-4", "settings": {"api_key": "imported-key-4", "api_base_url": "https://shop.example"}}"#,
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect();
    // Line 6 is not UTF-8 (a Latin-1 export, say): refused on its own, and the lines after it still count.
    lines.push(
        [
            br#"{"account_key": "IMP-5", "settings": {"note_author": "Jos"#.as_slice(),
            &[0xe9],
            br#""}}"#,
        ]
        .concat(),
    );
    lines.push(br#"{"account_key": "IMP-6", "settings": {"api_key": "imported-key-6", "api_base_url": "https://shop.example", "note_author": "First"}}"#.to_vec());
    // The same account again, at once: saved after line 7, never beside it.
    lines.push(br#"{"account_key": "IMP-6", "settings": {"note_author": "Second"}}"#.to_vec());
    std::fs::write(&file, lines.join(&b'\n')).unwrap();
    let out = env.run(&["settings", "import", file.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("saved 4 lines, 3 lines refused"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("line 3: "), "{stderr}");
    assert!(stderr.contains("line 4: currency: "), "{stderr}");
    assert!(stderr.contains("line 6: not UTF-8"), "{stderr}");
    let shown = env.run(&["settings", "show", "IMP-6"]);
    assert!(
        text(&shown.stdout).contains("Second"),
        "{}",
        text(&shown.stdout)
    );
    for (account, saved) in [
        ("IMP-1", true),
        ("IMP-2", false),
        ("IMP-3", false),
        ("IMP-4", true),
        ("IMP-6", true),
    ] {
        let shown = env.run(&["settings", "show", account]);
        let shown = text(&shown.stdout) + &text(&shown.stderr);
        assert_eq!(shown.contains("api_key"), saved, "{account}: {shown}");
        assert!(!shown.contains("imported-key"), "a secret shown: {shown}");
    }
}
