//! One named upstream: its cache, its in-flight calls, and for each call the retry
//! loop with its pace, slots, retry budget and circuit breaker (see the parent
//! module).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use domain::Profile;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy};
use tokio::sync::{Semaphore, SemaphorePermit};
use tower::retry::budget::{Budget, TpsBudget};

use futures::FutureExt;

use super::attempt::{AttemptError, Target, attempt};
use super::breaker::{BreakerSettings, BreakerState, CircuitBreaker};
use super::coalesce::{Coalescer, Role};
use super::pace::{Pace, Refusal};
use super::request::{AnswerShape, BodyTemplate, Method, UrlTemplate};
use super::{Answer, EnrichmentError, MAX_BACKOFF, later};
use crate::config::RETRY_BUDGET_WINDOW;
use crate::metrics::Metrics;

/// A source's settings once every default is filled in.
pub(super) struct SourcePlan {
    pub name: String,
    pub required: bool,
    pub method: Method,
    pub url: UrlTemplate,
    pub body: BodyTemplate,
    /// The source's own headers (an API key), values marked sensitive.
    pub headers: HeaderMap,
    pub answer: AnswerShape,
    /// Statuses that mean "nothing known of this profile".
    pub not_found: Vec<StatusCode>,
    /// Calls per second at most, from the whole process.
    pub rate_limit: Option<f64>,
    pub token: Option<String>,
    pub attempt_timeout: Duration,
    pub max_retries: u32,
    pub max_concurrency: usize,
    pub max_concurrency_wait: Duration,
    pub backoff_base: Duration,
    /// `EXTERNAL_API_DEADLINE`, named in 504 answers.
    pub deadline: Duration,
    pub retry_budget_ratio: f32,
    pub retry_budget_min_per_second: u32,
    pub breaker: BreakerSettings,
    /// `ENRICHMENT_CACHE_TTL`; zero means no cache.
    pub cache_ttl: Duration,
    pub cache_max_entries: u64,
    /// This source's share of `ENRICHMENT_CACHE_MAX_BYTES`.
    pub cache_max_bytes: u64,
}

type Outcome = Result<Answer, EnrichmentError>;

/// Answers (found or not) by request, for `ENRICHMENT_CACHE_TTL`, bounded by
/// weight: see [`answer_cache`].
type AnswerCache = moka::future::Cache<Arc<[u8]>, Answer>;

/// What a cache entry costs beyond its key and answer bytes: moka's
/// bookkeeping (its entry, access and write-order nodes, timestamps) and our
/// pointers, estimated.
const ENTRY_OVERHEAD: u64 = 256;

/// A cache of at most `max_bytes` (keys, answers and [`ENTRY_OVERHEAD`] per
/// entry) and `max_entries` answers: every entry weighs its bytes, and at
/// least `max_bytes / max_entries`, so that neither bound can be passed.
/// moka enforces the bound at its housekeeping (every 64 writes, or 0.3 s),
/// so the newest answers may sit beyond it for that long.
fn answer_cache(ttl: Duration, max_bytes: u64, max_entries: u64) -> AnswerCache {
    let floor = max_bytes.div_ceil(max_entries.max(1));
    moka::future::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(move |key: &Arc<[u8]>, answer: &Answer| weight(key, answer, floor))
        .time_to_live(ttl)
        .build()
}

/// An entry's weight in bytes, at least `floor`; saturates at moka's `u32`.
fn weight(key: &[u8], answer: &Answer, floor: u64) -> u32 {
    let answer = match answer {
        Answer::Object(object) => object.get().len(),
        Answer::NotFound | Answer::Skipped => 0,
    };
    let bytes = (key.len() as u64)
        .saturating_add(answer as u64)
        .saturating_add(ENTRY_OVERHEAD);
    u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
}

/// Wrong credentials are logged at most this often per source.
const CREDENTIALS_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One call of a source for one profile, once its templates are filled.
pub(super) struct Call {
    pub url: Url,
    /// `None`: no body (GET).
    pub body: Option<Arc<[u8]>>,
}

enum SlotError {
    Busy,
    OutOfTime,
}

pub(super) struct Source {
    pub name: String,
    pub required: bool,
    method: Method,
    url: UrlTemplate,
    body: BodyTemplate,
    headers: HeaderMap,
    answer: AnswerShape,
    not_found: Vec<StatusCode>,
    token: Option<String>,
    attempt_timeout: Duration,
    max_concurrency_wait: Duration,
    pace: Pace,
    /// When wrong credentials were last logged.
    credentials_logged: Mutex<Option<Instant>>,
    deadline: Duration,
    backoff: ExponentialBackoff,
    slots: Semaphore,
    /// Every call deposits, every retry withdraws (tower's, after Finagle's).
    retry_budget: TpsBudget,
    breaker: CircuitBreaker,
    in_flight: Coalescer<Outcome>,
    cache: Option<AnswerCache>,
    metrics: Metrics,
}

