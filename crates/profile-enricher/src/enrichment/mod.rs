//! The client of the upstream enrichment APIs ("sources").
//!
//! **Sources.** Without `ENRICHMENT_SOURCES` there is one source, `EXTERNAL_API_URL`,
//! and the answer's `enrichment` is its JSON object verbatim, as it always was. With
//! several declared sources every one is called at once, within the one
//! `EXTERNAL_API_DEADLINE`; `enrichment` merges their objects in declared order (a
//! key already set by an earlier source is kept), and `sources` says how each
//! went: `ok`, `not_found` (it knows nothing of the profile), `failed`, or
//! `skipped` (not called at all). A failed optional source only shows as
//! `failed`; a failed required one fails the request; `not_found`, and a source
//! skipped because the profile lacks a field its request needs, never do. What
//! each source is sent - method, URL and body templates, its own headers - and
//! what is kept of its answer is [`request`]'s. When several required sources fail, the answer is the most severe
//! class of failure - 502 (a source is broken; asking again will not help) over
//! 504 (too slow) over 503 (come back later) - and, within a class, the first
//! declared source's failure.
//!
//! One [`source`] call makes at most `MAX_RETRIES + 1` attempts:
//!
//! - **Retry budget.** Per source, retries may add at most `RETRY_BUDGET_RATIO`
//!   (20 %) of the calls of the last 10 s, plus `RETRY_BUDGET_MIN_PER_SECOND` (3)
//!   per second: tower's `TpsBudget`. So a full outage costs about 1.2 upstream
//!   calls per request, not `MAX_RETRIES + 1`. A retry the budget refuses makes the
//!   failure final at once: 502.
//! - **Circuit breaker.** Per source, see [`breaker`]: while it is open an attempt
//!   is refused without touching the upstream - 503 with `Retry-After` (whole
//!   seconds until the next probe), or `skipped` for an optional source not yet
//!   called.
//! - **Coalescing.** Calls of one source whose request bodies are byte for byte
//!   the same, in flight at once, are one upstream call ([`coalesce`]); each caller
//!   still waits at most until its own deadline, and shares the call's outcome,
//!   failure included. Different bodies are never merged.
//! - **Cache.** With `ENRICHMENT_CACHE_TTL` above 0 (default 0: off), a source's
//!   successful answer to a body is reused for that many seconds (moka, at most
//!   `ENRICHMENT_CACHE_MAX_ENTRIES` answers per source, and
//!   `ENRICHMENT_CACHE_MAX_BYTES` for all sources together, split evenly: keys
//!   and answers weighed by their bytes).
//!
//! - **Pace.** Per source, see [`pace`]: its `SOURCE_<NAME>_RATE_LIMIT`, and the
//!   pause a 429 or 503 with `Retry-After` puts on every request. A call waits
//!   for its turn within its deadline, holding nothing; one whose turn would come
//!   later is refused at once: 503 with `Retry-After`.
//! - **Slot.** An attempt first takes one of the source's `MAX_CONCURRENCY` slots,
//!   waiting at most `MAX_CONCURRENCY_WAIT` (else 503 with `Retry-After`). The slot
//!   is given back as soon as the attempt ends, so a call sleeping before its next
//!   attempt never keeps another request from the upstream.
//! - **Attempt.** Each attempt may take `EXTERNAL_API_TIMEOUT`, body included.
//! - **What is retried.** Transient failures only, as reqwest-retry classifies them:
//!   connect errors, timeouts, dropped connections, 408, 429 and 5xx. A status of
//!   `SOURCE_<NAME>_NOT_FOUND` (default 404 for a declared source) is an answer:
//!   `not_found`. 401 and 403 say the deployment's credentials are wrong: final,
//!   counted, and logged at most once a minute. Other 4xx and 3xx (redirects are
//!   not followed) are final: 502 at once. So is a 2xx whose body is not a JSON
//!   object - asking again would not change the upstream's mind.
//! - **Delays.** Before retry `n` (from 0) we sleep reqwest-retry's
//!   `ExponentialBackoff` delay: `BACKOFF_BASE * 2^n`, capped at [`MAX_BACKOFF`], with
//!   bounded jitter. A `Retry-After` header (seconds or an HTTP date) lengthens the
//!   delay, never shortens it; any other `Retry-After` value is ignored.
//! - **Deadline.** Slot waits, attempts and delays all fit in `EXTERNAL_API_DEADLINE`.
//!   The last attempt is cut short at the deadline, and a delay that would end past
//!   it (however large, even past the end of the clock) is not slept at all: the
//!   call fails at once with 504.
//!
//! The loop lives here rather than in `reqwest_retry::RetryTransientMiddleware`,
//! because that middleware would hold the slot while sleeping and ignores
//! `Retry-After`. The [`ClientWithMiddleware`] (one per HTTP worker thread,
//! shared by every source) still carries the per-attempt telemetry.

