//! Infobip People (CDP) as the contract notes describe it, in memory: persons looked up by identifier type,
//! created, replaced (PUT clears what it omits), patched (PATCH appends tags and contacts, keeps what it omits),
//! upserted, listed newest-modified first; `Authorization: App <key>`; the documented rate limits (reads 5/s,
//! writes 10/s per key) answered 429 with `Retry-After`; Infobip's `requestError.serviceException` error shape.
//! Tests can make it fail a share of calls or go down, change persons, and read what it holds.
//!
//! Where the public excerpts are silent (the upsert's identity, the list's answer shape) the choices are ibex's
//! assumptions, documented in docs/exchange-assumptions.md.

// The helpers return the answer to give as their error: a simulator's handlers have nothing else to say.
#![allow(clippy::result_large_err)]

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct PeopleFaults {
    /// Requests per second allowed per key; 0 lifts the limit.
    pub reads_per_sec: u32,
    pub writes_per_sec: u32,
    /// Every Nth API call answers 500 (0: none).
    pub fail_every: u64,
    /// While true every API call answers 503.
    pub down: bool,
    /// Goes down (as `down`) once this many writes have been served (0: never), for an outage mid-run.
    pub down_after_writes: u64,
    /// Writes of persons with these externalIds are refused as invalid (400), as People refuses a record it
    /// cannot take; clearing the list lets a "Retry failed" through.
    pub reject_external_ids: Vec<String>,
}

impl Default for PeopleFaults {
    fn default() -> Self {
        PeopleFaults {
            reads_per_sec: 5,
            writes_per_sec: 10,
            fail_every: 0,
            down: false,
            down_after_writes: 0,
            reject_external_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PeopleStats {
    pub reads: u64,
    pub creates: u64,
    pub updates: u64,
    pub throttled: u64,
    pub failed: u64,
}

struct Window {
    second: Instant,
    used: u32,
}

/// The persons, with an index by externalId (the identifier syncs use), so a lookup stays cheap at 100 000
/// persons: a linear scan made the simulator, not ibex, the limit of a large sync benchmark.
#[derive(Default)]
struct Persons {
    list: Vec<Value>,
    by_external: std::collections::HashMap<String, usize>,
}

impl Persons {
    fn push(&mut self, person: Value) {
        if let Some(id) = person["externalId"].as_str() {
            self.by_external.insert(id.to_owned(), self.list.len());
        }
        self.list.push(person);
    }

    /// After a write that may have changed the person's externalId.
    fn reindex(&mut self, i: usize) {
        if let Some(id) = self.list[i]["externalId"].as_str() {
            self.by_external.insert(id.to_owned(), i);
        }
    }

    fn position(&self, kind: &str, identifier: &str) -> Option<usize> {
        if kind == "EXTERNAL_ID" {
            // Checked again: an index entry outlives a person's externalId changing away from it.
            return self
                .by_external
                .get(identifier)
                .copied()
                .filter(|&i| self.list[i]["externalId"] == identifier);
        }
        self.list.iter().position(|p| matches(p, kind, identifier))
    }
}

struct People {
    api_key: String,
    persons: Mutex<Persons>,
    next_id: Mutex<i64>,
    faults: Mutex<PeopleFaults>,
    stats: Mutex<PeopleStats>,
    calls: Mutex<u64>,
    windows: Mutex<BTreeMap<bool, Window>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one People API key the simulator accepts (`Authorization: App sim-people-key`).
pub const API_KEY: &str = "sim-people-key";

/// The People API and its test switches, to merge into the simulated portal's router.
pub fn router(api_key: impl Into<String>) -> Router {
    let people = Arc::new(People {
        api_key: api_key.into(),
        persons: Mutex::new(Persons::default()),
        next_id: Mutex::new(1),
        faults: Mutex::new(PeopleFaults::default()),
        stats: Mutex::new(PeopleStats::default()),
        calls: Mutex::new(0),
        windows: Mutex::new(BTreeMap::new()),
    });
    Router::new()
        .route(
            "/people/2/persons",
            get(read_persons).post(create).put(replace).patch(update),
        )
        .route("/people/2/persons/batch", post(create_batch))
        .route(
            "/people/3/persons/upsert",
            patch(upsert_patch).put(upsert_put),
        )
        .route("/_sim/people", post(set_faults).get(get_state))
        .route("/_sim/people/change", post(change))
        .with_state(people)
}

fn now_text() -> String {
    // Milliseconds keep modifiedAt strictly increasing under a fast writer.
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Always three fraction digits, so that comparing the texts compares the times (RFC 3339's formatter
    // trims trailing zeros, and `40.5Z` sorts after `40.53Z`).
    at.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

fn error(status: StatusCode, message_id: &str, text: &str, validation: Option<Value>) -> Response {
    let mut exception = json!({"messageId": message_id, "text": text});
    if let Some(v) = validation {
        exception["validationErrors"] = v;
    }
    (
        status,
        Json(json!({"requestError": {"serviceException": exception}})),
    )
        .into_response()
}

/// Authorization, outage, injected failures and the rate limit, in that order; `Some` is the answer to give.
fn admit(people: &People, headers: &HeaderMap, write: bool) -> Option<Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("App "));
    if key != Some(people.api_key.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Invalid login details",
            None,
        ));
    }
    let faults = lock(&people.faults).clone();
    let writes = {
        let stats = lock(&people.stats);
        stats.creates + stats.updates
    };
    if faults.down || (faults.down_after_writes > 0 && writes >= faults.down_after_writes) {
        lock(&people.stats).failed += 1;
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "People is down (simulated)",
            None,
        ));
    }
    let limit = if write {
        faults.writes_per_sec
    } else {
        faults.reads_per_sec
    };
    if limit > 0 {
        let mut windows = lock(&people.windows);
        let window = windows.entry(write).or_insert(Window {
            second: Instant::now(),
            used: 0,
        });
        let elapsed = window.second.elapsed();
        if elapsed >= Duration::from_secs(1) {
            window.second = Instant::now();
            window.used = 0;
        }
        if window.used >= limit {
            lock(&people.stats).throttled += 1;
            let wait = Duration::from_secs(1).saturating_sub(window.second.elapsed());
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Too many requests",
                None,
            );
            // Whole seconds, rounded up, as the header allows.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = secs.to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
            return Some(response);
        }
        window.used += 1;
    }
    let call = {
        let mut calls = lock(&people.calls);
        *calls += 1;
        *calls
    };
    if faults.fail_every > 0 && call % faults.fail_every == 0 {
        lock(&people.stats).failed += 1;
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "GENERAL_ERROR",
            "Something went wrong (simulated)",
            None,
        ));
    }
    None
}