impl Source {
    pub(super) fn new(plan: SourcePlan, metrics: Metrics) -> Self {
        let backoff = ExponentialBackoff::builder()
            .retry_bounds(plan.backoff_base, plan.backoff_base.max(MAX_BACKOFF))
            .jitter(Jitter::Bounded)
            .base(2)
            .build_with_max_retries(plan.max_retries);
        metrics
            .circuit_state
            .with_label_values(&[plan.name.as_str()])
            .set(BreakerState::Closed.gauge());
        let on_transition = {
            let (name, metrics) = (plan.name.clone(), metrics.clone());
            Box::new(move |from: BreakerState, to: BreakerState| {
                metrics
                    .circuit_state
                    .with_label_values(&[name.as_str()])
                    .set(to.gauge());
                metrics
                    .circuit_transitions
                    .with_label_values(&[name.as_str(), to.as_str()])
                    .inc();
                if to == BreakerState::Open {
                    tracing::warn!(source = %name, from = from.as_str(), to = to.as_str(),
                        "circuit breaker state changed");
                } else {
                    tracing::info!(source = %name, from = from.as_str(), to = to.as_str(),
                        "circuit breaker state changed");
                }
            })
        };
        let breaker = CircuitBreaker::new(plan.breaker, Instant::now(), on_transition);
        let cache = (!plan.cache_ttl.is_zero())
            .then(|| answer_cache(plan.cache_ttl, plan.cache_max_bytes, plan.cache_max_entries));
        Self {
            name: plan.name,
            required: plan.required,
            method: plan.method,
            url: plan.url,
            body: plan.body,
            headers: plan.headers,
            answer: plan.answer,
            not_found: plan.not_found,
            token: plan.token,
            attempt_timeout: plan.attempt_timeout,
            max_concurrency_wait: plan.max_concurrency_wait,
            pace: Pace::new(plan.rate_limit),
            credentials_logged: Mutex::new(None),
            deadline: plan.deadline,
            backoff,
            slots: Semaphore::new(plan.max_concurrency),
            // The settings are checked at start-up against TpsBudget's own bounds
            // (ratio 0..=1, floor below i32::MAX, window 1..=60 s).
            retry_budget: TpsBudget::new(
                RETRY_BUDGET_WINDOW,
                plan.retry_budget_min_per_second,
                plan.retry_budget_ratio,
            ),
            breaker,
            in_flight: Coalescer::new(),
            cache,
            metrics,
        }
    }

    /// This source's call for `profile`, its templates filled (`user` is the
    /// whole profile, already encoded); `None` when the profile lacks a field
    /// the call needs.
    fn prepare(&self, profile: &Profile, user: &[u8]) -> Option<Call> {
        let url = match self.url.as_fixed() {
            Some(url) => url.clone(),
            None => self.url.fill(profile)?,
        };
        let body = match (self.method, &self.body) {
            (Method::Get, _) => None,
            (Method::Post, BodyTemplate::WholeUser) => Some(Arc::from(user)),
            (Method::Post, template) => Some(Arc::from(template.fill(profile)?)),
        };
        Some(Call { url, body })
    }

    /// What tells two calls apart for coalescing and the cache: the body alone
    /// when the URL is fixed (shared, not copied), else the URL and the body.
    fn key(&self, call: &Call) -> Arc<[u8]> {
        let body = call.body.as_deref().unwrap_or_default();
        match (self.url.as_fixed(), &call.body) {
            (Some(_), Some(body)) => Arc::clone(body),
            (Some(_), None) => Arc::from(&[][..]),
            (None, _) => {
                let url = call.url.as_str();
                let mut key = Vec::with_capacity(url.len() + 1 + body.len());
                key.extend_from_slice(url.as_bytes());
                key.push(b'\n');
                key.extend_from_slice(body);
                Arc::from(key)
            }
        }
    }

