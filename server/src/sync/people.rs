//! Writing persons to an account's Infobip People API, as Infobip's published OpenAPI document (People 3.210.0)
//! describes it: batches of persons upserted with `PATCH`/`PUT /people/3/persons/upsert` and each person's outcome
//! read from the 207 by index, or v2's one-person lookup then write. The base URL and key come from the account's
//! settings (the URL held to Infobip's own hosts, since an admin typed it), `Authorization: App <key>`; the
//! documented rate limits are shared by all of an account's runs on this instance, 429 is answered by waiting out
//! `Retry-After`, and 5xx or a lost connection is retried with jittered backoff before the run is paused.

use super::person::Person;
use super::SyncConfig;
use crate::infobip::{error_text, Answer, Call, Transport};
use app::definition::sync::{SyncSpec, WriteMode, PEOPLE_API_KEY, PEOPLE_BASE_URL};
use app::settings::ResolvedSettings;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// One call's deadline; People's person endpoints answer in well under a second.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A batch upsert's deadline: up to 1000 persons in one call.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// 5xx or connection failures of one write before the run pauses.
const MAX_FAILED_TRIES: u32 = 4;
/// 429s of one write before the run pauses (the limiter should make them rare).
const MAX_THROTTLED_TRIES: u32 = 20;
/// The longest `Retry-After` honoured inside a run; longer pauses the run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A 207 for 1000 persons, or a page of persons with their attributes, is well under this.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the Infobip API base URL and API key for People are not set: an admin saves them on the configuration page")]
    NotSet,
    #[error("the Infobip API base URL must be an https:// address of Infobip ({0})")]
    NotInfobip(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// People refused this record or batch (400/422): recorded with its reason, the run goes on.
    #[error("People refused the person: {0}")]
    Invalid(String),
    /// The key is wrong or lacks People permissions (401/403): the run stops until an admin fixes it.
    #[error("People refused the API key (HTTP {0}): check the API key with People permissions on the configuration page")]
    Refused(u16),
    /// People is down, too slow, or keeps limiting: the run pauses and resumes later.
    #[error("People is not available: {0}")]
    Outage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// Where an account's persons go. `Debug` leaves the key out.
#[derive(Clone)]
pub struct PeopleTarget {
    base: url::Url,
    key: String,
}

impl std::fmt::Debug for PeopleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeopleTarget")
            .field("host", &self.base.host_str())
            .finish_non_exhaustive()
    }
}

impl PeopleTarget {
    /// Where People is, for the audit log (never the key).
    pub fn host(&self) -> String {
        match (self.base.host_str(), self.base.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => String::new(),
        }
    }

    pub fn from_settings(
        settings: &ResolvedSettings,
        config: &SyncConfig,
    ) -> Result<Self, TargetError> {
        let text = |key| {
            settings
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
        };
        let (base, key) = (text(PEOPLE_BASE_URL), text(PEOPLE_API_KEY));
        if base.is_empty() || key.is_empty() {
            return Err(TargetError::NotSet);
        }
        let url = url::Url::parse(base).map_err(|_| TargetError::NotInfobip("not a URL".into()))?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
        let allowed = if loopback {
            config.allow_loopback && matches!(url.scheme(), "http" | "https")
        } else {
            url.scheme() == "https"
                && url.username().is_empty()
                && config
                    .hosts
                    .iter()
                    .any(|pattern| match pattern.strip_prefix("*.") {
                        Some(suffix) => host.ends_with(&format!(".{suffix}")),
                        None => host == *pattern,
                    })
        };
        if !allowed {
            return Err(TargetError::NotInfobip(if url.scheme() == "https" {
                "this host is not an Infobip API host".into()
            } else {
                "plain http".into()
            }));
        }
        Ok(PeopleTarget {
            base: url,
            key: key.to_owned(),
        })
    }
}

