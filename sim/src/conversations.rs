//! Infobip's Conversations API, as far as ibex uses it: `GET /ccaas/1/conversations/{conversationId}/messages`,
//! held to Infobip's published OpenAPI (Conversations, version 3.210.0; the operation is in
//! `infobip-openapi/conversations-messages-subset.json` of the reference material). What the document says, the
//! simulator does: the query is validated (an undocumented parameter, a value outside an enum, a `limit` outside
//! 1..=999, a negative `page` are a 400 in the documented `requestError.serviceException` shape), `limit`
//! defaults to 10 and `page` starts at 0, `orderBy` defaults to `id:asc`, `direction` and `channel` filter, the
//! answer is a `MessageResultPage` with its `pagination`, and the documented throttling (500 requests a minute)
//! is applied per account, answered with 429 and `Retry-After`.
//!
//! Whose a credential is, and the test switches that bend the answers, belong to the rest of the simulated
//! Infobip (its OAuth server in `exchange.rs`): it lends them through [`Accounts`].

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// A seeded conversation of the Conversations workspace: whose it is and who wrote in.
pub struct SimConversation {
    pub id: &'static str,
    pub account_key: &'static str,
    pub channel: &'static str,
    /// The end user's `from` on their first inbound message: a phone number or address on most channels, an
    /// opaque id on LIVE_CHAT, FACEBOOK_MESSENGER, TWITTER_DM and INTERNAL.
    pub from: &'static str,
    pub sender_name: &'static str,
    pub text: &'static str,
    /// Outbound messages sent before the end user first wrote (a welcome, or a campaign's messages).
    pub outbound_first: usize,
}

const ACME: &str = "8F3A2C51D0B94E17A6C2F0D9E4B7A113";
const GLOBEX: &str = "2B7E91C4A85F4D3EB0196C7D2E8F5A40";
const INITECH: &str = "6D1E0F2A3B4C5D6E7F8091A2B3C4D5E6";

/// End users of the demo shop (one by phone, one by email) and one the shop does not know, per account; then
/// two that a careless reader gets wrong: a campaign that sent 12 messages before the customer answered (more
/// than the API's default page of 10), and a live chat, whose `from` is the widget's visitor id.
pub const CONVERSATIONS: &[SimConversation] = &[
    SimConversation {
        id: "4b7c1e52-acme-0001",
        account_key: ACME,
        channel: "WHATSAPP",
        from: "+385911234567",
        sender_name: "Ana Horvat",
        text: "Hi, where is my order 1001?",
        outbound_first: 1,
    },
    SimConversation {
        id: "4b7c1e52-acme-0002",
        account_key: ACME,
        channel: "EMAIL",
        from: "marko@example.com",
        sender_name: "Marko Kovač",
        text: "Can I change the delivery address?",
        outbound_first: 1,
    },
    SimConversation {
        id: "4b7c1e52-acme-0003",
        account_key: ACME,
        channel: "SMS",
        from: "+15550100999",
        sender_name: "",
        text: "hello?",
        outbound_first: 1,
    },
    SimConversation {
        id: "9d2e6f10-globex-0001",
        account_key: GLOBEX,
        channel: "WHATSAPP",
        from: "+441632960961",
        sender_name: "Jane Doe",
        text: "I need to rebook my trip.",
        outbound_first: 1,
    },
    SimConversation {
        id: "7a3b9c04-initech-0001",
        account_key: INITECH,
        channel: "WHATSAPP",
        from: "+385911234567",
        sender_name: "Ana Horvat",
        text: "My headlamp does not turn on.",
        outbound_first: 1,
    },
    SimConversation {
        id: "7a3b9c04-initech-0002",
        account_key: INITECH,
        channel: "EMAIL",
        from: "marko@example.com",
        sender_name: "Marko Kovač",
        text: "Is the rain jacket waterproof?",
        outbound_first: 1,
    },
    SimConversation {
        id: "7a3b9c04-initech-0003",
        account_key: INITECH,
        channel: "SMS",
        from: "+385915550123",
        sender_name: "",
        text: "Do you ship to Split?",
        outbound_first: 1,
    },
    SimConversation {
        id: "7a3b9c04-initech-0004",
        account_key: INITECH,
        channel: "SMS",
        from: "+441632960961",
        sender_name: "Jane Doe",
        text: "Enough offers, but where is my order?",
        outbound_first: 12,
    },
    SimConversation {
        id: "7a3b9c04-initech-0005",
        account_key: INITECH,
        channel: "LIVE_CHAT",
        from: "5f1c9a7e-2d4b-4e8a-9c31-7b0e6d2a4f18",
        sender_name: "Website visitor",
        text: "Do you have the headlamp in red?",
        outbound_first: 1,
    },
];

