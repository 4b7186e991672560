//! Test harness: a real ibex and a real demo shop on loopback ports, and a settings database of its own per test
//! (a temporary SQLite file, or a fresh PostgreSQL database that is dropped afterwards).

#![allow(dead_code)]

use app::definition::BUNDLED_EXAMPLE;
use app::settings::crypto::KeyRing;
use clap::Parser;
use ibex::cli::config::Cli;
use ibex::signed::signature::{now_ms, signed_headers};
use ibex::state::AppState;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sqlx::Connection;
use std::collections::BTreeMap;

pub const SECRET: &str = "primary-signing-secret";
pub const SECOND_SECRET: &str = "rotated-signing-secret";
pub const SHOP_KEY: &str = "shop-test-key";
pub const ACCOUNT: &str = "ACCT-1";
pub const METRICS_TOKEN: &str = "metrics-test-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub url: String,
    backend: Backend,
    name: String,
}

pub fn postgres_admin_url() -> String {
    std::env::var("IBEX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let name = format!("ibex_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    backend,
                    name: path.display().to_string(),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} is needed for these tests: {e}")
                    });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
                TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    name,
                }
            }
        }
    }

    pub async fn drop_db(&self) {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                    .await
                    .unwrap();
                sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
    }
}

pub struct Harness {
    pub ibex: String,
    pub shop: String,
    /// The simulated Exchange portal and OAuth server, registered with ibex's callback.
    pub portal: String,
    pub state: AppState,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub encryption_key: String,
    /// The command line ibex was started with: a second instance on the same database starts from it.
    pub args: Vec<String>,
}

async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, router)
}

fn serve_on(listener: tokio::net::TcpListener, router: impl ibex::routes::HttpService) -> String {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::ServiceExt::into_make_service(router))
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