/// The rate limits per account and People operation, shared by all runs in this instance, and the 429 count.
/// Infobip throttles each operation on its own (People 3.210.0's `x-throttling-info`): the v3 upsert and the v2
/// GET, PUT and PATCH at 5 requests/s, the v2 POST at 10/s.
pub struct Limits {
    reads: DefaultKeyedRateLimiter<(String, &'static str)>,
    writes: DefaultKeyedRateLimiter<(String, &'static str)>,
    creates: DefaultKeyedRateLimiter<(String, &'static str)>,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

impl Limits {
    pub fn new(config: &SyncConfig, metrics: Arc<crate::ops::metrics::Metrics>) -> Arc<Self> {
        // Evenly spaced, no burst: 5/s is one call every 200 ms, so no one-second window People counts in ever
        // holds a sixth (a burst of 5 after a pause, then the steady pace, does, and each 429 costs a second).
        let quota = |n: u32| {
            Quota::per_second(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::MIN)
        };
        Arc::new(Limits {
            reads: RateLimiter::keyed(quota(config.reads_per_sec)),
            writes: RateLimiter::keyed(quota(config.writes_per_sec)),
            creates: RateLimiter::keyed(quota(config.creates_per_sec)),
            metrics,
        })
    }
}

/// What People did with one person of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonOutcome {
    Written(Written),
    /// People holds the person as sent already (the v3 upsert's `NOT_MODIFIED`).
    Unchanged,
    /// People refused this person: Infobip's message and the offending properties.
    Refused(String),
}

/// The v3 upsert path, the same for PATCH (partial) and PUT (full): no query parameters, persons are matched on
/// the identifiers inside the body.
const UPSERT_PATH: &[&str] = &["people", "3", "persons", "upsert"];
const PERSONS_V2_PATH: &[&str] = &["people", "2", "persons"];

/// A v3 answer: `{"results": [{id, index, status}], "errors": [{code, message, details, index}]}` (207), or a
/// whole-request error `{code, message, details}`. The document's schema declares `results` and `errors` as single
/// objects but every example gives arrays; both are read.
#[derive(Debug, Default, serde::Deserialize)]
struct UpsertAnswer {
    #[serde(default, deserialize_with = "one_or_many")]
    results: Vec<UpsertResult>,
    #[serde(default, deserialize_with = "one_or_many")]
    errors: Vec<V3Error>,
}

#[derive(Debug, serde::Deserialize)]
struct UpsertResult {
    index: Option<usize>,
    status: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct V3Error {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Vec<V3Detail>,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Debug, serde::Deserialize)]
struct V3Detail {
    #[serde(default)]
    property: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Some(one) => serde_json::from_value(one).into_iter().collect(),
    })
}

impl V3Error {
    /// Infobip's message with the properties it names: `One or more properties of the person are invalid
    /// (persons[0].contactInformation[0].identifier: Email address is invalid)`.
    fn reason(&self) -> String {
        let mut text = self
            .message
            .clone()
            .unwrap_or_else(|| format!("error {}", code_text(&self.code)));
        let details: Vec<String> = self
            .details
            .iter()
            .map(|d| match (&d.property, &d.message) {
                (Some(p), Some(m)) => format!("{p}: {m}"),
                (Some(p), None) => p.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            })
            .filter(|d| !d.is_empty())
            .collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join("; ")));
        }
        text
    }
}

fn code_text(code: &Value) -> String {
    match code {
        Value::String(s) => s.clone(),
        Value::Null => "without a code".into(),
        other => other.to_string(),
    }
}

/// A whole-request refusal's words: v3's `{code, message, details}`, else v2's `requestError` (401, 403 and 429
/// keep v2's shape on v3 too), else the start of the body.
fn refusal_text(body: &[u8]) -> String {
    match serde_json::from_slice::<V3Error>(body) {
        Ok(e) if e.message.is_some() => e.reason(),
        _ => error_text(body),
    }
}

pub struct PeopleWriter<'a> {
    pub http: &'a reqwest::Client,
    pub limits: &'a Limits,
    pub target: &'a PeopleTarget,
    pub account_key: &'a str,
    pub sync: &'a SyncSpec,
    /// Where a sync run's People calls are counted (the account's activity); `None` elsewhere.
    pub activity: Option<&'a crate::activity::Activity>,
}