/// What the Conversations API needs of the rest of the simulated Infobip.
pub trait Accounts: Send + Sync + 'static {
    /// Whose `credential` is, given with `scheme` (the word before it in `Authorization`).
    fn account_of(&self, scheme: &str, credential: &str) -> Credential;
    /// The test switches that bend the messages answers (`/_sim/oauth`).
    fn faults(&self) -> Faults;
}

pub enum Credential {
    Account(&'static str),
    Expired,
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer with this status instead (403, 429, 500…).
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with a forced 429.
    pub retry_after_secs: Option<u64>,
    pub delay_ms: u64,
}

/// The documented throttling of the operation (`x-throttling-info`: 500 requests, time unit minute).
pub const DOCUMENTED_REQUESTS_PER_MINUTE: usize = 500;
const WINDOW: Duration = Duration::from_secs(60);

/// `/_sim/conversations`: the throttling applied, for a benchmark that must measure the card rather than the
/// 429 state (a real Infobip has no such switch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Throttling {
    pub requests_per_minute: usize,
}

struct Api {
    accounts: Arc<dyn Accounts>,
    per_minute: Mutex<usize>,
    /// Per account, when its calls of the last minute were made, oldest first.
    calls: Mutex<HashMap<&'static str, VecDeque<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router(accounts: Arc<dyn Accounts>) -> Router {
    let api = Arc::new(Api {
        accounts,
        per_minute: Mutex::new(DOCUMENTED_REQUESTS_PER_MINUTE),
        calls: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(
            "/ccaas/1/conversations/{conversation_id}/messages",
            get(messages),
        )
        .route(
            "/_sim/conversations",
            get(get_throttling).post(set_throttling),
        )
        .with_state(api)
}

async fn get_throttling(State(api): State<Arc<Api>>) -> Json<Throttling> {
    Json(Throttling {
        requests_per_minute: *lock(&api.per_minute),
    })
}

async fn set_throttling(
    State(api): State<Arc<Api>>,
    Json(t): Json<Throttling>,
) -> Json<Throttling> {
    *lock(&api.per_minute) = t.requests_per_minute;
    lock(&api.calls).clear();
    Json(t)
}

/// Infobip's error shape (`ApiException`), as the operation's examples show it for 400 too.
fn infobip_error(status: StatusCode, id: &str, text: &str) -> Response {
    (
        status,
        Json(json!({"requestError": {"serviceException": {"messageId": id, "text": text}}})),
    )
        .into_response()
}

/// A query the document does not allow: which parameter, and why.
struct Refusal {
    parameter: String,
    problem: String,
}

fn bad_request(parameter: &str, problem: String) -> Refusal {
    Refusal {
        parameter: parameter.to_owned(),
        problem,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"requestError": {"serviceException": {
                "messageId": "BAD_REQUEST",
                "text": format!("Bad request: {}", self.problem),
                "validationErrors": {self.parameter: [self.problem]},
            }}})),
        )
            .into_response()
    }
}

/// The `channel` query parameter's enum (narrower than the channels messages carry: no INTERNAL, TWITTER_DM).
const CHANNELS: &[&str] = &[
    "SMS",
    "VIBER",
    "FACEBOOK_MESSENGER",
    "WHATSAPP",
    "RCS",
    "LIVE_CHAT",
    "LINE",
    "TELEGRAM",
    "INSTAGRAM_MESSAGING",
    "KAKAO_SANGDAM",
    "VIBER_BOT",
    "APPLE_BUSINESS_CHAT",
    "EMAIL",
];
const DIRECTIONS: &[&str] = &["INBOUND", "OUTBOUND"];
const PARAMETERS: &[&str] = &[
    "messageIds",
    "channel",
    "direction",
    "createdAfter",
    "createdBefore",
    "limit",
    "page",
    "orderBy",
];
/// Fields a page may be ordered by: the message's properties that have an order.
const ORDER_FIELDS: &[&str] = &["id", "createdAt", "updatedAt"];
const MAX_LIMIT: i64 = 999;
const DEFAULT_LIMIT: i64 = 10;

/// The documented date-time format (`yyyy-MM-dd'T'HH:mm:ss.SSS+0000`).
const STAMP: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
);

/// The query as the document defines it.
struct Filter {
    message_ids: Vec<String>,
    channel: Option<String>,
    direction: Option<String>,
    created_after: Option<OffsetDateTime>,
    created_before: Option<OffsetDateTime>,
    limit: i64,
    page: i64,
    order_field: &'static str,
    descending: bool,
}