mod attempt;
pub mod breaker;
pub mod coalesce;
mod pace;
pub mod request;
mod source;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::Profile;
use reqwest::{StatusCode, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use self::attempt::{AttemptTelemetry, QuietSpanBackend};
use self::breaker::BreakerSettings;
use self::request::UrlTemplate;
use self::source::{Source, SourcePlan};
use crate::config::{SourceSettings, UpstreamSettings};
use crate::metrics::Metrics;

/// The longest pause between two attempts, whatever `BACKOFF_BASE * 2^n` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// An upstream answer larger than this is refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The name of the one source of `EXTERNAL_API_URL` when `ENRICHMENT_SOURCES` is
/// unset (in logs and metrics; it never shows in an answer).
pub const SINGLE_SOURCE: &str = "default";

/// Why a profile could not be enriched. Each variant names a cause a client can act
/// on. Cloneable, because one failed upstream call may be the answer of several
/// coalesced requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnrichmentError {
    #[error("no upstream slot became free within {} s", seconds(.waited))]
    Busy { waited: Duration },
    #[error(
        "the enrichment deadline of {} s passed after {attempts} attempt(s); last failure: {last}",
        seconds(.deadline)
    )]
    DeadlineExceeded {
        deadline: Duration,
        attempts: u32,
        last: String,
    },
    #[error("the upstream still failed after {attempts} attempt(s); last failure: {last}")]
    RetriesExhausted { attempts: u32, last: String },
    /// Retries of this source already add their allowed share of first attempts.
    #[error(
        "the upstream failed {attempts} time(s) and the retry budget is spent; last failure: {last}"
    )]
    RetryBudgetExhausted { attempts: u32, last: String },
    /// The source's circuit breaker is open; `attempts` were made before it opened.
    #[error(
        "the upstream is failing and its circuit breaker is open; next probe in {} s",
        seconds(.retry_after)
    )]
    CircuitOpen {
        retry_after: Duration,
        attempts: u32,
    },
    #[error("the upstream refused the request with status {status}")]
    Rejected { status: StatusCode },
    /// A 401 or 403: the deployment's credentials for the source are wrong.
    /// Never retried; in the Kafka mode the record waits, as in an outage.
    #[error("the upstream refused the enricher's credentials with status {status}")]
    Unauthorized { status: StatusCode },
    /// `SOURCE_<NAME>_RATE_LIMIT` has no turn for this call before the deadline.
    #[error(
        "the source's rate limit has no turn before the deadline; next turn in {} s",
        seconds(.retry_after)
    )]
    RateLimited { retry_after: Duration },
    /// The source asked every caller to wait (`Retry-After` on a 429 or 503)
    /// past the deadline.
    #[error(
        "the upstream asked every caller to wait {} s, past the deadline",
        seconds(.retry_after)
    )]
    Paused { retry_after: Duration },
    #[error("the upstream answer is not a JSON object")]
    NotAnObject,
    #[error("the upstream answer is larger than {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge,
    #[error("the upstream request failed and cannot be retried")]
    Unrecoverable(#[source] Arc<reqwest_middleware::Error>),
    #[error("the profile could not be encoded for the upstream")]
    Encode(#[source] Arc<serde_json::Error>),
    /// A required source's failure, when several sources are declared.
    #[error("source `{name}`: {error}")]
    Source {
        name: String,
        error: Box<EnrichmentError>,
    },
}

impl EnrichmentError {
    /// How long a client should wait before asking again, for the failures that
    /// say "later" (503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EnrichmentError::Busy { waited } => Some(*waited),
            EnrichmentError::CircuitOpen { retry_after, .. }
            | EnrichmentError::RateLimited { retry_after }
            | EnrichmentError::Paused { retry_after } => Some(*retry_after),
            EnrichmentError::Source { error, .. } => error.retry_after(),
            _ => None,
        }
    }

    /// Which of several required sources' failures the answer reports: 502 over
    /// 504 over 503 (see the module's documentation).
    fn severity(&self) -> u8 {
        match self {
            EnrichmentError::Busy { .. }
            | EnrichmentError::CircuitOpen { .. }
            | EnrichmentError::RateLimited { .. }
            | EnrichmentError::Paused { .. } => 1,
            EnrichmentError::DeadlineExceeded { .. } => 2,
            EnrichmentError::RetriesExhausted { .. }
            | EnrichmentError::RetryBudgetExhausted { .. }
            | EnrichmentError::Rejected { .. }
            | EnrichmentError::Unauthorized { .. }
            | EnrichmentError::NotAnObject
            | EnrichmentError::AnswerTooLarge
            | EnrichmentError::Unrecoverable(_) => 3,
            EnrichmentError::Encode(_) => 4,
            EnrichmentError::Source { error, .. } => error.severity(),
        }
    }
}

