//! Infobip People (CDP) as Infobip's published OpenAPI document describes it (People 3.210.0, the operations in
//! `people-subset.json` of the project's reference material), in memory:
//!
//! - `PATCH` / `PUT /people/3/persons/upsert` (operations `upsert-persons-partial` / `upsert-persons-full`): a
//!   batch `{"persons": [...]}` of 1 to 1000 persons, no query parameters, each body checked against the
//!   documented request schema (`sim/schemas/people-upsert-request.json`, extracted from the document) with the
//!   `jsonschema` crate; persons matched on the identifiers in the body; answered 207 with `results` and `errors`
//!   by index (arrays, as every documented example shows), `NOT_MODIFIED` when nothing changed, per-person
//!   validation errors (`400100`) mixed with successes; a request that cannot be read answers 400 in v3's
//!   `{code, message, details}` shape.
//! - `GET` / `POST` / `PUT` / `PATCH /people/2/persons`: one person by `identifier`/`type` (only the documented
//!   query parameters), bodies checked against `IamPersonV2` (`sim/schemas/people-person-v2.json`); v2's
//!   `requestError.serviceException` error shape. `PATCH` appends the tags it is sent, as the document says of
//!   operation `partial-person-update` (People → ibex's `on_delete = "tag"`).
//! - `DELETE /people/2/persons?identifier=&type=`: Infobip's "Delete a person" (`delete-a-person` in Infobip's API
//!   reference), which is **not** in the reference excerpt of the OpenAPI document: its query parameters are
//!   taken to be those of v2's other one-person operations (`identifier`, `sender`, `type`; anything else is
//!   refused), its limit that of v2's writes (5/s), and its answers `204` when deleted, `404` in v2's error shape
//!   when there is no such person. ibex takes any 2xx as deleted.
//! - `Authorization: App <key>`; the documented limits per key and operation (5 requests/s, v2 POST 10/s),
//!   answered 429 with `Retry-After` in the documented `ApiException429` shape.
//!
//! Tests switch faults on (`/_sim/people`), change persons as someone in People would (`/_sim/people/change`), and
//! read what it holds and how many requests each operation got (`GET /_sim/people`). Where the document is
//! silent (the codes of most v3 errors, how a partial upsert merges tags and contacts, which identifier wins
//! when several match) the choices are the simulator's, listed in docs/sync.md.

// The helpers return the answer to give as their error: a simulator's handlers have nothing else to say.
#![allow(clippy::result_large_err)]

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The documented request body of the v3 upsert, from Infobip's OpenAPI document (People 3.210.0).
const UPSERT_SCHEMA: &str = include_str!("../schemas/people-upsert-request.json");
/// The documented request body of v2's person create, update and partial update (`IamPersonV2`).
const PERSON_V2_SCHEMA: &str = include_str!("../schemas/people-person-v2.json");

fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("the bundled schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the bundled schema compiles")
}

static UPSERT: LazyLock<jsonschema::Validator> = LazyLock::new(|| compile(UPSERT_SCHEMA));
static PERSON_V2: LazyLock<jsonschema::Validator> = LazyLock::new(|| compile(PERSON_V2_SCHEMA));

/// The documented batch limit of the v3 upsert.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct PeopleFaults {
    /// v2 `GET /people/2/persons` per second per key (documented: 5); 0 lifts the limit.
    pub reads_per_sec: u32,
    /// The v3 upserts and v2's `PUT`/`PATCH`, each per second per key (documented: 5); 0 lifts the limit.
    pub writes_per_sec: u32,
    /// v2's `POST /people/2/persons` per second per key (documented: 10); 0 lifts the limit.
    pub creates_per_sec: u32,
    /// Every Nth API call answers 500 (0: none).
    pub fail_every: u64,
    /// While true every API call answers 503.
    pub down: bool,
    /// Goes down (as `down`) once this many persons have been written (created, updated or sent unchanged; 0:
    /// never), for an outage mid-run.
    pub down_after_writes: u64,
    /// Persons with these externalIds are refused (a v3 per-person error, a v2 400), as People refuses a person it
    /// cannot take; clearing the list lets a "Retry failed" through.
    pub reject_external_ids: Vec<String>,
    /// Writes answer this many milliseconds after they were applied (a slow People), so a client can be killed
    /// while its batch is in flight.
    pub delay_ms: u64,
}

