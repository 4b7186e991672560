//! The demo partner API: a small shop with orders and customers, an API key in a header, and switches
//! (`/_sim/...`) that make it fail or slow down so a middleware's error handling can be seen and tested.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
pub struct Faults {
    /// Answer this many of the next requests with `status` instead of serving them.
    #[serde(default)]
    pub fail_next: u32,
    #[serde(default = "default_fail_status")]
    pub status: u16,
    /// Delay every answer by this long.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer with text that is not JSON.
    #[serde(default)]
    pub garbage: bool,
    /// Answer (the failures of `fail_next` too) with a JSON string of this many bytes (0: off), for a client's
    /// answer-size limit.
    #[serde(default)]
    pub huge_bytes: usize,
}

fn default_fail_status() -> u16 {
    503
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

struct Shop {
    api_key: String,
    faults: Mutex<Faults>,
    seen: Mutex<VecDeque<SeenRequest>>,
    notes: Mutex<Vec<Value>>,
    /// Changes made by `PATCH /customers/{id}`, laid over the customers (seeded or generated) wherever they
    /// are listed.
    changes: Mutex<std::collections::HashMap<String, serde_json::Map<String, Value>>>,
    /// Customers deleted by a test (`POST /_sim/customers/delete`): gone from the list, which pages over the
    /// rest as a partner's list would.
    deleted: Mutex<std::collections::HashSet<String>>,
    /// Customers beyond the seeded ones, made up on demand from their number (none are kept in memory).
    generated: usize,
}

/// The default size of the customer list (`GET /customers`), for People sync.
pub const GENERATED_CUSTOMERS: usize = 10_000;

const FIRST_NAMES: &[&str] = &[
    "Ivana", "Luka", "Petra", "Marko", "Ana", "Nikola", "Maja", "Josip", "Lucija", "Tomislav",
];
const LAST_NAMES: &[&str] = &[
    "Horvat",
    "Kovačević",
    "Babić",
    "Marić",
    "Jurić",
    "Novak",
    "Knežević",
    "Vuković",
];
const TIERS: &[&str] = &["gold", "silver", "bronze", ""];

/// An email address's local part in plain ASCII: "Kovačević" → "kovacevic".
fn ascii(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| match c {
            'č' | 'ć' => 'c',
            'š' => 's',
            'ž' => 'z',
            'đ' => 'd',
            other => other,
        })
        .collect()
}

/// Generated customer `n` (from 0): a Croatian mobile number written nationally, and now and then a record
/// People would refuse (a phone number that is not one), so a sync's failure path is exercised.
fn generated_customer(n: usize) -> Value {
    let first = FIRST_NAMES[n % FIRST_NAMES.len()];
    let last = LAST_NAMES[(n / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let phone = if n % 97 == 13 {
        "n/a".to_owned()
    } else {
        format!(
            "09{} {:03} {:04}",
            [1, 2, 5, 8][n % 4],
            (n / 10_000) % 1000,
            n % 10_000
        )
    };
    let mut customer = json!({
        "id": format!("g-{n:06}"),
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{n}@example.com", ascii(first), ascii(last)),
        "phone": phone,
    });
    let tier = TIERS[n % TIERS.len()];
    if !tier.is_empty() {
        customer["tier"] = json!(tier);
    }
    customer
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const CUSTOMERS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "c-100",
        "Ana Horvat",
        "ana@example.com",
        "+385911234567",
        "gold",
    ),
    (
        "c-101",
        "Marko Kovač",
        "marko@example.com",
        "+385921112223",
        "silver",
    ),
    (
        "c-102",
        "Jane Doe",
        "jane@example.com",
        "+441632960961",
        "bronze",
    ),
];

// id, customer, status, amount in EUR, summary, placed on
type Order = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    &'static str,
    &'static str,
);
const ORDERS: &[Order] = &[
    (
        "1001",
        "c-100",
        "shipped",
        59.90,
        "2 × Trail running shoes",
        "2026-11-18",
    ),
    (
        "1002",
        "c-100",
        "processing",
        19.50,
        "1 × Merino socks (3 pack)",
        "2026-11-21",
    ),
    (
        "1003",
        "c-101",
        "delivered",
        120.00,
        "1 × Rain jacket",
        "2026-10-02",
    ),
    (
        "1004",
        "c-102",
        "cancelled",
        8.99,
        "1 × Water bottle",
        "2026-09-14",
    ),
    (
        "1005",
        "c-102",
        "processing",
        1240.00,
        "1 × GPS watch",
        "2026-11-24",
    ),
    (
        "1006",
        "c-100",
        "delivered",
        35.00,
        "1 × Headlamp",
        "2026-08-30",
    ),
];

fn rate(currency: &str) -> Option<f64> {
    match currency {
        "EUR" => Some(1.0),
        "USD" => Some(1.08),
        "GBP" => Some(0.86),
        _ => None,
    }
}

pub fn router(api_key: impl Into<String>) -> Router {
    router_with(api_key, GENERATED_CUSTOMERS)
}