/// How one source went, as the answer's `sources` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Answered a JSON object, merged into `enrichment`.
    Ok,
    /// Called, and it knows nothing of this profile (`SOURCE_<NAME>_NOT_FOUND`,
    /// or nothing where `_SELECT` points): nothing merged, never a failure.
    #[serde(rename = "not_found")]
    NotFound,
    /// Called, and failed (only an optional source can fail in a 200 answer).
    Failed,
    /// Not called: the profile lacks a field its request needs, or its circuit
    /// breaker is open.
    Skipped,
}

/// What one source made of one profile.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A JSON object to merge into `enrichment`.
    Object(Arc<RawValue>),
    NotFound,
    /// Not called: the profile lacks a field the source's request needs.
    Skipped,
}

/// Each declared source's status, in declared order (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatuses(pub Vec<(String, SourceStatus)>);

impl Serialize for SourceStatuses {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, status) in &self.0 {
            map.serialize_entry(name, status)?;
        }
        map.end()
    }
}

/// `geo=ok risk=ok ads=failed`, for the logs.
impl std::fmt::Display for SourceStatuses {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (name, status)) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { " " };
            write!(formatter, "{separator}{name}={}", status.as_str())?;
        }
        Ok(())
    }
}

/// What the sources answered for one profile.
pub struct Enrichment {
    /// One source's object verbatim, or several merged.
    pub object: Arc<RawValue>,
    /// When several sources are declared, or one that did not answer `ok`.
    pub sources: Option<SourceStatuses>,
}

/// The sources and the HTTP client that calls them. The sources - their slots,
/// breakers, budgets, coalescing and caches - are the process's; the HTTP client
/// (its connection pool) is made once per HTTP worker thread by
/// [`EnrichmentClient::for_worker`], so that a request's upstream connection is
/// driven by the thread serving the request: no wake-ups across threads.
pub struct EnrichmentClient {
    /// `EXTERNAL_API_URL` (or our own `/dummy-enrich`): every source's default.
    url: Url,
    sources: Vec<Arc<Source>>,
    /// Whether the sources were declared (`ENRICHMENT_SOURCES`): then a failure
    /// names its source.
    declared: bool,
    deadline: Duration,
    metrics: Metrics,
    http: ClientWithMiddleware,
    transport: Transport,
}

/// How the HTTP client to the sources is built.
#[derive(Clone)]
struct Transport {
    connect_timeout: Duration,
    idle_per_host: usize,
}

impl Transport {
    fn build(&self, metrics: &Metrics) -> reqwest::Result<ClientWithMiddleware> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.idle_per_host)
            .user_agent(concat!("profile-enricher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut http = ClientBuilder::new(client).with(AttemptTelemetry {
            metrics: metrics.clone(),
        });
        if service_kit::telemetry::tracing_enabled() {
            // A client span per attempt, its trace context in the request's
            // `traceparent`/`tracestate` (off: no span, no header).
            http = http.with(reqwest_tracing::TracingMiddleware::<QuietSpanBackend>::new());
        }
        Ok(http.build())
    }
}