impl Default for PeopleFaults {
    fn default() -> Self {
        PeopleFaults {
            reads_per_sec: 5,
            writes_per_sec: 5,
            creates_per_sec: 10,
            fail_every: 0,
            down: false,
            down_after_writes: 0,
            reject_external_ids: Vec::new(),
            delay_ms: 0,
        }
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PeopleStats {
    pub reads: u64,
    /// Persons created, updated, and sent unchanged (`NOT_MODIFIED`).
    pub creates: u64,
    pub updates: u64,
    pub unchanged: u64,
    /// Persons deleted (`DELETE /people/2/persons`).
    pub deletes: u64,
    /// Persons refused one by one (a v3 207 error, a v2 400).
    pub refused: u64,
    pub throttled: u64,
    pub failed: u64,
    /// Requests admitted per operation (`"PATCH /people/3/persons/upsert"`), whatever their answer.
    pub requests: BTreeMap<String, u64>,
}

struct Window {
    second: Instant,
    used: u32,
}

/// The persons (stored in v2's shape, as v2's GET answers them), with an index by externalId (the identifier
/// syncs use), so a lookup stays cheap at 100 000 persons: a linear scan made the simulator, not ibex, the limit
/// of a large sync benchmark.
#[derive(Default)]
struct Persons {
    list: Vec<Value>,
    by_external: HashMap<String, usize>,
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

    /// Removes the person with this externalId (someone deleted it in People); whether there was one.
    fn remove(&mut self, external: &str) -> bool {
        let Some(i) = self.position("EXTERNAL_ID", external) else {
            return false;
        };
        self.remove_at(i);
        true
    }

    fn remove_at(&mut self, i: usize) {
        self.list.remove(i);
        self.by_external = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p["externalId"].as_str()?.to_owned(), i)))
            .collect();
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
    windows: Mutex<HashMap<&'static str, Window>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one People API key the simulator accepts (`Authorization: App sim-people-key`).
pub const API_KEY: &str = "sim-people-key";

/// The People API and its test switches, to merge into the simulated portal's router.
pub fn router(api_key: impl Into<String>) -> Router {
    // Compiled now, so a broken bundled schema shows at start, not at the first request.
    LazyLock::force(&UPSERT);
    LazyLock::force(&PERSON_V2);
    let people = Arc::new(People {
        api_key: api_key.into(),
        persons: Mutex::new(Persons::default()),
        next_id: Mutex::new(1),
        faults: Mutex::new(PeopleFaults::default()),
        stats: Mutex::new(PeopleStats::default()),
        calls: Mutex::new(0),
        windows: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(
            "/people/2/persons",
            get(read_persons)
                .post(create)
                .put(replace)
                .patch(update)
                .delete(remove),
        )
        .route("/people/2/persons/batch", post(create_batch))
        .route(
            "/people/3/persons/upsert",
            patch(upsert_patch).put(upsert_put),
        )
        .route("/_sim/people", post(set_faults).get(get_state))
        .route("/_sim/people/change", post(change))
        .route("/_sim/people/forget", post(forget))
        .route("/_sim/people/stats", get(get_stats))
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

/// v2's error shape (`ApiException`), also what v3 answers for 401, 403, 429 and 500 (the document's shared
/// `ApiException4xx/500` responses).
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

/// v3's whole-request error (`{code, message, details}`), as the upsert's documented 400 examples show it.
fn error_v3(code: u32, message: &str, details: Vec<Value>) -> Response {
    let mut body = json!({"code": code, "message": message});
    if !details.is_empty() {
        body["details"] = Value::Array(details);
    }
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The operations, each with its documented limit (`x-throttling-info`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Create,
    Update,
    PartialUpdate,
    UpsertFull,
    UpsertPartial,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET /people/2/persons",
            Op::Create => "POST /people/2/persons",
            Op::Update => "PUT /people/2/persons",
            Op::PartialUpdate => "PATCH /people/2/persons",
            Op::UpsertFull => "PUT /people/3/persons/upsert",
            Op::UpsertPartial => "PATCH /people/3/persons/upsert",
            Op::Delete => "DELETE /people/2/persons",
        }
    }

    fn limit(self, faults: &PeopleFaults) -> u32 {
        match self {
            Op::Get => faults.reads_per_sec,
            Op::Create => faults.creates_per_sec,
            _ => faults.writes_per_sec,
        }
    }

    /// The query parameters the document lists for the operation.
    fn parameters(self) -> &'static [&'static str] {
        match self {
            Op::Get => &[
                "identifier",
                "sender",
                "type",
                "limit",
                "page",
                "includeTotalCount",
                "orderBy",
                "filter",
            ],
            Op::Update | Op::PartialUpdate | Op::Delete => &["identifier", "sender", "type"],
            Op::Create | Op::UpsertFull | Op::UpsertPartial => &[],
        }
    }

    fn v3(self) -> bool {
        matches!(self, Op::UpsertFull | Op::UpsertPartial)
    }
}

/// Authorization, outage, the rate limit and injected failures, in that order; `Some` is the answer to give.
fn admit(people: &People, headers: &HeaderMap, op: Op) -> Option<Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("App "));
    if key != Some(people.api_key.as_str()) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Unauthorized",
            None,
        ));
    }
    let faults = lock(&people.faults).clone();
    let writes = {
        let stats = lock(&people.stats);
        stats.creates + stats.updates + stats.unchanged
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
    let limit = op.limit(&faults);
    if limit > 0 {
        let mut windows = lock(&people.windows);
        let window = windows.entry(op.name()).or_insert(Window {
            second: Instant::now(),
            used: 0,
        });
        if window.second.elapsed() >= Duration::from_secs(1) {
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
    *lock(&people.stats)
        .requests
        .entry(op.name().to_owned())
        .or_default() += 1;
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
            "Something went wrong. Please contact support.",
            None,
        ));
    }
    None
}