#[derive(Deserialize)]
struct Identity {
    identifier: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    identifier: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<usize>,
    page: Option<usize>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    filter: Option<String>,
}

fn matches(person: &Value, kind: &str, identifier: &str) -> bool {
    match kind {
        "ID" => person["id"]
            .as_i64()
            .is_some_and(|id| id.to_string() == identifier),
        "EXTERNAL_ID" => person["externalId"] == identifier,
        "PHONE" => contacts(person, "phone", "number").any(|n| n == identifier),
        "EMAIL" => contacts(person, "email", "address").any(|a| a.eq_ignore_ascii_case(identifier)),
        _ => false,
    }
}

fn contacts<'a>(
    person: &'a Value,
    kind: &str,
    field: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    person["contactInformation"][kind]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |c| c[field].as_str())
}

fn find(persons: &Persons, identity: &Identity) -> Result<Option<usize>, Response> {
    let (Some(identifier), kind) = (
        &identity.identifier,
        identity.kind.as_deref().unwrap_or("ID"),
    ) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "identifier is required",
            None,
        ));
    };
    if !matches!(kind, "ID" | "EXTERNAL_ID" | "PHONE" | "EMAIL") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("unknown identifier type {kind}"),
            None,
        ));
    }
    Ok(persons.position(kind, identifier))
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "Person not found", None)
}

/// What People refuses: a non-object, an email without `@`, a phone number that is not digits, and the
/// externalIds a test has told it to refuse.
fn validate(people: &People, body: &Value) -> Result<(), Response> {
    let Some(object) = body.as_object() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a person is a JSON object",
            None,
        ));
    };
    let mut problems = Map::new();
    for address in contacts(body, "email", "address") {
        if !address.contains('@') {
            problems.insert(
                "contactInformation.email.address".into(),
                json!([format!("invalid email address {address}")]),
            );
        }
    }
    for number in contacts(body, "phone", "number") {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.len() > 15 {
            problems.insert(
                "contactInformation.phone.number".into(),
                json!([format!("invalid phone number {number}")]),
            );
        }
    }
    if let Some(external) = object.get("externalId").and_then(Value::as_str) {
        if lock(&people.faults)
            .reject_external_ids
            .iter()
            .any(|id| id == external)
        {
            problems.insert(
                "externalId".into(),
                json!([format!("person {external} is locked")]),
            );
        }
    }
    if let Some(tags) = object.get("tags") {
        if !tags.is_array() {
            problems.insert("tags".into(), json!(["must be an array"]));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Invalid person",
            Some(Value::Object(problems)),
        ))
    }
}

const FIELDS: &[&str] = &[
    "externalId",
    "firstName",
    "lastName",
    "customAttributes",
    "tags",
    "contactInformation",
];