    /// This source's answer for `profile`: `Skipped` when the profile lacks a
    /// field its call needs; else from the cache when it is on and holds one,
    /// else from the call in flight for the same request, else from a new call.
    /// Each caller waits at most until its own `deadline`. A new call goes out
    /// over `http`, the caller's (its worker thread's) client.
    pub(super) async fn enrich(
        self: &Arc<Self>,
        http: &ClientWithMiddleware,
        profile: &Profile,
        user: &[u8],
        deadline: Instant,
    ) -> Outcome {
        let Some(call) = self.prepare(profile, user) else {
            return Ok(Answer::Skipped);
        };
        let key = self.key(&call);
        if let Some(cache) = &self.cache
            && let Some(answer) = cache.get(&key).await
        {
            self.metrics
                .cache_hits
                .with_label_values(&[self.name.as_str()])
                .inc();
            return Ok(answer);
        }
        let (call, role) = self.in_flight.join_or_start(&key, || {
            let (source, http, key) = (Arc::clone(self), http.clone(), Arc::clone(&key));
            async move {
                let outcome = source.call(&http, &call, deadline).await;
                // Cached before the call leaves the in-flight map, so that no
                // caller in between misses both.
                if let (Some(cache), Ok(answer)) = (&source.cache, &outcome) {
                    cache.insert(key, answer.clone()).await;
                }
                outcome
            }
            .boxed()
        });
        if role == Role::Follower {
            self.metrics
                .coalesced
                .with_label_values(&[self.name.as_str()])
                .inc();
        }
        match tokio::time::timeout_at(deadline.into(), call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.out_of_time(
                0,
                String::from("an identical call in flight had not answered"),
            )),
        }
    }

    /// Makes `call` until the source answers (found or not), a final failure
    /// happens, the retries are spent or `deadline` passes.
    #[tracing::instrument(name = "call source", skip_all,
        fields(source = %self.name, attempts = tracing::field::Empty))]
    pub(super) async fn call(
        &self,
        http: &ClientWithMiddleware,
        call: &Call,
        deadline: Instant,
    ) -> Outcome {
        let target = Target {
            http,
            method: self.method,
            url: &call.url,
            body: call.body.as_deref(),
            headers: &self.headers,
            answer: &self.answer,
            not_found: &self.not_found,
            token: self.token.as_deref(),
            attempt_timeout: self.attempt_timeout,
        };
        let started = SystemTime::now();
        let mut attempts = 0u32;
        let mut last = String::from("the upstream had not answered");
        self.retry_budget.deposit();
        let result = loop {
            if let Err(refusal) = self.wait_for_turn(deadline).await {
                self.metrics
                    .source_throttled
                    .with_label_values(&[self.name.as_str()])
                    .inc();
                break Err(match refusal {
                    Refusal::Paused { retry_after } => EnrichmentError::Paused { retry_after },
                    Refusal::RateLimited { retry_after } => {
                        EnrichmentError::RateLimited { retry_after }
                    }
                });
            }
            let permit = match self.breaker.try_acquire(Instant::now()) {
                Ok(permit) => permit,
                Err(retry_after) => {
                    self.metrics
                        .circuit_rejected
                        .with_label_values(&[self.name.as_str()])
                        .inc();
                    break Err(EnrichmentError::CircuitOpen {
                        retry_after,
                        attempts,
                    });
                }
            };
            let slot = match self.take_slot(deadline).await {
                Ok(slot) => slot,
                Err(SlotError::Busy) => {
                    break Err(EnrichmentError::Busy {
                        waited: self.max_concurrency_wait,
                    });
                }
                Err(SlotError::OutOfTime) => break Err(self.out_of_time(attempts, last)),
            };
            attempts += 1;
            if attempts > 1 {
                self.metrics.upstream_retries.inc();
            }
            let outcome = attempt(&target, deadline).await;
            drop(slot);
            let failed = matches!(
                outcome,
                Err(AttemptError::Transient { .. } | AttemptError::OutOfTime)
            );
            permit.record(failed, Instant::now());
            let retry_after = match outcome {
                Ok(answer) => break Ok(answer),
                Err(AttemptError::Final(error)) => {
                    if let EnrichmentError::Unauthorized { status } = &error {
                        self.credentials_refused(*status);
                    }
                    break Err(error);
                }
                Err(AttemptError::OutOfTime) => break Err(self.out_of_time(attempts, last)),
                Err(AttemptError::Transient {
                    cause,
                    retry_after,
                    pauses_source,
                }) => {
                    tracing::warn!(attempt = attempts, %cause, "enrichment attempt failed");
                    if let (true, Some(wait)) = (pauses_source, retry_after) {
                        self.pace.pause(Instant::now(), wait);
                    }
                    last = cause;
                    retry_after
                }
            };
            let backoff = match self.backoff.should_retry(started, attempts - 1) {
                RetryDecision::DoNotRetry => {
                    break Err(EnrichmentError::RetriesExhausted { attempts, last });
                }
                RetryDecision::Retry { execute_after } => execute_after
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            };
            let delay = backoff.max(retry_after.unwrap_or_default());
            // A wait the clock cannot even represent ends past any deadline.
            if later(Instant::now(), delay).is_none_or(|wake| wake >= deadline) {
                break Err(self.out_of_time(attempts, last));
            }
            if !self.retry_budget.withdraw() {
                self.metrics
                    .retry_budget_exhausted
                    .with_label_values(&[self.name.as_str()])
                    .inc();
                break Err(EnrichmentError::RetryBudgetExhausted { attempts, last });
            }
            tokio::time::sleep(delay).await;
        };
        tracing::Span::current().record("attempts", attempts);
        match &result {
            Ok(_) => tracing::debug!(attempts, "source answered"),
            Err(error) => tracing::warn!(attempts, %error, "profile not enriched"),
        }
        result
    }

    /// Waits for this call's turn under the source's rate limit and pause;
    /// refused at once when the turn would come after `deadline`.
    async fn wait_for_turn(&self, deadline: Instant) -> Result<(), Refusal> {
        if self.pace.is_free() {
            return Ok(());
        }
        let now = Instant::now();
        let turn = self.pace.turn(now, deadline)?;
        if turn > now {
            tokio::time::sleep_until(turn.into()).await;
        }
        Ok(())
    }

    /// A 401 or 403: the deployment's credentials for this source are wrong.
    /// Counted every time, logged at most once a minute (naming the source,
    /// never a header value).
    fn credentials_refused(&self, status: StatusCode) {
        self.metrics
            .source_unauthorized
            .with_label_values(&[self.name.as_str()])
            .inc();
        let now = Instant::now();
        let mut logged = self
            .credentials_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logged.is_none_or(|at| now.duration_since(at) >= CREDENTIALS_LOG_INTERVAL) {
            *logged = Some(now);
            tracing::error!(source = %self.name, status = status.as_u16(),
                "the source refused the deployment's credentials: check its SOURCE_<NAME>_HEADER_* settings");
        }
    }

    pub(super) fn out_of_time(&self, attempts: u32, last: String) -> EnrichmentError {
        EnrichmentError::DeadlineExceeded {
            deadline: self.deadline,
            attempts,
            last,
        }
    }

    async fn take_slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, SlotError> {
        let started = Instant::now();
        let patience = self
            .max_concurrency_wait
            .min(deadline.saturating_duration_since(started));
        let slot = tokio::time::timeout(patience, self.slots.acquire()).await;
        self.metrics
            .slot_wait
            .observe(started.elapsed().as_secs_f64());
        match slot {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; should it be, there is no slot to have.
            Ok(Err(_closed)) => Err(SlotError::Busy),
            Err(_) if patience < self.max_concurrency_wait => Err(SlotError::OutOfTime),
            Err(_) => Err(SlotError::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn answer(bytes: usize) -> Answer {
        let text = format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes - 10));
        Answer::Object(Arc::from(RawValue::from_string(text).unwrap()))
    }

    fn key(n: usize) -> Arc<[u8]> {
        Arc::from(format!(r#"{{"userId":"user-{n}"}}"#).into_bytes())
    }

    /// The bytes the cache really holds: keys, answers and the overhead.
    fn held(cache: &AnswerCache) -> u64 {
        cache
            .iter()
            .map(|(key, answer)| u64::from(weight(&key, &answer, 0)))
            .sum()
    }

    #[tokio::test]
    async fn the_cache_evicts_by_weight_and_holds_at_most_its_bytes() {
        let max_bytes = 64 * 1024;
        let cache = answer_cache(HOUR, max_bytes, 10_000);
        // 100 answers of 4 KiB: about 420 KiB offered to a 64 KiB cache.
        for n in 0..100 {
            cache.insert(key(n), answer(4096)).await;
        }
        cache.run_pending_tasks().await;
        let bytes = held(&cache);
        assert!(bytes <= max_bytes, "{bytes} bytes held, bound {max_bytes}");
        assert!(cache.weighted_size() <= max_bytes);
        assert!(cache.entry_count() >= 1, "it still caches");
        // An answer larger than the whole cache is never kept.
        cache.insert(key(1000), answer(128 * 1024)).await;
        cache.run_pending_tasks().await;
        assert!(cache.get(&key(1000)).await.is_none());
        assert!(held(&cache) <= max_bytes);
    }

    #[tokio::test]
    async fn the_cache_also_holds_at_most_its_entries() {
        let cache = answer_cache(HOUR, 16 * 1024 * 1024, 10);
        for n in 0..100 {
            cache.insert(key(n), answer(64)).await;
        }
        cache.run_pending_tasks().await;
        let entries = cache.iter().count();
        assert!(entries <= 10, "{entries} entries held, bound 10");
        assert!(entries >= 1, "it still caches");
    }

    #[test]
    fn an_entry_weighs_its_key_its_answer_and_the_overhead_at_least_the_floor() {
        let object = answer(1000);
        assert_eq!(weight(b"0123456789", &object, 0), 10 + 1000 + 256);
        assert_eq!(weight(b"0123456789", &Answer::NotFound, 0), 10 + 256);
        assert_eq!(weight(b"", &Answer::NotFound, 5000), 5000);
        assert_eq!(weight(&[0; 8], &object, u64::MAX), u32::MAX);
    }
}