impl EnrichmentClient {
    /// Built once at start-up: the connection pool and every source's slots are
    /// shared by every request of the process. `url` and `token` are the upstream
    /// of the sources that name none (the token is for our own `/dummy-enrich`).
    pub fn new(
        settings: &UpstreamSettings,
        url: Url,
        token: Option<String>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let declared = if settings.sources.is_empty() {
            // The one source of `EXTERNAL_API_URL` answers as it always did:
            // a 404 is a refusal (502), not `not_found`.
            vec![SourceSettings {
                not_found: Vec::new(),
                ..SourceSettings::named(SINGLE_SOURCE)
            }]
        } else {
            settings.sources.clone()
        };
        // The byte bound is the process's: each source's cache gets an even share.
        let cache_max_bytes = settings.enrichment_cache_max_bytes / declared.len().max(1) as u64;
        let plans: Vec<SourcePlan> = declared
            .into_iter()
            .map(|source| {
                let (source_url, source_token) = match source.url {
                    Some(own) => (own, None),
                    None => (UrlTemplate::fixed(url.clone()), token.clone()),
                };
                SourcePlan {
                    name: source.name,
                    required: source.required,
                    method: source.method,
                    url: source_url,
                    body: source.body,
                    headers: source.headers,
                    answer: source.answer,
                    not_found: source.not_found,
                    rate_limit: source.rate_limit,
                    token: source_token,
                    attempt_timeout: source.attempt_timeout.unwrap_or(settings.attempt_timeout),
                    max_retries: source.max_retries.unwrap_or(settings.max_retries),
                    max_concurrency: source.max_concurrency.unwrap_or(settings.max_concurrency),
                    max_concurrency_wait: settings.max_concurrency_wait,
                    backoff_base: settings.backoff_base,
                    deadline: settings.deadline,
                    retry_budget_ratio: settings.retry_budget_ratio,
                    retry_budget_min_per_second: settings.retry_budget_min_per_second,
                    breaker: BreakerSettings {
                        failure_ratio: settings.circuit_breaker_failure_ratio,
                        min_calls: settings.circuit_breaker_min_calls,
                        window: settings.circuit_breaker_window,
                        open_for: settings.circuit_breaker_open_duration,
                        half_open_probes: settings.circuit_breaker_half_open_probes,
                    },
                    cache_ttl: settings.enrichment_cache_ttl,
                    cache_max_entries: settings.enrichment_cache_max_entries,
                    cache_max_bytes,
                }
            })
            .collect();
        let connect_timeout = plans
            .iter()
            .map(|plan| plan.attempt_timeout)
            .max()
            .unwrap_or(settings.attempt_timeout);
        let idle_per_host = plans
            .iter()
            .map(|plan| plan.max_concurrency)
            .max()
            .unwrap_or(settings.max_concurrency);
        let transport = Transport {
            connect_timeout,
            idle_per_host,
        };
        let http = transport.build(&metrics)?;
        let sources = plans
            .into_iter()
            .map(|plan| Arc::new(Source::new(plan, metrics.clone())))
            .collect();
        Ok(Self {
            url,
            sources,
            declared: !settings.sources.is_empty(),
            deadline: settings.deadline,
            metrics,
            http,
            transport,
        })
    }

    /// The same sources through an HTTP client of its own, for one worker
    /// thread (this one's client if a new one cannot be built).
    pub fn for_worker(&self) -> Self {
        let http = self.transport.build(&self.metrics).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot build a worker's upstream client: sharing the process's");
            self.http.clone()
        });
        Self {
            url: self.url.clone(),
            sources: self.sources.clone(),
            declared: self.declared,
            deadline: self.deadline,
            metrics: self.metrics.clone(),
            http,
            transport: self.transport.clone(),
        }
    }

    /// `EXTERNAL_API_URL`, or our own `/dummy-enrich`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Asks every source about `profile` (the answer's `user`) and returns what
    /// they answered.
    #[tracing::instrument(name = "enrich profile", skip_all)]
    pub async fn enrich(&self, profile: &Profile) -> Result<Enrichment, EnrichmentError> {
        let body = serde_json::to_vec(profile).map_err(|e| EnrichmentError::Encode(Arc::new(e)))?;
        let Some(deadline) = later(Instant::now(), self.deadline) else {
            return Err(EnrichmentError::DeadlineExceeded {
                deadline: self.deadline,
                attempts: 0,
                last: String::from("the deadline is beyond the clock"),
            });
        };
        let calls = self
            .sources
            .iter()
            .map(|source| source.enrich(&self.http, profile, &body, deadline));
        let outcomes = futures::future::join_all(calls).await;
        let enrichment = self.combine(outcomes)?;
        match &enrichment.sources {
            Some(statuses) => tracing::info!(sources = %statuses, "profile enriched"),
            None => tracing::info!("profile enriched"),
        }
        Ok(enrichment)
    }

    /// The answer from every source's outcome, in declared order.
    fn combine(
        &self,
        outcomes: Vec<Result<Answer, EnrichmentError>>,
    ) -> Result<Enrichment, EnrichmentError> {
        let several = self.sources.len() > 1;
        let mut statuses = Vec::with_capacity(outcomes.len());
        let mut objects = Vec::with_capacity(outcomes.len());
        let mut failure: Option<EnrichmentError> = None;
        for (source, outcome) in self.sources.iter().zip(outcomes) {
            let status = match outcome {
                Ok(Answer::Object(object)) => {
                    objects.push(object);
                    SourceStatus::Ok
                }
                Ok(Answer::NotFound) => SourceStatus::NotFound,
                Ok(Answer::Skipped) => SourceStatus::Skipped,
                Err(error) => {
                    let status = match error {
                        EnrichmentError::CircuitOpen { attempts: 0, .. } => SourceStatus::Skipped,
                        _ => SourceStatus::Failed,
                    };
                    if source.required
                        && failure
                            .as_ref()
                            .is_none_or(|worst| error.severity() > worst.severity())
                    {
                        failure = Some(if self.declared {
                            EnrichmentError::Source {
                                name: source.name.clone(),
                                error: Box::new(error),
                            }
                        } else {
                            error
                        });
                    }
                    status
                }
            };
            self.metrics
                .source_calls
                .with_label_values(&[source.name.as_str(), status.as_str()])
                .inc();
            statuses.push((source.name.clone(), status));
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // One source that answered: its object verbatim, as always.
        let sources = (several || objects.is_empty()).then_some(SourceStatuses(statuses));
        match objects.as_slice() {
            [object] if !several => Ok(Enrichment {
                object: Arc::clone(object),
                sources,
            }),
            _ => Ok(Enrichment {
                object: merge(&objects)?,
                sources,
            }),
        }
    }
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::NotFound => "not_found",
            SourceStatus::Failed => "failed",
            SourceStatus::Skipped => "skipped",
        }
    }
}