fn fresh(people: &People, body: &Value) -> Value {
    let id = {
        let mut next = lock(&people.next_id);
        let id = *next;
        *next += 1;
        id
    };
    let at = now_text();
    let mut person = json!({"id": id, "createdAt": at, "modifiedAt": at, "tags": [], "customAttributes": {},
        "contactInformation": {"email": [], "phone": []}});
    for field in FIELDS {
        if let Some(v) = body.get(*field) {
            person[*field] = v.clone();
        }
    }
    person
}

/// PUT: every attribute is the body's; what it omits is cleared.
fn replace_into(person: &mut Value, body: &Value) {
    for field in FIELDS {
        person[*field] = match (*field, body.get(*field)) {
            (_, Some(v)) => v.clone(),
            ("tags", None) => json!([]),
            ("customAttributes", None) => json!({}),
            ("contactInformation", None) => json!({"email": [], "phone": []}),
            (_, None) => Value::Null,
        };
    }
    person["modifiedAt"] = Value::from(now_text());
}

/// PATCH: given attributes replace, custom attributes merge, tags and contacts are appended (once each).
fn patch_into(person: &mut Value, body: &Value) {
    for field in ["externalId", "firstName", "lastName"] {
        if let Some(v) = body.get(field) {
            person[field] = v.clone();
        }
    }
    if let Some(Value::Object(attributes)) = body.get("customAttributes") {
        for (k, v) in attributes {
            person["customAttributes"][k] = v.clone();
        }
    }
    if let Some(Value::Array(tags)) = body.get("tags") {
        for tag in tags {
            if !person["tags"].as_array().is_some_and(|t| t.contains(tag)) {
                if let Some(list) = person["tags"].as_array_mut() {
                    list.push(tag.clone());
                }
            }
        }
    }
    for kind in ["email", "phone"] {
        if let Some(Value::Array(items)) = body["contactInformation"].get(kind) {
            for item in items {
                let list = &mut person["contactInformation"][kind];
                if !list.is_array() {
                    *list = json!([]);
                }
                if !list.as_array().is_some_and(|l| l.contains(item)) {
                    if let Some(l) = list.as_array_mut() {
                        l.push(item.clone());
                    }
                }
            }
        }
    }
    person["modifiedAt"] = Value::from(now_text());
}

async fn read_persons(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(refused) = admit(&people, &headers, false) {
        return refused;
    }
    lock(&people.stats).reads += 1;
    let persons = lock(&people.persons);
    if q.identifier.is_some() {
        let identity = Identity {
            identifier: q.identifier,
            kind: q.kind,
        };
        return match find(&persons, &identity) {
            Ok(Some(i)) => Json(persons.list[i].clone()).into_response(),
            Ok(None) => not_found(),
            Err(e) => e,
        };
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    // `{"modifiedAt": {"#gt": T}}` or `{"#gte": T}`: the filters People → partner uses.
    let filter = q
        .filter
        .as_deref()
        .and_then(|f| serde_json::from_str::<Value>(f).ok())
        .unwrap_or(Value::Null);
    let after = filter["modifiedAt"]["#gt"].as_str().map(str::to_owned);
    let from = filter["modifiedAt"]["#gte"].as_str().map(str::to_owned);
    let mut selected: Vec<&Value> = persons
        .list
        .iter()
        .filter(|p| {
            let at = p["modifiedAt"].as_str().unwrap_or("");
            after.as_deref().is_none_or(|a| at > a) && from.as_deref().is_none_or(|f| at >= f)
        })
        .collect();
    selected.sort_by(|a, b| a["modifiedAt"].as_str().cmp(&b["modifiedAt"].as_str()));
    if q.order_by.as_deref() != Some("modifiedAt:asc") {
        selected.reverse();
    }
    let total = selected.len();
    let persons: Vec<Value> = selected
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .cloned()
        .collect();
    Json(json!({"persons": persons, "limit": limit, "page": page, "totalResults": total}))
        .into_response()
}

async fn create(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(&people, &headers, true) {
        return refused;
    }
    if let Err(e) = validate(&people, &body) {
        return e;
    }
    let mut persons = lock(&people.persons);
    if let Some(external) = body["externalId"].as_str() {
        if persons.position("EXTERNAL_ID", external).is_some() {
            return error(
                StatusCode::CONFLICT,
                "CONFLICT",
                "A person with this externalId exists",
                None,
            );
        }
    }
    let person = fresh(&people, &body);
    persons.push(person.clone());
    lock(&people.stats).creates += 1;
    (StatusCode::CREATED, Json(person)).into_response()
}

/// `POST /people/2/persons/batch` with `{"persons": [...]}` (up to 1000): creates each valid person that does not
/// exist yet; one write of the rate limit for the batch. The answer's shape is the simulator's assumption (the
/// public excerpts name the endpoint only): `{"persons": [created…], "errors": [{"index", "messageId", "text"}]}`.
async fn create_batch(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(&people, &headers, true) {
        return refused;
    }
    let Some(batch) = body["persons"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "send {\"persons\": [...]}",
            None,
        );
    };
    if batch.len() > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "at most 1000 persons per batch",
            None,
        );
    }
    let (mut created, mut errors) = (Vec::new(), Vec::new());
    for (index, person) in batch.iter().enumerate() {
        if validate(&people, person).is_err() {
            errors.push(
                json!({"index": index, "messageId": "BAD_REQUEST", "text": "Invalid person"}),
            );
            continue;
        }
        let mut persons = lock(&people.persons);
        let exists = person["externalId"]
            .as_str()
            .is_some_and(|id| persons.position("EXTERNAL_ID", id).is_some());
        if exists {
            errors.push(json!({"index": index, "messageId": "CONFLICT", "text": "A person with this externalId exists"}));
            continue;
        }
        let fresh = fresh(&people, person);
        persons.push(fresh.clone());
        lock(&people.stats).creates += 1;
        created.push(fresh);
    }
    Json(json!({"persons": created, "errors": errors})).into_response()
}

