//! Writing persons to an account's Infobip People API: the base URL and key from the account's settings (the
//! URL held to Infobip's own hosts, since an admin typed it), `Authorization: App <key>`, the People rate limits
//! shared by all of an account's runs on this instance, 429 answered by waiting out `Retry-After`, and 5xx or a
//! lost connection retried with jittered backoff before the run is paused.

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
/// 5xx or connection failures of one write before the run pauses.
const MAX_FAILED_TRIES: u32 = 4;
/// 429s of one write before the run pauses (the limiter should make them rare).
const MAX_THROTTLED_TRIES: u32 = 20;
/// The longest `Retry-After` honoured inside a run; longer pauses the run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A page of 100 persons with their attributes is well under this.
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
    /// People refused this record (400/422): recorded with its reason, the run goes on.
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

/// The rate limits per account and kind of call, shared by all runs in this instance, and the 429 count.
pub struct Limits {
    reads: DefaultKeyedRateLimiter<String>,
    writes: DefaultKeyedRateLimiter<String>,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

impl Limits {
    pub fn new(config: &SyncConfig, metrics: Arc<crate::ops::metrics::Metrics>) -> Arc<Self> {
        let quota =
            |n: u32| Quota::per_second(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Arc::new(Limits {
            reads: RateLimiter::keyed(quota(config.reads_per_sec)),
            writes: RateLimiter::keyed(quota(config.writes_per_sec)),
            metrics,
        })
    }
}

pub struct PeopleWriter<'a> {
    pub http: &'a reqwest::Client,
    pub limits: &'a Limits,
    pub target: &'a PeopleTarget,
    pub account_key: &'a str,
    pub sync: &'a SyncSpec,
}

impl PeopleWriter<'_> {
    /// Creates or updates one person, the way `[sync] write` says.
    pub async fn write(&self, person: &Person) -> Result<Written, WriteError> {
        let identity = [
            ("identifier", person.key.as_str()),
            ("type", self.sync.identifier.as_str()),
        ];
        let method = if self.sync.replace {
            reqwest::Method::PUT
        } else {
            reqwest::Method::PATCH
        };
        match self.sync.write {
            WriteMode::Upsert => {
                let (status, _) = self
                    .send(
                        method,
                        &["people", "3", "persons", "upsert"],
                        &identity,
                        Some(&person.body),
                    )
                    .await?;
                Ok(if status == 201 {
                    Written::Created
                } else {
                    Written::Updated
                })
            }
            WriteMode::LookupThenWrite => {
                let found = self
                    .send(
                        reqwest::Method::GET,
                        &["people", "2", "persons"],
                        &identity,
                        None,
                    )
                    .await;
                match found {
                    Ok(_) => {
                        self.send(
                            method,
                            &["people", "2", "persons"],
                            &identity,
                            Some(&person.body),
                        )
                        .await?;
                        Ok(Written::Updated)
                    }
                    Err(WriteError::Invalid(e)) if e.starts_with("404") => {
                        self.send(
                            reqwest::Method::POST,
                            &["people", "2", "persons"],
                            &[],
                            Some(&person.body),
                        )
                        .await?;
                        Ok(Written::Created)
                    }
                    Err(e) => Err(e),
                }
            }
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

    async fn send(
        &self,
        method: reqwest::Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, bytes::Bytes), WriteError> {
        let url = crate::infobip::api_url(&self.target.base, path, query)
            .ok_or_else(|| WriteError::Outage("the People base URL cannot take a path".into()))?;
        let limiter = if method == reqwest::Method::GET {
            &self.limits.reads
        } else {
            &self.limits.writes
        };
        let (mut failed, mut throttled) = (0u32, 0u32);
        loop {
            limiter.until_key_ready(&self.account_key.to_owned()).await;
            let outcome = crate::infobip::call(
                self.http,
                Call {
                    method: method.clone(),
                    url: url.clone(),
                    scheme: "App",
                    credential: &self.target.key,
                    body,
                    timeout: CALL_TIMEOUT,
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
                        error_text(&body)
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
                    format!("People did not answer within {} s", CALL_TIMEOUT.as_secs())
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
}

/// 200 ms, 400 ms, 800 ms … with ±50 % jitter, so instances that failed together do not retry together.
async fn backoff(attempt: u32) {
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    let jittered = rand::thread_rng().gen_range(base / 2..=base + base / 2);
    tokio::time::sleep(Duration::from_millis(jittered)).await;
}