/// The bundled example plus a function whose output the shop never sends, for the "missing output" case.
pub fn test_definition() -> String {
    format!(
        "{BUNDLED_EXAMPLE}\n
[[functions]]
name = \"order-promise\"
products = [\"answers\"]
method = \"GET\"
[[functions.inputs]]
name = \"order_id\"
required = true
in = \"path\"
[functions.request]
method = \"GET\"
path = \"/orders/{{{{inputs.order_id}}}}\"
[[functions.outputs]]
name = \"promised_date\"
pointer = \"/promised_date\"
"
    )
}

impl Harness {
    pub async fn start(backend: Backend) -> Self {
        // The demo shop listens on loopback, which partner calls may not reach otherwise.
        Self::start_with(backend, &["--allow-loopback-partners"]).await
    }

    /// A harness whose ibex gets `extra` command-line options.
    pub async fn start_with(backend: Backend, extra: &[&str]) -> Self {
        Self::start_with_shop(backend, extra, ibex_sim::shop::GENERATED_CUSTOMERS).await
    }

    /// A harness whose demo shop lists `customers` made-up customers after the seeded three.
    pub async fn start_with_shop(backend: Backend, extra: &[&str], customers: usize) -> Self {
        Self::start_through(backend, extra, customers, |url| url.to_owned()).await
    }

    /// A harness whose ibex reaches its database at the address `route` makes of the test database's URL
    /// (through a proxy a test can cut, say); the test itself still reaches it directly.
    pub async fn start_through(
        backend: Backend,
        extra: &[&str],
        customers: usize,
        route: impl Fn(&str) -> String,
    ) -> Self {
        Self::start_defined(backend, extra, customers, route, &test_definition()).await
    }

    /// A harness serving `definition` (the app definition's TOML) instead of the test definition.
    pub async fn start_defined(
        backend: Backend,
        extra: &[&str],
        customers: usize,
        route: impl Fn(&str) -> String,
        definition: &str,
    ) -> Self {
        let db = TestDb::new(backend).await;
        let ibex_db_url = route(&db.url);
        let shop = spawn(ibex_sim::shop::router_with(SHOP_KEY, customers)).await;
        let definition_path =
            std::env::temp_dir().join(format!("ibex-def-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&definition_path, definition).unwrap();
        let encryption_key = KeyRing::generate_spec("test1");
        let ibex_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ibex_url = format!("http://{}", ibex_listener.local_addr().unwrap());
        let portal_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let portal = serve_on(
            portal_listener,
            ibex_sim::exchange::router(ibex_sim::exchange::AppListing {
                name: "Order desk".into(),
                client_id: "ibex-test-client".into(),
                client_secret: None,
                redirect_uris: vec![format!("{ibex_url}/oauth/callback")],
                settings_url: format!("{ibex_url}/settings"),
                card_url: format!("{ibex_url}/card"),
            }),
        );
        let mut args: Vec<String> = [
            "ibex",
            "--database-url",
            &ibex_db_url,
            "--app",
            &definition_path.display().to_string(),
            "--signing-secrets",
            &format!("{SECRET}, {SECOND_SECRET}"),
            "--encryption-key",
            &encryption_key,
            "--addr",
            "127.0.0.1:0",
            "--max-body-bytes",
            "65536",
            "--public-url",
            &ibex_url,
            "--oauth-authorize-url",
            &format!("{portal}/exchange/1/oauth/authorize"),
            "--oauth-token-url",
            &format!("{portal}/exchange/1/oauth/token"),
            "--oauth-client-id",
            "ibex-test-client",
            "--frame-ancestors",
            &portal,
            "--infobip-api-url",
            &portal,
            "--metrics-token",
            METRICS_TOKEN,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let cli = Cli::try_parse_from(args.clone()).unwrap();
        let state = AppState::build(&cli.options).await.unwrap();
        let ibex = serve_on(ibex_listener, ibex::routes::router(state.clone()));
        let harness = Harness {
            ibex,
            shop,
            portal,
            state,
            db,
            client: reqwest::Client::new(),
            encryption_key,
            args,
        };
        harness
            .configure(
                ACCOUNT,
                &[
                    ("api_base_url", &harness.shop.clone()),
                    ("api_key", SHOP_KEY),
                ],
            )
            .await;
        harness
    }

    pub async fn configure(&self, account: &str, pairs: &[(&str, &str)]) {
        let changes: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.state
            .settings
            .update(account, None, &changes, "test")
            .await
            .unwrap();
    }

    pub async fn finish(self) {
        self.state.settings.store().close().await;
        self.db.drop_db().await;
    }

    /// Sends a request signed as Infobip would, after letting `tamper` change the headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        signed_body: &[u8],
        sent_body: &[u8],
        tamper: impl FnOnce(&mut HeaderMap),
    ) -> (u16, Value) {
        let mut headers = HeaderMap::new();
        for (name, value) in signed_headers(SECRET, ACCOUNT, now_ms(), signed_body) {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&value).unwrap(),
            );
        }
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        tamper(&mut headers);
        let response = self
            .client
            .request(method, format!("{}{path}", self.ibex))
            .headers(headers)
            .body(sent_body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: no answer (did ibex panic?): {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// A signed request with an empty body to `base` (another listener in front of this ibex); owns what it
    /// needs, so it can be spawned.
    #[allow(dead_code)]
    pub fn send_to(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
    ) -> impl std::future::Future<Output = (u16, Value)> + Send + 'static {
        let mut request = self.client.request(method, format!("{base}{path}"));
        for (name, value) in signed_headers(SECRET, ACCOUNT, now_ms(), b"") {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.expect("no answer");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, b"", b"", |_| {})
            .await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            body.as_bytes(),
            body.as_bytes(),
            |_| {},
        )
        .await
    }

    pub async fn shop_faults(&self, faults: Value) {
        let response = self
            .client
            .post(format!("{}/_sim/faults", self.shop))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Every token the simulated portal issued (`GET /_sim/oauth/issued`).
    pub async fn issued_tokens(&self) -> Vec<String> {
        self.sim_json(&format!("{}/_sim/oauth/issued", self.portal))
            .await
    }

    pub async fn shop_requests(&self) -> Vec<Value> {
        self.sim_json(&format!("{}/_sim/requests", self.shop)).await
    }

    /// What one of the simulator's inspection endpoints records.
    async fn sim_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> T {
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows redirects by hand, sending the portal's sign-in cookie to the portal only (as a browser would).
pub async fn follow(
    h: &Harness,
    start: &str,
    portal_user: Option<&str>,
) -> (reqwest::Response, Vec<String>) {
    follow_as(h, start, portal_user, PortalCookie::Sent).await
}

/// Follows redirects as a browser that blocks third-party cookies in the app's frame: the portal's cookie is not
/// sent to the authorize endpoint the framed app redirects to (it still is to the portal's own pages).
pub async fn follow_withholding_cookie(
    h: &Harness,
    start: &str,
    portal_user: Option<&str>,
) -> (reqwest::Response, Vec<String>) {
    follow_as(h, start, portal_user, PortalCookie::WithheldFromAuthorize).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PortalCookie {
    Sent,
    WithheldFromAuthorize,
}

pub async fn follow_as(
    h: &Harness,
    start: &str,
    portal_user: Option<&str>,
    cookie: PortalCookie,
) -> (reqwest::Response, Vec<String>) {
    let http = client();
    let mut url = start.to_owned();
    let mut trail = Vec::new();
    let authorize = format!("{}/exchange/1/oauth/authorize", h.portal);
    // Browsers follow up to 20 redirects.
    for _ in 0..20 {
        trail.push(url.clone());
        // A browser navigating Infobip's frame says so; ibex refuses its embedded pages to a request that does not.
        let mut request = http.get(&url).header("sec-fetch-dest", "iframe");
        let withheld = cookie == PortalCookie::WithheldFromAuthorize && url.starts_with(&authorize);
        if let (Some(user), true, false) = (portal_user, url.starts_with(&h.portal), withheld) {
            request = request.header("cookie", format!("sim_portal_user={user}"));
        }
        let response = request.send().await.unwrap();
        if !response.status().is_redirection() {
            return (response, trail);
        }
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        url = if location.starts_with('/') {
            format!("{}{location}", h.ibex)
        } else {
            location
        };
    }
    panic!("redirect loop: {trail:#?}");
}

/// The address the simulated portal frames the app at on `page` (`/conversations` for the card,
/// `/exchange/my-apps/configure` for the configuration page) for `user`: Infobip's launch, `state` included.
pub async fn portal_launch(h: &Harness, page: &str, user: &str) -> String {
    let html = client()
        .get(format!("{}{page}", h.portal))
        .header("cookie", format!("sim_portal_user={user}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frame = &html[html.find("<iframe").expect("the portal frames the app")..];
    let start = frame.find("src=\"").unwrap() + 5;
    frame[start..start + frame[start..].find('"').unwrap()].replace("&amp;", "&")
}

/// Runs a test body once per settings backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            // A test that hangs fails with its name after two minutes instead of holding the whole run.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                tokio::time::timeout(
                    std::time::Duration::from_secs(120),
                    ($body)(common::Backend::Sqlite),
                )
                .await
                .expect("the test did not finish within 120 s")
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                tokio::time::timeout(
                    std::time::Duration::from_secs(120),
                    ($body)(common::Backend::Postgres),
                )
                .await
                .expect("the test did not finish within 120 s")
            }
        }
    };
}

/// What the simulated People API holds, and its counters (`GET /_sim/people` on the portal).
pub async fn people_state(h: &Harness) -> Value {
    client()
        .get(format!("{}/_sim/people", h.portal))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub mod binary;

/// The value of query parameter `name` in `url`.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs in to the configuration page through the portal's launch, as `user` (a user key, as the portal names
/// its users): the page's session token.
pub async fn configuration_session(h: &Harness, user: &str) -> String {
    let launch = portal_launch(h, "/exchange/my-apps/configure", user).await;
    let (page, trail) = follow(h, &launch, Some(user)).await;
    assert_eq!(page.status(), 200, "{trail:#?}");
    param(trail.last().unwrap(), "session").expect("a session in the page's address")
}

/// Calls a server function with a form body: its status and JSON answer.
pub async fn server_fn(h: &Harness, function: &str, form: &[(&str, &str)]) -> (u16, Value) {
    answer_of(
        client()
            .post(format!("{}/api/{function}", h.ibex))
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Calls a server function with a JSON body: its status and JSON answer.
pub async fn server_fn_json(h: &Harness, function: &str, body: &Value) -> (u16, Value) {
    answer_of(
        client()
            .post(format!("{}/api/{function}", h.ibex))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A response's status and its body as JSON (or as a JSON string when it is not JSON).
pub async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