fn parse_query(raw: &str) -> Result<Filter, Refusal> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !PARAMETERS.contains(&name.as_ref()) {
            return Err(bad_request(
                &name,
                format!(
                    "`{name}` is not a parameter of this operation; it takes {}",
                    PARAMETERS.join(", ")
                ),
            ));
        }
        seen.entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    let one = |name: &str| -> Result<Option<String>, Refusal> {
        match seen.get(name).map(Vec::as_slice) {
            None => Ok(None),
            Some([value]) => Ok(Some(value.clone())),
            Some(_) => Err(bad_request(
                name,
                format!("`{name}` is given more than once"),
            )),
        }
    };
    let enumerated = |name: &str, allowed: &[&str]| -> Result<Option<String>, Refusal> {
        match one(name)? {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
            Some(v) => Err(bad_request(
                name,
                format!("`{v}` is not one of {}", allowed.join(", ")),
            )),
        }
    };
    let integer = |name: &str, default: i64| -> Result<i64, Refusal> {
        match one(name)? {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .map_err(|_| bad_request(name, format!("`{v}` is not an integer"))),
        }
    };
    let date = |name: &str| -> Result<Option<OffsetDateTime>, Refusal> {
        match one(name)? {
            None => Ok(None),
            Some(v) => OffsetDateTime::parse(&v, STAMP)
                .or_else(|_| {
                    OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
                })
                .map(Some)
                .map_err(|_| {
                    bad_request(
                        name,
                        format!("`{v}` is not a date-time such as 2026-11-26T09:00:00.000+0000"),
                    )
                }),
        }
    };
    let limit = integer("limit", DEFAULT_LIMIT)?;
    if limit < 0 {
        // The document's own example of this refusal.
        return Err(bad_request(
            "limit",
            "Page size has to be bigger or equal to zero!".into(),
        ));
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_request(
            "limit",
            format!("`limit` must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let page = integer("page", 0)?;
    if page < 0 {
        return Err(bad_request(
            "page",
            "`page` must be 0 or more (pages count from 0)".into(),
        ));
    }
    let (order_field, descending) = match one("orderBy")? {
        None => ("id", false),
        Some(text) => {
            let (field, way) = text.split_once(':').unwrap_or((text.as_str(), "asc"));
            let field = ORDER_FIELDS.iter().find(|f| **f == field).ok_or_else(|| {
                bad_request(
                    "orderBy",
                    format!(
                        "`{field}` cannot order messages; use one of {}",
                        ORDER_FIELDS.join(", ")
                    ),
                )
            })?;
            let descending = match way.to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                _ => {
                    return Err(bad_request(
                        "orderBy",
                        format!("`{way}` is not an order; use asc or desc"),
                    ))
                }
            };
            (*field, descending)
        }
    };
    Ok(Filter {
        message_ids: seen.get("messageIds").cloned().unwrap_or_default(),
        channel: enumerated("channel", CHANNELS)?,
        direction: enumerated("direction", DIRECTIONS)?,
        created_after: date("createdAfter")?,
        created_before: date("createdBefore")?,
        limit,
        page,
        order_field,
        descending,
    })
}

/// One message of a seeded conversation.
struct SimMessage {
    id: String,
    direction: &'static str,
    created_at: OffsetDateTime,
    body: Value,
}

/// The conversation's messages, oldest first: the outbound ones that came first, the end user's message, and
/// the agent's reply, a minute apart.
fn messages_of(c: &SimConversation) -> Vec<SimMessage> {
    let start = time::macros::datetime!(2026-11-26 09:00 UTC);
    let business = "InfobipShop";
    let mut out = Vec::new();
    let mut push = |direction: &'static str, from: &str, to: &str, author: &str, content: Value| {
        let n = out.len();
        let id = format!("{}-m{n:03}", c.id);
        let created_at = start + time::Duration::minutes(n as i64);
        let stamp = created_at.format(STAMP).unwrap_or_default();
        out.push(SimMessage {
            body: json!({
                "id": id,
                "channel": c.channel,
                "direction": direction,
                "from": from,
                "to": to,
                "conversationId": c.id,
                "authorType": author,
                "createdAt": stamp,
                "updatedAt": stamp,
                "contentType": "TEXT",
                "content": content,
            }),
            id,
            direction,
            created_at,
        });
    };
    for i in 0..c.outbound_first {
        let text = if c.outbound_first == 1 {
            "Welcome! How can we help?".to_owned()
        } else {
            format!("Winter sale, day {}: 20% off headlamps.", i + 1)
        };
        push(
            "OUTBOUND",
            business,
            c.from,
            "SYSTEM",
            json!({ "text": text }),
        );
    }
    push(
        "INBOUND",
        c.from,
        business,
        "CUSTOMER",
        json!({"text": c.text, "sender": c.from, "senderName": c.sender_name}),
    );
    push(
        "OUTBOUND",
        business,
        c.from,
        "AGENT",
        json!({"text": "Thanks, let me check that for you."}),
    );
    out
}