impl PeopleWriter<'_> {
    /// Writes a batch of persons the way `[sync] write` says, one outcome per person in order. `Err` is what stops
    /// the whole batch (a refused key, an outage); a person People refuses is that person's outcome.
    pub async fn write_batch(&self, persons: &[&Person]) -> Result<Vec<PersonOutcome>, WriteError> {
        match self.sync.write {
            WriteMode::Upsert => self.upsert(persons).await,
            WriteMode::LookupThenWrite => {
                let mut outcomes = Vec::with_capacity(persons.len());
                for person in persons {
                    outcomes.push(match self.lookup_then_write(person).await {
                        Ok(written) => PersonOutcome::Written(written),
                        Err(WriteError::Invalid(reason)) => PersonOutcome::Refused(reason),
                        Err(e) => return Err(e),
                    });
                }
                Ok(outcomes)
            }
        }
    }

    /// `PATCH` (or `PUT` with `replace`) `/people/3/persons/upsert` with `{"persons": [...]}`: the 207 says, by
    /// index, what became of each person.
    async fn upsert(&self, persons: &[&Person]) -> Result<Vec<PersonOutcome>, WriteError> {
        if persons.is_empty() {
            return Ok(Vec::new());
        }
        let method = if self.sync.replace {
            reqwest::Method::PUT
        } else {
            reqwest::Method::PATCH
        };
        let body = serde_json::json!({
            "persons": persons.iter().map(|p| p.body.clone()).collect::<Vec<_>>()
        });
        let body = match self.send(method, UPSERT_PATH, &[], Some(&body)).await {
            Ok((_, body)) => body,
            // The whole batch refused (400): each of its persons fails with People's reason.
            Err(WriteError::Invalid(reason)) => {
                let reason = format!("the whole batch was refused: HTTP {reason}");
                return Ok(vec![PersonOutcome::Refused(reason); persons.len()]);
            }
            Err(e) => return Err(e),
        };
        let answer: UpsertAnswer = serde_json::from_slice(&body).map_err(|_| {
            WriteError::Outage("People's upsert answer is not the documented JSON".into())
        })?;
        let mut outcomes =
            vec![
                PersonOutcome::Refused("People gave no outcome for this person".into());
                persons.len()
            ];
        for result in answer.results {
            let Some(slot) = result.index.and_then(|i| outcomes.get_mut(i)) else {
                continue;
            };
            *slot = match result.status.as_deref() {
                Some("CREATED") => PersonOutcome::Written(Written::Created),
                Some("UPDATED") => PersonOutcome::Written(Written::Updated),
                Some("NOT_MODIFIED") => PersonOutcome::Unchanged,
                other => PersonOutcome::Refused(format!(
                    "People answered an unknown status {}",
                    other.unwrap_or("(none)")
                )),
            };
        }
        // An error for an index wins over a result for it: a person People both took and refused is not counted
        // as written.
        for error in answer.errors {
            if let Some(slot) = error.index.and_then(|i| outcomes.get_mut(i)) {
                *slot = PersonOutcome::Refused(error.reason());
            }
        }
        Ok(outcomes)
    }

    /// v2, one person: `GET /people/2/persons?identifier=&type=`, then `PATCH`/`PUT` the one found (same query) or
    /// `POST` a new one, with v2's body (`contactInformation: {email: [{address}], phone: [{number}]}`).
    async fn lookup_then_write(&self, person: &Person) -> Result<Written, WriteError> {
        let identity = [
            ("identifier", person.key.as_str()),
            ("type", self.sync.identifier.as_str()),
        ];
        let method = if self.sync.replace {
            reqwest::Method::PUT
        } else {
            reqwest::Method::PATCH
        };
        let body = person.v2_body();
        let found = self
            .send(reqwest::Method::GET, PERSONS_V2_PATH, &identity, None)
            .await;
        match found {
            Ok(_) => {
                self.send(method, PERSONS_V2_PATH, &identity, Some(&body))
                    .await?;
                Ok(Written::Updated)
            }
            Err(WriteError::Invalid(e)) if e.starts_with("404") => {
                self.send(reqwest::Method::POST, PERSONS_V2_PATH, &[], Some(&body))
                    .await?;
                Ok(Written::Created)
            }
            Err(e) => Err(e),
        }
    }

    /// One page (from 1) of persons modified at or after `since`, oldest first: People → partner's source.
    pub async fn changed(
        &self,
        since: Option<&str>,
        page: u64,
        limit: usize,
    ) -> Result<Vec<Value>, WriteError> {
        let (page, limit) = (page.to_string(), limit.to_string());
        let filter = since.map(|at| serde_json::json!({"modifiedAt": {"#gte": at}}).to_string());
        let mut query = vec![
            ("limit", limit.as_str()),
            ("page", page.as_str()),
            ("orderBy", "modifiedAt:asc"),
        ];
        if let Some(filter) = &filter {
            query.push(("filter", filter));
        }
        let (_, body) = self
            .send(
                reqwest::Method::GET,
                &["people", "2", "persons"],
                &query,
                None,
            )
            .await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| WriteError::Outage("People's person list is not JSON".into()))?;
        match answer.get("persons") {
            Some(Value::Array(persons)) => Ok(persons.clone()),
            _ => Err(WriteError::Outage(
                "People's person list has no `persons` array".into(),
            )),
        }
    }

    /// The person People holds under `key` (by `[sync] identifier`), if any.
    pub async fn person(&self, key: &str) -> Result<Option<Value>, WriteError> {
        let identity = [("identifier", key), ("type", self.sync.identifier.as_str())];
        match self
            .send(
                reqwest::Method::GET,
                &["people", "2", "persons"],
                &identity,
                None,
            )
            .await
        {
            Ok((_, body)) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|_| WriteError::Outage("People's person is not JSON".into())),
            Err(WriteError::Invalid(e)) if e.starts_with("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `tag` to the person People holds under `key`, with v2's partial update (`PATCH /people/2/persons?
    /// identifier=&type=` with `{"tags": [tag]}`: "Tags in the request are appended to the profile tag list", as
    /// People 3.210.0 documents operation `partial-person-update`). `false`: People has no such person.
    pub async fn tag(&self, key: &str, tag: &str) -> Result<bool, WriteError> {
        let identity = [("identifier", key), ("type", self.sync.identifier.as_str())];
        let body = serde_json::json!({ "tags": [tag] });
        match self
            .send(
                reqwest::Method::PATCH,
                PERSONS_V2_PATH,
                &identity,
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(WriteError::Invalid(e)) if e.starts_with("404") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the person People holds under `key`: `DELETE /people/2/persons?identifier=&type=` (Infobip's "Delete
    /// a person"; not in the reference excerpt of the OpenAPI document, so its query is taken to be that of v2's
    /// other one-person operations, and any 2xx is success). `false`: People has no such person.
    pub async fn delete(&self, key: &str) -> Result<bool, WriteError> {
        let identity = [("identifier", key), ("type", self.sync.identifier.as_str())];
        match self
            .send(reqwest::Method::DELETE, PERSONS_V2_PATH, &identity, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(WriteError::Invalid(e)) if e.starts_with("404") => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, bytes::Bytes), WriteError> {
        let url = crate::infobip::api_url(&self.target.base, path, query)
            .ok_or_else(|| WriteError::Outage("the People base URL cannot take a path".into()))?;
        // Each operation has its own documented limit, so each has its own bucket per account.
        let (limiter, operation) = match (&method, path.get(1).copied()) {
            (&reqwest::Method::GET, _) => (&self.limits.reads, "get"),
            (&reqwest::Method::POST, _) => (&self.limits.creates, "create"),
            (&reqwest::Method::DELETE, _) => (&self.limits.writes, "delete"),
            (m, Some("3")) if m == reqwest::Method::PUT => (&self.limits.writes, "upsert-full"),
            (_, Some("3")) => (&self.limits.writes, "upsert-partial"),
            (m, _) if m == reqwest::Method::PUT => (&self.limits.writes, "update"),
            _ => (&self.limits.writes, "partial-update"),
        };
        let bucket = (self.account_key.to_owned(), operation);
        let timeout = if operation.starts_with("upsert") {
            BATCH_TIMEOUT
        } else {
            CALL_TIMEOUT
        };
        let (mut failed, mut throttled) = (0u32, 0u32);
        let started = std::time::Instant::now();
        let result = async {
            loop {
                limiter.until_key_ready(&bucket).await;
                let outcome = crate::infobip::call(
                    self.http,
                    Call {
                        method: method.clone(),
                        url: url.clone(),
                        scheme: "App",
                        credential: &self.target.key,
                        body,
                        timeout,
                        max_bytes: MAX_ANSWER_BYTES,
                    },
                )
                .await;
                let cause = match outcome {
                    Ok(Answer {
                        status: status @ 200..=299,
                        body,
                        ..
                    }) => return Ok((status, body)),
                    Ok(Answer {
                        status: 429,
                        retry_after,
                        ..
                    }) => {
                        self.limits.metrics.sync_throttled();
                        throttled += 1;
                        let wait = Duration::from_secs(retry_after.unwrap_or(1));
                        if throttled > MAX_THROTTLED_TRIES || wait > MAX_RETRY_AFTER {
                            return Err(WriteError::Outage(format!(
                                "People keeps answering 429 (Retry-After {} s)",
                                wait.as_secs()
                            )));
                        }
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Ok(Answer {
                        status: status @ (401 | 403),
                        ..
                    }) => return Err(WriteError::Refused(status)),
                    Ok(Answer {
                        status: status @ 400..=499,
                        body,
                        ..
                    }) => {
                        return Err(WriteError::Invalid(format!(
                            "{status} {}",
                            refusal_text(&body)
                        )))
                    }
                    Ok(Answer { status, .. }) => format!("HTTP {status}, {} times", failed + 1),
                    Err(Transport::BadCredential) => return Err(WriteError::Refused(401)),
                    Err(Transport::TooLarge(max)) => {
                        return Err(WriteError::Outage(format!(
                            "People's answer is larger than {max} bytes"
                        )))
                    }
                    Err(Transport::Timeout) => {
                        format!("People did not answer within {} s", timeout.as_secs())
                    }
                    Err(Transport::Failed(cause)) => cause,
                };
                failed += 1;
                if failed >= MAX_FAILED_TRIES {
                    return Err(WriteError::Outage(cause));
                }
                backoff(failed).await;
            }
        }
        .await;
        if let Some(activity) = self.activity {
            let error = result
                .as_ref()
                .err()
                .cloned()
                .map(crate::errors::ApiError::People);
            let mut call = crate::activity::CallRecord::of(
                self.account_key,
                crate::activity::Surface::Sync,
                operation,
                started.elapsed(),
                error.as_ref(),
            );
            call.upstream = crate::activity::Upstream::People;
            activity.record(&call);
        }
        result
    }
}

/// 200 ms, 400 ms, 800 ms … with ±50 % jitter, so instances that failed together do not retry together.
async fn backoff(attempt: u32) {
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    let jittered = rand::thread_rng().gen_range(base / 2..=base + base / 2);
    tokio::time::sleep(Duration::from_millis(jittered)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    /// A People that answers every upsert with `status` and `body`, and remembers what it was sent.
    async fn people_answering(
        status: u16,
        body: Value,
    ) -> (url::Url, Arc<std::sync::Mutex<Vec<Value>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = seen.clone();
        let app = axum::Router::new().route(
            "/people/3/persons/upsert",
            axum::routing::patch(move |axum::Json(sent): axum::Json<Value>| {
                let (seen, body) = (kept.clone(), body.clone());
                async move {
                    seen.lock().unwrap().push(sent);
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url::Url::parse(&base).unwrap(), seen)
    }

    fn person(key: &str) -> Person {
        Person {
            body: json!({"externalId": key}),
            key: key.to_owned(),
            digest: String::new(),
        }
    }

    async fn upsert(status: u16, answer: Value, keys: &[&str]) -> (Vec<PersonOutcome>, Vec<Value>) {
        let (base, seen) = people_answering(status, answer).await;
        let config = SyncConfig {
            reads_per_sec: 1000,
            writes_per_sec: 1000,
            creates_per_sec: 1000,
            batch_size: 1000,
            hosts: vec![],
            allow_loopback: true,
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(50),
            pause: Duration::ZERO,
            worker: false,
            max_pages: SyncConfig::MAX_PAGES,
            max_run: SyncConfig::MAX_RUN,
            failures_kept: SyncConfig::FAILURES_KEPT,
            max_page_records: SyncConfig::MAX_PAGE_RECORDS,
            delete_max_percent: SyncConfig::DELETE_MAX_PERCENT,
        };
        let limits = Limits::new(&config, Arc::new(crate::ops::metrics::Metrics::new()));
        let sync: SyncSpec =
            app::definition::AppDefinition::from_toml(app::definition::BUNDLED_EXAMPLE)
                .unwrap()
                .sync
                .unwrap();
        let target = PeopleTarget {
            base,
            key: "k".into(),
        };
        let writer = PeopleWriter {
            http: &reqwest::Client::new(),
            limits: &limits,
            target: &target,
            account_key: "a",
            sync: &sync,
            activity: None,
        };
        let persons: Vec<Person> = keys.iter().map(|k| person(k)).collect();
        let refs: Vec<&Person> = persons.iter().collect();
        let outcomes = writer.write_batch(&refs).await.unwrap();
        let sent = seen.lock().unwrap().clone();
        (outcomes, sent)
    }

    #[tokio::test]
    async fn each_persons_outcome_comes_from_the_207_by_index() {
        let (outcomes, sent) = upsert(
            207,
            json!({
                "results": [{"id": 1, "index": 2, "status": "NOT_MODIFIED"}, {"id": 2, "index": 0, "status": "CREATED"}],
                "errors": [{"code": 400100, "message": "One or more properties of the person are invalid",
                            "details": [{"property": "persons[1].externalId", "message": "Too long"}], "index": 1}],
            }),
            &["a", "b", "c", "d"],
        )
        .await;
        assert_eq!(
            sent,
            [
                json!({"persons": [{"externalId": "a"}, {"externalId": "b"}, {"externalId": "c"}, {"externalId": "d"}]})
            ]
        );
        assert_eq!(
            outcomes,
            [
                PersonOutcome::Written(Written::Created),
                PersonOutcome::Refused(
                    "One or more properties of the person are invalid (persons[1].externalId: Too long)".into()
                ),
                PersonOutcome::Unchanged,
                PersonOutcome::Refused("People gave no outcome for this person".into()),
            ]
        );
        // The schema's single objects (not the examples' arrays) are read too.
        let (outcomes, _) = upsert(
            207,
            json!({"results": {"id": 1, "index": 0, "status": "UPDATED"}}),
            &["a"],
        )
        .await;
        assert_eq!(outcomes, [PersonOutcome::Written(Written::Updated)]);
    }

    #[tokio::test]
    async fn a_refused_batch_fails_each_of_its_persons() {
        let (outcomes, _) = upsert(
            400,
            json!({"code": 400104, "message": "Missing required property 'persons'",
                   "details": [{"property": "persons", "message": "Required, but value is missing"}]}),
            &["a", "b"],
        )
        .await;
        let reason = "the whole batch was refused: HTTP 400 Missing required property 'persons' \
                      (persons: Required, but value is missing)";
        assert_eq!(
            outcomes,
            [
                PersonOutcome::Refused(reason.into()),
                PersonOutcome::Refused(reason.into())
            ]
        );
    }
}