/// The query's parameters, or the documented 400 naming the first one the operation does not take.
fn parameters(op: Op, query: Option<&str>) -> Result<HashMap<String, String>, Response> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((name, _)) = pairs
        .iter()
        .find(|(k, _)| !op.parameters().contains(&k.as_str()))
    {
        return Err(if op.v3() {
            error_v3(
                400100,
                &format!("Unknown query parameter '{name}': this operation takes none"),
                vec![json!({"property": name, "message": "Not a parameter of this operation"})],
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("Unknown query parameter '{name}'"),
                None,
            )
        });
    }
    Ok(pairs.into_iter().collect())
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

fn find(persons: &Persons, query: &HashMap<String, String>) -> Result<Option<usize>, Response> {
    let (Some(identifier), kind) = (
        query.get("identifier"),
        query.get("type").map(String::as_str).unwrap_or("ID"),
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

/// An address People takes: something before and after one `@`, a dot in the domain, no spaces (the document's
/// "invalid" example is `john.doe@example`).
fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A number in international format, digits only as People stores them (up to 15, E.164).
fn valid_phone(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `/persons/0/contactInformation/1/identifier` → `persons[0].contactInformation[1].identifier`, as the
/// document's error examples name properties.
fn property(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

/// Schema errors as `(property, message, the index of the person it is in, whether the body's shape is wrong)`.
fn schema_errors(
    validator: &jsonschema::Validator,
    body: &Value,
) -> Vec<(String, String, Option<usize>, bool)> {
    validator
        .iter_errors(body)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            let mut parts = pointer.split('/').filter(|p| !p.is_empty());
            let person = match (parts.next(), parts.next()) {
                (Some("persons"), Some(i)) => i.parse().ok(),
                _ => None,
            };
            let shape = matches!(
                e.kind(),
                jsonschema::error::ValidationErrorKind::Type { .. }
            );
            (property(&pointer), e.to_string(), person, shape)
        })
        .collect()
}

/// What People refuses in one v3 person beyond its schema: a contact without a type or identifier, an email or
/// phone number that is not one, and the externalIds a test has told it to refuse. `(property, message)`.
fn person_problems(people: &People, index: usize, person: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, contact) in person["contactInformation"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("persons[{index}].contactInformation[{i}]");
        let identifier = contact["identifier"].as_str();
        match (contact["type"].as_str(), identifier) {
            (None, _) => problems.push((format!("{at}.type"), "Must not be null".into())),
            (_, None) => problems.push((format!("{at}.identifier"), "Must not be null".into())),
            (Some("EMAIL"), Some(address)) if !valid_email(address) => problems.push((
                format!("{at}.identifier"),
                "Email address is invalid".into(),
            )),
            (Some("PHONE"), Some(number)) if !valid_phone(number) => {
                problems.push((format!("{at}.identifier"), "Phone number is invalid".into()))
            }
            _ => {}
        }
    }
    if let Some(external) = person["externalId"].as_str() {
        if lock(&people.faults)
            .reject_external_ids
            .iter()
            .any(|id| id == external)
        {
            problems.push((
                format!("persons[{index}].externalId"),
                format!("Person {external} is locked (simulated)"),
            ));
        }
    }
    problems
}

/// The writable attributes a person has (contacts and tags apart).
const ATTRIBUTES: &[&str] = &[
    "externalId",
    "type",
    "firstName",
    "middleName",
    "lastName",
    "nickName",
    "country",
    "city",
    "address",
    "gender",
    "preferredLanguage",
    "birthDate",
    "profilePicture",
];

/// A v3 person's contacts in v2's shape, as the store keeps them (and v2's GET answers them).
fn contacts_v2(person: &Value) -> Option<Value> {
    let list = person["contactInformation"].as_array()?;
    let (mut email, mut phone) = (Vec::new(), Vec::new());
    for contact in list {
        let identifier = contact["identifier"].clone();
        match contact["type"].as_str() {
            Some("EMAIL") => email.push(json!({ "address": identifier })),
            Some("PHONE") => phone.push(json!({ "number": identifier.as_str().map(|n| n.trim_start_matches('+')).unwrap_or_default() })),
            _ => {}
        }
    }
    Some(json!({"email": email, "phone": phone}))
}

/// A v3 person in the store's (v2) shape.
fn from_v3(person: &Value) -> Value {
    let mut out = person.clone();
    if let Some(object) = out.as_object_mut() {
        object.remove("contactInformation");
        for read_only in [
            "id",
            "computedAttributes",
            "createdFrom",
            "createdBy",
            "createdAt",
            "modifiedFrom",
            "modifiedBy",
            "modifiedAt",
        ] {
            object.remove(read_only);
        }
    }
    if let Some(contacts) = contacts_v2(person) {
        out["contactInformation"] = contacts;
    }
    out
}

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
    for field in ATTRIBUTES.iter().chain(&["customAttributes", "tags"]) {
        if let Some(v) = body.get(*field) {
            person[*field] = v.clone();
        }
    }
    for kind in ["email", "phone"] {
        if let Some(v) = body["contactInformation"].get(kind) {
            person["contactInformation"][kind] = v.clone();
        }
    }
    person
}