/// `GET /ccaas/1/conversations/{conversationId}/messages`: the credential (401), the test switches, the
/// account's throttling (429), the query (400), the conversation, which must be the credential's account's
/// (otherwise the document's "Invalid id" 400), then the page.
async fn messages(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(conversation_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let faults = api.accounts.faults();
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, credential)| api.accounts.account_of(scheme, credential.trim()));
    let account = match credential {
        Some(Credential::Account(account)) => account,
        Some(Credential::Expired) => {
            return infobip_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Token expired.")
        }
        _ => {
            return infobip_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Invalid login details.",
            )
        }
    };
    if let Some(status) = faults.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = infobip_error(status, "SIMULATED", "Switched on in /_sim/oauth.");
        if let Some(secs) = faults.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        return response;
    }
    if let Some(wait) = api.throttle(account) {
        let mut response = infobip_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Too many requests",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
        );
        return response;
    }
    let filter = match parse_query(query.as_deref().unwrap_or_default()) {
        Ok(filter) => filter,
        Err(refused) => return refused.into_response(),
    };
    let Some(c) = CONVERSATIONS
        .iter()
        .find(|c| c.id == conversation_id && c.account_key == account)
    else {
        // The document's example of an unknown id is a 400 with messageId NOT_FOUND.
        return infobip_error(
            StatusCode::BAD_REQUEST,
            "NOT_FOUND",
            &format!("Invalid id '{conversation_id}' given! No such entity exists."),
        );
    };
    let mut found: Vec<SimMessage> = messages_of(c)
        .into_iter()
        .filter(|m| filter.message_ids.is_empty() || filter.message_ids.contains(&m.id))
        .filter(|m| filter.direction.as_deref().is_none_or(|d| d == m.direction))
        .filter(|m| {
            filter
                .channel
                .as_deref()
                .is_none_or(|ch| m.body["channel"] == ch)
        })
        .filter(|m| filter.created_after.is_none_or(|t| m.created_at > t))
        .filter(|m| filter.created_before.is_none_or(|t| m.created_at < t))
        .collect();
    match filter.order_field {
        // Seeded messages are created and updated at once, a minute apart, in id order.
        "createdAt" | "updatedAt" => found.sort_by_key(|m| m.created_at),
        _ => found.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    if filter.descending {
        found.reverse();
    }
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(usize::try_from(filter.page.saturating_mul(filter.limit)).unwrap_or(usize::MAX))
        .take(usize::try_from(filter.limit).unwrap_or(0))
        .map(|m| m.body)
        .collect();
    Json(json!({
        "messages": page,
        "pagination": {
            "totalItems": total,
            "page": filter.page,
            "limit": filter.limit,
            "orderBy": format!(
                "{}:{}",
                filter.order_field,
                if filter.descending { "DESC" } else { "ASC" }
            ),
        }
    }))
    .into_response()
}