async fn write_existing(
    people: Arc<People>,
    headers: HeaderMap,
    identity: Identity,
    body: Value,
    full: bool,
    upsert: bool,
) -> Response {
    if let Some(refused) = admit(&people, &headers, true) {
        return refused;
    }
    if let Err(e) = validate(&people, &body) {
        return e;
    }
    // An upsert without a query names its person by the body's externalId (ibex's assumption).
    let identity = match (&identity.identifier, upsert, body["externalId"].as_str()) {
        (None, true, Some(external)) => Identity {
            identifier: Some(external.to_owned()),
            kind: Some("EXTERNAL_ID".into()),
        },
        _ => identity,
    };
    let mut persons = lock(&people.persons);
    match find(&persons, &identity) {
        Err(e) => e,
        Ok(Some(i)) => {
            if full {
                replace_into(&mut persons.list[i], &body);
            } else {
                patch_into(&mut persons.list[i], &body);
            }
            persons.reindex(i);
            lock(&people.stats).updates += 1;
            Json(persons.list[i].clone()).into_response()
        }
        Ok(None) if upsert => {
            let person = fresh(&people, &body);
            persons.push(person.clone());
            lock(&people.stats).creates += 1;
            (StatusCode::CREATED, Json(person)).into_response()
        }
        Ok(None) => not_found(),
    }
}

async fn replace(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Query(identity): Query<Identity>,
    Json(body): Json<Value>,
) -> Response {
    write_existing(people, headers, identity, body, true, false).await
}

async fn update(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Query(identity): Query<Identity>,
    Json(body): Json<Value>,
) -> Response {
    write_existing(people, headers, identity, body, false, false).await
}

async fn upsert_patch(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Query(identity): Query<Identity>,
    Json(body): Json<Value>,
) -> Response {
    write_existing(people, headers, identity, body, false, true).await
}

async fn upsert_put(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    Query(identity): Query<Identity>,
    Json(body): Json<Value>,
) -> Response {
    write_existing(people, headers, identity, body, true, true).await
}

async fn set_faults(
    State(people): State<Arc<People>>,
    Json(faults): Json<PeopleFaults>,
) -> Json<PeopleFaults> {
    *lock(&people.faults) = faults.clone();
    Json(faults)
}

/// Everything People holds, and the counters: what tests compare against the source.
async fn get_state(State(people): State<Arc<People>>) -> Json<Value> {
    let persons = lock(&people.persons).list.clone();
    let stats = lock(&people.stats).clone();
    let faults = lock(&people.faults).clone();
    Json(json!({ "persons": persons, "stats": stats, "faults": faults }))
}

/// A change made in People by someone else (feeds People → partner), no limits: a PATCH of the person with this
/// external id, or a new person when there is none (or no external id: a person the partner never had).
async fn change(State(people): State<Arc<People>>, Json(body): Json<Value>) -> Response {
    let mut persons = lock(&people.persons);
    let found = body["externalId"]
        .as_str()
        .and_then(|id| persons.position("EXTERNAL_ID", id));
    match found {
        Some(i) => {
            patch_into(&mut persons.list[i], &body);
            persons.reindex(i);
            Json(persons.list[i].clone()).into_response()
        }
        None => {
            let person = fresh(&people, &body);
            persons.push(person.clone());
            (StatusCode::CREATED, Json(person)).into_response()
        }
    }
}