/// PUT: every attribute is the body's; what it omits is cleared; tags and contacts are replaced.
fn replace_into(person: &mut Value, body: &Value) {
    for field in ATTRIBUTES {
        person[*field] = body.get(*field).cloned().unwrap_or(Value::Null);
    }
    person["tags"] = body.get("tags").cloned().unwrap_or_else(|| json!([]));
    person["customAttributes"] = body
        .get("customAttributes")
        .cloned()
        .unwrap_or_else(|| json!({}));
    person["contactInformation"] = json!({
        "email": body["contactInformation"].get("email").cloned().unwrap_or_else(|| json!([])),
        "phone": body["contactInformation"].get("phone").cloned().unwrap_or_else(|| json!([])),
    });
}

/// PATCH: given attributes replace, custom attributes merge, tags and contacts are appended (once each).
fn patch_into(person: &mut Value, body: &Value) {
    for field in ATTRIBUTES {
        if let Some(v) = body.get(*field) {
            person[*field] = v.clone();
        }
    }
    if let Some(Value::Object(attributes)) = body.get("customAttributes") {
        if !person["customAttributes"].is_object() {
            person["customAttributes"] = json!({});
        }
        for (k, v) in attributes {
            person["customAttributes"][k] = v.clone();
        }
    }
    if let Some(Value::Array(tags)) = body.get("tags") {
        if !person["tags"].is_array() {
            person["tags"] = json!([]);
        }
        for tag in tags {
            if let Some(list) = person["tags"].as_array_mut() {
                if !list.contains(tag) {
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
                if let Some(l) = list.as_array_mut() {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
        }
    }
}

/// Applies a write to a stored person; whether anything changed (then `modifiedAt` moves).
fn apply(person: &mut Value, body: &Value, full: bool) -> bool {
    let before = person.clone();
    if full {
        replace_into(person, body);
    } else {
        patch_into(person, body);
    }
    let changed = *person != before;
    if changed {
        person["modifiedAt"] = Value::from(now_text());
    }
    changed
}

/// The body as JSON, or the answer for one that is not (v3: `400103`, as documented).
fn parse_body(body: &Bytes, v3: bool) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| {
        if v3 {
            error_v3(400103, "Malformed JSON body, wrong syntax", Vec::new())
        } else {
            error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "Malformed JSON body",
                None,
            )
        }
    })
}