/// One JSON object, its members kept in order; the values stay raw text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The objects' members in order; a key already taken by an earlier object (or
/// earlier in the same object) is skipped. Values are copied as the sources wrote
/// them.
fn merge(objects: &[Arc<RawValue>]) -> Result<Arc<RawValue>, EnrichmentError> {
    let mut merged = String::from("{");
    let mut taken = HashSet::new();
    for object in objects {
        let Members(members) =
            serde_json::from_str(object.get()).map_err(|_| EnrichmentError::NotAnObject)?;
        for (key, value) in members {
            if !taken.insert(key.clone()) {
                continue;
            }
            if merged.len() > 1 {
                merged.push(',');
            }
            merged.push_str(
                &serde_json::to_string(&key).map_err(|e| EnrichmentError::Encode(Arc::new(e)))?,
            );
            merged.push(':');
            merged.push_str(value.get());
        }
    }
    merged.push('}');
    RawValue::from_string(merged)
        .map(Arc::from)
        .map_err(|_| EnrichmentError::NotAnObject)
}

/// `now + wait`, or `None` when that instant is beyond what the clock can hold (a
/// hostile `Retry-After` of 10^19 seconds): never an overflow panic.
fn later(now: Instant, wait: Duration) -> Option<Instant> {
    now.checked_add(wait)
}

fn seconds(duration: &Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(text.to_owned()).unwrap())
    }

    #[test]
    fn merging_keeps_declared_order_and_the_first_source_wins() {
        let merged = merge(&[
            raw(r#"{"b": 1, "a": {"x": [1, 2.50]}}"#),
            raw(r#"{"a": "late", "c": null, "b": 3}"#),
            raw(r#"{}"#),
            raw(r#"{"d\"q": true}"#),
        ])
        .unwrap();
        assert_eq!(
            merged.get(),
            r#"{"b":1,"a":{"x": [1, 2.50]},"c":null,"d\"q":true}"#
        );
    }

    #[test]
    fn merging_nothing_is_an_empty_object() {
        assert_eq!(merge(&[]).unwrap().get(), "{}");
    }

    #[test]
    fn statuses_are_a_json_object_in_declared_order() {
        let statuses = SourceStatuses(vec![
            ("zeta".to_owned(), SourceStatus::Ok),
            ("alpha".to_owned(), SourceStatus::Failed),
            ("mid".to_owned(), SourceStatus::Skipped),
        ]);
        assert_eq!(
            serde_json::to_string(&statuses).unwrap(),
            r#"{"zeta":"ok","alpha":"failed","mid":"skipped"}"#
        );
        assert_eq!(statuses.to_string(), "zeta=ok alpha=failed mid=skipped");
    }

    #[test]
    fn a_broken_source_outranks_a_slow_one_which_outranks_a_busy_one() {
        let busy = EnrichmentError::Busy {
            waited: Duration::from_secs(1),
        };
        let slow = EnrichmentError::DeadlineExceeded {
            deadline: Duration::from_secs(1),
            attempts: 1,
            last: String::new(),
        };
        let broken = EnrichmentError::NotAnObject;
        assert!(broken.severity() > slow.severity());
        assert!(slow.severity() > busy.severity());
    }
}