/// The shop with `generated` made-up customers after the seeded ones.
pub fn router_with(api_key: impl Into<String>, generated: usize) -> Router {
    let shop = Arc::new(Shop {
        api_key: api_key.into(),
        faults: Mutex::new(Faults::default()),
        seen: Mutex::new(VecDeque::new()),
        notes: Mutex::new(Vec::new()),
        changes: Mutex::new(std::collections::HashMap::new()),
        deleted: Mutex::new(std::collections::HashSet::new()),
        generated,
    });
    let api = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/notes", post(add_note))
        .route("/customers/lookup", get(lookup_customer))
        .route("/customers", get(list_customers))
        .route("/customers/{id}", axum::routing::patch(update_customer))
        .route_layer(axum::middleware::from_fn_with_state(shop.clone(), gate));
    Router::new()
        .route("/_sim/faults", post(set_faults).get(get_faults))
        .route("/_sim/requests", get(seen_requests))
        .route("/_sim/customers/delete", post(delete_customers))
        .merge(api)
        .with_state(shop)
}

/// The shop, and with `webhook_secret` the partner's webhook receiver beside it (`webhooks`).
pub async fn serve(
    addr: SocketAddr,
    api_key: String,
    customers: usize,
    webhook_secret: Option<&str>,
) -> std::io::Result<()> {
    let mut router = router_with(api_key, customers);
    if let Some(secret) = webhook_secret {
        router = router.merge(crate::webhooks::router(secret).map_err(std::io::Error::other)?);
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("demo shop API on http://{}", listener.local_addr()?);
    if webhook_secret.is_some() {
        tracing::info!(
            "webhook receiver on http://{}/webhooks (GET /_sim/webhooks lists what arrived)",
            listener.local_addr()?
        );
    }
    axum::serve(listener, router).await
}

/// Records the request, applies the fault switches, then checks the API key, as a real API's edge would.
async fn gate(
    State(shop): State<Arc<Shop>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    {
        let mut seen = lock(&shop.seen);
        if seen.len() >= 200 {
            seen.pop_front();
        }
        seen.push_back(SeenRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let faults = {
        let mut faults = lock(&shop.faults);
        let snapshot = faults.clone();
        faults.fail_next = faults.fail_next.saturating_sub(1);
        snapshot
    };
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    let huge = |status: StatusCode| {
        let text = format!("\"{}\"", "x".repeat(faults.huge_bytes.saturating_sub(2)));
        (status, [("content-type", "application/json")], text).into_response()
    };
    if faults.fail_next > 0 {
        let status = StatusCode::from_u16(faults.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        if faults.huge_bytes > 0 {
            return huge(status);
        }
        return (status, Json(json!({"error": "simulated failure"}))).into_response();
    }
    if faults.garbage {
        return (StatusCode::OK, "<html>not json</html>").into_response();
    }
    if faults.huge_bytes > 0 {
        return huge(StatusCode::OK);
    }
    let key_ok =
        parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(shop.api_key.as_str());
    if !key_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or invalid X-Api-Key"})),
        )
            .into_response();
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

async fn set_faults(State(shop): State<Arc<Shop>>, Json(faults): Json<Faults>) -> Json<Faults> {
    *lock(&shop.faults) = faults.clone();
    Json(faults)
}

async fn get_faults(State(shop): State<Arc<Shop>>) -> Json<Faults> {
    Json(lock(&shop.faults).clone())
}

/// `{"ids": ["g-000007", …]}`: these customers are deleted from the list (People sync's deletes).
async fn delete_customers(State(shop): State<Arc<Shop>>, Json(body): Json<Value>) -> StatusCode {
    let ids = body["ids"].as_array().cloned().unwrap_or_default();
    lock(&shop.deleted).extend(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)));
    StatusCode::NO_CONTENT
}

async fn seen_requests(State(shop): State<Arc<Shop>>) -> Json<Vec<SeenRequest>> {
    Json(lock(&shop.seen).iter().cloned().collect())
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

#[derive(Deserialize)]
struct CurrencyQuery {
    currency: Option<String>,
}

fn customer_json(id: &str) -> Value {
    let Some((id, name, email, phone, tier)) = CUSTOMERS.iter().find(|c| c.0 == id) else {
        return Value::Null;
    };
    let open = ORDERS
        .iter()
        .filter(|o| o.1 == *id && matches!(o.2, "processing" | "shipped"))
        .count();
    json!({"id": id, "name": name, "email": email, "phone": phone, "tier": tier, "open_orders": open})
}

fn order_json(order: &Order, currency: &str, factor: f64) -> Value {
    let (id, customer, status, amount, summary, placed_on) = order;
    let mut value = json!({
        "id": id,
        "status": status,
        "summary": summary,
        "placed_on": placed_on,
        "total": {"amount": (amount * factor * 100.0).round() / 100.0, "currency": currency},
        "customer": customer_json(customer),
    });
    if *status == "shipped" {
        value["tracking_url"] = json!(format!("https://track.example.com/{id}"));
    }
    value
}

async fn order(Path(id): Path<String>, Query(q): Query<CurrencyQuery>) -> Response {
    let currency = q.currency.unwrap_or_else(|| "EUR".into());
    let Some(factor) = rate(&currency) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("unsupported currency {currency}")})),
        )
            .into_response();
    };
    match ORDERS.iter().find(|o| o.0 == id) {
        Some(order) => Json(order_json(order, &currency, factor)).into_response(),
        None => not_found(format!("order {id} not found")),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    customer_id: Option<String>,
    limit: Option<usize>,
    include_cancelled: Option<bool>,
}