/// A v2 person body: the documented `IamPersonV2` schema, then what People refuses beyond it. v2's 400 lists the
/// problems in `validationErrors`.
fn validate_v2(people: &People, body: &Value) -> Result<(), Response> {
    let mut problems = Map::new();
    for (property, message, _, _) in schema_errors(&PERSON_V2, body) {
        let key = if property.is_empty() {
            "body".to_owned()
        } else {
            property
        };
        problems.insert(key, json!([message]));
    }
    if problems.is_empty() {
        for address in contacts(body, "email", "address") {
            if !valid_email(address) {
                problems.insert(
                    "contactInformation.email.address".into(),
                    json!([format!("invalid email address {address}")]),
                );
            }
        }
        for number in contacts(body, "phone", "number") {
            if !valid_phone(number) {
                problems.insert(
                    "contactInformation.phone.number".into(),
                    json!([format!("invalid phone number {number}")]),
                );
            }
        }
        if let Some(external) = body["externalId"].as_str() {
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
    }
    if problems.is_empty() {
        Ok(())
    } else {
        lock(&people.stats).refused += 1;
        Err(error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Invalid person",
            Some(Value::Object(problems)),
        ))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    page: Option<usize>,
    #[serde(rename = "orderBy")]
    order_by: Option<String>,
    filter: Option<String>,
}

async fn read_persons(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = admit(&people, &headers, Op::Get) {
        return refused;
    }
    let query = match parameters(Op::Get, query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e,
    };
    lock(&people.stats).reads += 1;
    let persons = lock(&people.persons);
    if query.contains_key("identifier") {
        return match find(&persons, &query) {
            Ok(Some(i)) => Json(persons.list[i].clone()).into_response(),
            Ok(None) => not_found(),
            Err(e) => e,
        };
    }
    let number = |name: &str| -> Result<Option<usize>, Response> {
        query
            .get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "BAD_REQUEST",
                        &format!("{name} must be a whole number"),
                        None,
                    )
                })
            })
            .transpose()
    };
    let q = match (number("limit"), number("page")) {
        (Ok(limit), Ok(page)) => ListQuery {
            limit,
            page,
            order_by: query.get("orderBy").cloned(),
            filter: query.get("filter").cloned(),
        },
        (Err(e), _) | (_, Err(e)) => return e,
    };
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
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&people, &headers, Op::Create) {
        return refused;
    }
    if let Err(e) = parameters(Op::Create, query.as_deref()) {
        return e;
    }
    let body = match parse_body(&body, false) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = validate_v2(&people, &body) {
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
    (StatusCode::OK, Json(person)).into_response()
}