impl Api {
    /// Counts a call of `account` against its last minute; `Some(wait)` when the call is over the limit.
    fn throttle(&self, account: &'static str) -> Option<Duration> {
        let limit = *lock(&self.per_minute);
        let now = Instant::now();
        let mut calls = lock(&self.calls);
        let recent = calls.entry(account).or_default();
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= limit {
            let oldest = recent.front().copied().unwrap_or(now);
            return Some(WINDOW.saturating_sub(now.duration_since(oldest)));
        }
        recent.push_back(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accounts with one token each: `IBSSO acme` is Acme's, `IBSSO old` has expired.
    struct Fixed;
    impl Accounts for Fixed {
        fn account_of(&self, scheme: &str, credential: &str) -> Credential {
            match (scheme, credential) {
                ("IBSSO", "acme") => Credential::Account(ACME),
                ("IBSSO", "initech") => Credential::Account(INITECH),
                ("IBSSO", "old") => Credential::Expired,
                _ => Credential::Unknown,
            }
        }
        fn faults(&self) -> Faults {
            Faults::default()
        }
    }

    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(Arc::new(Fixed))).await });
        format!("http://{addr}")
    }

    async fn get(base: &str, auth: &str, path_and_query: &str) -> (u16, Value, Option<String>) {
        let response = reqwest::Client::new()
            .get(format!("{base}{path_and_query}"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, response.json().await.unwrap(), retry)
    }

    const CAMPAIGN: &str = "/ccaas/1/conversations/7a3b9c04-initech-0004/messages";

    #[tokio::test]
    async fn pages_filters_and_orders_as_documented() {
        let base = serve().await;
        // The default page: 10 messages by id, all outbound in a campaign of 12.
        let (status, body, _) = get(&base, "IBSSO initech", CAMPAIGN).await;
        assert_eq!(status, 200, "{body}");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 10);
        assert!(messages.iter().all(|m| m["direction"] == "OUTBOUND"));
        assert_eq!(
            body["pagination"],
            json!({"totalItems": 14, "page": 0, "limit": 10, "orderBy": "id:ASC"})
        );
        // The second page holds the rest, the customer's message among them.
        let (_, body, _) = get(&base, "IBSSO initech", &format!("{CAMPAIGN}?page=1")).await;
        assert_eq!(body["messages"].as_array().unwrap().len(), 4);
        assert_eq!(body["messages"][2]["direction"], "INBOUND");
        // Filtered by direction, one message: the customer's.
        let (_, body, _) = get(
            &base,
            "IBSSO initech",
            &format!("{CAMPAIGN}?direction=INBOUND&limit=1&orderBy=id:asc"),
        )
        .await;
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(body["messages"][0]["from"], "+441632960961");
        assert_eq!(body["pagination"]["totalItems"], 1);
        // Newest first.
        let (_, body, _) = get(
            &base,
            "IBSSO initech",
            &format!("{CAMPAIGN}?orderBy=createdAt:desc&limit=1"),
        )
        .await;
        assert_eq!(body["messages"][0]["authorType"], "AGENT");
        // Another channel's filter finds nothing; dates bound the page.
        let (_, body, _) = get(&base, "IBSSO initech", &format!("{CAMPAIGN}?channel=EMAIL")).await;
        assert_eq!(body["pagination"]["totalItems"], 0);
        let (_, body, _) = get(
            &base,
            "IBSSO initech",
            &format!("{CAMPAIGN}?createdAfter=2026-11-26T09:11:00.000%2B0000"),
        )
        .await;
        assert_eq!(body["pagination"]["totalItems"], 2, "{body}");
    }

    #[tokio::test]
    async fn refuses_what_the_document_does_not_allow() {
        let base = serve().await;
        for query in [
            "size=1",
            "direction=inbound",
            "channel=INTERNAL",
            "limit=0",
            "limit=1000",
            "limit=-1",
            "limit=ten",
            "page=-1",
            "orderBy=from:asc",
            "orderBy=id:up",
            "limit=1&limit=2",
            "createdAfter=yesterday",
        ] {
            let (status, body, _) =
                get(&base, "IBSSO initech", &format!("{CAMPAIGN}?{query}")).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert_eq!(
                body["requestError"]["serviceException"]["messageId"], "BAD_REQUEST",
                "{query}: {body}"
            );
        }
        // Another account's conversation is the document's "Invalid id".
        let (status, body, _) = get(&base, "IBSSO acme", CAMPAIGN).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["requestError"]["serviceException"]["messageId"],
            "NOT_FOUND"
        );
        // Credentials: expired, unknown, a scheme the simulator cannot check.
        for auth in [
            "IBSSO old",
            "IBSSO nope",
            "Bearer initech",
            "App initech",
            "initech",
        ] {
            let (status, _, _) = get(&base, auth, CAMPAIGN).await;
            assert_eq!(status, 401, "{auth}");
        }
    }

    #[tokio::test]
    async fn throttles_each_account_at_the_documented_rate() {
        let base = serve().await;
        let client = reqwest::Client::new();
        for n in 0..DOCUMENTED_REQUESTS_PER_MINUTE {
            let status = client
                .get(format!("{base}{CAMPAIGN}?limit=1"))
                .header("Authorization", "IBSSO initech")
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "call {n}");
        }
        let (status, body, retry) = get(&base, "IBSSO initech", CAMPAIGN).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(
            body["requestError"]["serviceException"]["messageId"],
            "TOO_MANY_REQUESTS"
        );
        let retry: u64 = retry.unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        // Another account has its own minute.
        let (status, _, _) = get(
            &base,
            "IBSSO acme",
            "/ccaas/1/conversations/4b7c1e52-acme-0001/messages",
        )
        .await;
        assert_eq!(status, 200);
    }
}