async fn list_orders(Query(q): Query<ListQuery>) -> Json<Value> {
    let include_cancelled = q.include_cancelled.unwrap_or(false);
    let orders: Vec<Value> = ORDERS
        .iter()
        .rev()
        .filter(|o| q.customer_id.as_deref().is_none_or(|c| c == o.1))
        .filter(|o| include_cancelled || o.2 != "cancelled")
        .take(q.limit.unwrap_or(10))
        .map(|o| order_json(o, "EUR", 1.0))
        .collect();
    Json(json!({ "orders": orders }))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
    size: Option<usize>,
}

/// `GET /customers?page=1&size=100`: the seeded customers, then the generated ones, in a stable order.
async fn list_customers(State(shop): State<Arc<Shop>>, Query(q): Query<PageQuery>) -> Json<Value> {
    // Up to 1000, so a partner page can fill one People batch upsert (scripts/bench-sync.sh).
    let size = q.size.unwrap_or(100).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    let deleted = lock(&shop.deleted).clone();
    let all = CUSTOMERS.len() + shop.generated;
    let total = all - deleted.len().min(all);
    let start = (page - 1).saturating_mul(size);
    let customers: Vec<Value> = if deleted.is_empty() {
        (start..total.min(start.saturating_add(size)))
            .map(|i| shop.changed(customer_at(i)))
            .collect()
    } else {
        (0..all)
            .map(customer_at)
            .filter(|c| !deleted.contains(c["id"].as_str().unwrap_or_default()))
            .skip(start)
            .take(size)
            .map(|c| shop.changed(c))
            .collect()
    };
    Json(json!({ "customers": customers, "page": page, "size": size, "total": total }))
}

/// The i-th customer of the list, seeded ones first.
fn customer_at(i: usize) -> Value {
    match CUSTOMERS.get(i) {
        Some(c) => customer_json(c.0),
        None => generated_customer(i - CUSTOMERS.len()),
    }
}

impl Shop {
    /// The customer with the changes made to it laid over.
    fn changed(&self, mut customer: Value) -> Value {
        let id = customer["id"].as_str().unwrap_or_default().to_owned();
        if let (Some(changes), Some(fields)) = (
            self.changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id),
            customer.as_object_mut(),
        ) {
            fields.extend(changes.clone());
        }
        customer
    }

    fn customer_index(&self, id: &str) -> Option<usize> {
        if let Some(i) = CUSTOMERS.iter().position(|c| c.0 == id) {
            return Some(i);
        }
        let n: usize = id.strip_prefix("g-")?.parse().ok()?;
        (n < self.generated && id.len() == 8).then_some(CUSTOMERS.len() + n)
    }
}

/// `PATCH /customers/{id}` with any of `name`, `email`, `phone`, `tier` (strings): the customer as it is now.
async fn update_customer(
    State(shop): State<Arc<Shop>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(index) = shop.customer_index(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no customer {id}")})),
        )
            .into_response();
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "send a JSON object"})),
        )
            .into_response();
    };
    let mut accepted = serde_json::Map::new();
    for (key, value) in fields {
        if !matches!(key.as_str(), "name" | "email" | "phone" | "tier") || !value.is_string() {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({"error": format!("`{key}` cannot be changed here, or is not a string")}),
                ),
            )
                .into_response();
        }
        accepted.insert(key, value);
    }
    shop.changes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_default()
        .extend(accepted);
    Json(shop.changed(customer_at(index))).into_response()
}

async fn lookup_customer(headers: HeaderMap) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (email, phone) = (header("x-customer-email"), header("x-customer-phone"));
    if email.is_none() && phone.is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "send X-Customer-Email or X-Customer-Phone"})),
        )
            .into_response();
    }
    let found = CUSTOMERS.iter().find(|c| {
        email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(c.2))
            || phone.as_deref() == Some(c.3)
    });
    match found {
        Some(c) => Json(customer_json(c.0)).into_response(),
        None => not_found("no customer with that email or phone".into()),
    }
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
    author: Option<String>,
}

async fn add_note(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<String>,
    Json(note): Json<NewNote>,
) -> Response {
    if !ORDERS.iter().any(|o| o.0 == id) {
        return not_found(format!("order {id} not found"));
    }
    if note.text.trim().is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "text is empty"})),
        )
            .into_response();
    }
    let mut notes = lock(&shop.notes);
    let value = json!({
        "id": format!("n-{}", notes.len() + 1),
        "order_id": id,
        "text": note.text,
        "author": note.author.unwrap_or_else(|| "unknown".into()),
    });
    notes.push(value.clone());
    (StatusCode::CREATED, Json(value)).into_response()
}