/// `POST /people/2/persons/batch` with `{"persons": [...]}` (up to 1000): creates each valid person that does not
/// exist yet. Not in the OpenAPI excerpt: the answer's shape is the simulator's assumption, `{"persons":
/// [created…], "errors": [{"index", "messageId", "text"}]}`.
async fn create_batch(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&people, &headers, Op::Create) {
        return refused;
    }
    let body = match parse_body(&body, false) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(batch) = body["persons"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "send {\"persons\": [...]}",
            None,
        );
    };
    if batch.len() > MAX_BATCH {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "at most 1000 persons per batch",
            None,
        );
    }
    let (mut created, mut errors) = (Vec::new(), Vec::new());
    for (index, person) in batch.iter().enumerate() {
        if validate_v2(&people, person).is_err() {
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

/// v2 `PUT`/`PATCH /people/2/persons?identifier=&type=`: the person found, written; 404 when there is none.
async fn write_v2(
    people: Arc<People>,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
    op: Op,
) -> Response {
    if let Some(refused) = admit(&people, &headers, op) {
        return refused;
    }
    let query = match parameters(op, query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let body = match parse_body(&body, false) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = validate_v2(&people, &body) {
        return e;
    }
    let mut persons = lock(&people.persons);
    match find(&persons, &query) {
        Err(e) => e,
        Ok(Some(i)) => {
            if apply(&mut persons.list[i], &body, op == Op::Update) {
                lock(&people.stats).updates += 1;
            } else {
                lock(&people.stats).unchanged += 1;
            }
            persons.reindex(i);
            Json(persons.list[i].clone()).into_response()
        }
        Ok(None) => not_found(),
    }
}

async fn replace(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    write_v2(people, headers, query, body, Op::Update).await
}

async fn update(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    write_v2(people, headers, query, body, Op::PartialUpdate).await
}

/// `DELETE /people/2/persons?identifier=&type=`: the person found is deleted (`204`); `404` when there is none; a
/// query without `identifier`, with an unknown `type` or with a parameter the operation does not take is `400`.
async fn remove(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = admit(&people, &headers, Op::Delete) {
        return refused;
    }
    let query = match parameters(Op::Delete, query.as_deref()) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let mut persons = lock(&people.persons);
    match find(&persons, &query) {
        Err(e) => e,
        Ok(Some(i)) => {
            persons.remove_at(i);
            lock(&people.stats).deletes += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => not_found(),
    }
}

async fn upsert_patch(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    upsert(people, headers, query, body, Op::UpsertPartial).await
}

async fn upsert_put(
    State(people): State<Arc<People>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    upsert(people, headers, query, body, Op::UpsertFull).await
}

/// The v3 batch upsert: the request is read and checked as a whole (400 when it cannot be), then each person is
/// validated, matched (externalId first, else its first email or phone) and created, updated or left as it was;
/// the 207 says which, by index.
async fn upsert(
    people: Arc<People>,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
    op: Op,
) -> Response {
    if let Some(refused) = admit(&people, &headers, op) {
        return refused;
    }
    if let Err(e) = parameters(op, query.as_deref()) {
        return e;
    }
    let body = match parse_body(&body, true) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if body.get("persons").is_none_or(Value::is_null) {
        return error_v3(
            400104,
            "Missing required property 'persons'",
            vec![json!({"property": "persons", "message": "Required, but value is missing"})],
        );
    }
    // Errors outside a person (not an array, too few or too many) or of a wrong type anywhere (the body is not
    // the documented shape and cannot be read) refuse the request; the rest are the persons' own.
    let mut own: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let mut whole = Vec::new();
    for (property, message, person, shape) in schema_errors(&UPSERT, &body) {
        match person {
            Some(i) if !shape => own.entry(i).or_default().push((property, message)),
            _ => whole.push(json!({"property": property, "message": message})),
        }
    }
    if !whole.is_empty() {
        return error_v3(
            400100,
            "The request body does not match the documented schema",
            whole,
        );
    }
    let batch = body["persons"].as_array().cloned().unwrap_or_default();
    let full = op == Op::UpsertFull;
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    let (mut created, mut updated, mut unchanged, mut refused) = (0, 0, 0, 0);
    {
        let mut persons = lock(&people.persons);
        for (index, person) in batch.iter().enumerate() {
            let mut problems = own.remove(&index).unwrap_or_default();
            if problems.is_empty() {
                problems = person_problems(&people, index, person);
            }
            if !problems.is_empty() {
                refused += 1;
                errors.push(json!({
                    "code": 400100,
                    "message": "One or more properties of the person are invalid",
                    "details": problems.into_iter().map(|(property, message)| json!({"property": property, "message": message})).collect::<Vec<_>>(),
                    "index": index,
                }));
                continue;
            }
            let stored = from_v3(person);
            let found = match stored["externalId"].as_str() {
                Some(external) => persons.position("EXTERNAL_ID", external),
                None => contacts(&stored, "email", "address")
                    .map(|a| ("EMAIL", a))
                    .chain(contacts(&stored, "phone", "number").map(|n| ("PHONE", n)))
                    .find_map(|(kind, identifier)| persons.position(kind, identifier)),
            };
            let (id, status) = match found {
                Some(i) => {
                    let changed = apply(&mut persons.list[i], &stored, full);
                    persons.reindex(i);
                    if changed {
                        updated += 1;
                    } else {
                        unchanged += 1;
                    }
                    (
                        persons.list[i]["id"].clone(),
                        if changed { "UPDATED" } else { "NOT_MODIFIED" },
                    )
                }
                None => {
                    let fresh = fresh(&people, &stored);
                    let id = fresh["id"].clone();
                    persons.push(fresh);
                    created += 1;
                    (id, "CREATED")
                }
            };
            results.push(json!({"id": id, "index": index, "status": status}));
        }
    }
    {
        let mut stats = lock(&people.stats);
        stats.creates += created;
        stats.updates += updated;
        stats.unchanged += unchanged;
        stats.refused += refused;
    }
    let delay = lock(&people.faults).delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    (
        StatusCode::MULTI_STATUS,
        Json(json!({"results": results, "errors": errors})),
    )
        .into_response()
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

/// The counters alone (a benchmark's 100 000 persons make `GET /_sim/people` large).
async fn get_stats(State(people): State<Arc<People>>) -> Json<PeopleStats> {
    Json(lock(&people.stats).clone())
}

/// A change made in People by someone else (feeds People → partner), no limits, in v2's shape: a PATCH of the
/// person with this external id, or a new person when there is none (or no external id: a person the partner
/// never had).
async fn change(State(people): State<Arc<People>>, Json(body): Json<Value>) -> Response {
    let mut persons = lock(&people.persons);
    let found = body["externalId"]
        .as_str()
        .and_then(|id| persons.position("EXTERNAL_ID", id));
    match found {
        Some(i) => {
            patch_into(&mut persons.list[i], &body);
            persons.list[i]["modifiedAt"] = Value::from(now_text());
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

/// A person deleted in People by someone else (`{"externalId": "…"}`): 404 when there is none.
async fn forget(State(people): State<Arc<People>>, Json(body): Json<Value>) -> Response {
    let external = body["externalId"].as_str().unwrap_or_default();
    if lock(&people.persons).remove(external) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}
