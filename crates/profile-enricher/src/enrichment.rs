//! The client of the upstream enrichment API.
//!
//! One [`EnrichmentClient::enrich`] call makes at most `MAX_RETRIES + 1` attempts:
//!
//! - **Slot.** An attempt first takes one of `MAX_CONCURRENCY` slots, waiting at most
//!   `MAX_CONCURRENCY_WAIT` (else 503 with `Retry-After`). The slot is given back as
//!   soon as the attempt ends, so a call sleeping before its next attempt never keeps
//!   another request from the upstream.
//! - **Attempt.** Each attempt may take `EXTERNAL_API_TIMEOUT`, body included.
//! - **What is retried.** Transient failures only, as reqwest-retry classifies them:
//!   connect errors, timeouts, dropped connections, 408, 429 and 5xx. Other 4xx and
//!   3xx (redirects are not followed) are final: 502 at once. So is a 2xx whose body
//!   is not a JSON object - asking again would not change the upstream's mind.
//! - **Delays.** Before retry `n` (from 0) we sleep reqwest-retry's
//!   `ExponentialBackoff` delay: `BACKOFF_BASE * 2^n`, capped at [`MAX_BACKOFF`], with
//!   bounded jitter. A `Retry-After` header (seconds or an HTTP date) lengthens the
//!   delay, never shortens it.
//! - **Deadline.** Slot waits, attempts and delays all fit in `EXTERNAL_API_DEADLINE`.
//!   The last attempt is cut short at the deadline, and a delay that would end past it
//!   is not slept at all: the call fails at once with 504.
//!
//! The loop lives here rather than in `reqwest_retry::RetryTransientMiddleware`,
//! because that middleware would hold the slot while sleeping and ignores
//! `Retry-After`. The [`ClientWithMiddleware`] still carries the per-attempt
//! telemetry.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{
    Jitter, RetryDecision, RetryPolicy, Retryable, default_on_request_failure,
    default_on_request_success,
};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::UpstreamSettings;
use crate::metrics::Metrics;

/// The longest pause between two attempts, whatever `BACKOFF_BASE * 2^n` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// An upstream answer larger than this is refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a profile could not be enriched. Each variant names a cause a client can act on.
#[derive(Debug, thiserror::Error)]
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
    #[error("the upstream refused the request with status {status}")]
    Rejected { status: StatusCode },
    #[error("the upstream answer is not a JSON object")]
    NotAnObject,
    #[error("the upstream answer is larger than {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge,
    #[error("the upstream request failed and cannot be retried")]
    Unrecoverable(#[source] reqwest_middleware::Error),
    #[error("the profile could not be encoded for the upstream")]
    Encode(#[source] serde_json::Error),
}

/// How one attempt went wrong, as far as the retry loop is concerned.
enum AttemptError {
    /// Worth another attempt, after at least `retry_after` if the upstream said so.
    Transient {
        cause: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt cannot help.
    Final(EnrichmentError),
    /// The deadline cut the attempt short.
    OutOfTime,
}

enum SlotError {
    Busy,
    OutOfTime,
}

pub struct EnrichmentClient {
    http: ClientWithMiddleware,
    url: Url,
    /// Presented only to our own `/dummy-enrich`; a client's token is never forwarded.
    token: Option<String>,
    backoff: ExponentialBackoff,
    settings: UpstreamSettings,
    slots: Semaphore,
    metrics: Metrics,
}

impl EnrichmentClient {
    /// Built once at start-up: the connection pool and the slots are shared by every
    /// request of the process.
    pub fn new(
        settings: &UpstreamSettings,
        url: Url,
        token: Option<String>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.attempt_timeout)
            .pool_max_idle_per_host(settings.max_concurrency)
            .user_agent(concat!("profile-enricher/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let http = ClientBuilder::new(client)
            .with(AttemptTelemetry {
                metrics: metrics.clone(),
            })
            .build();
        let backoff = ExponentialBackoff::builder()
            .retry_bounds(
                settings.backoff_base,
                settings.backoff_base.max(MAX_BACKOFF),
            )
            .jitter(Jitter::Bounded)
            .base(2)
            .build_with_max_retries(settings.max_retries);
        Ok(Self {
            http,
            url,
            token,
            backoff,
            settings: settings.clone(),
            slots: Semaphore::new(settings.max_concurrency),
            metrics,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends `user` (already serialisable as the answer's `user`) upstream and returns
    /// the upstream's JSON object verbatim.
    #[tracing::instrument(name = "enrich profile", skip_all, fields(attempts = tracing::field::Empty))]
    pub async fn enrich<T: serde::Serialize>(
        &self,
        user: &T,
    ) -> Result<Box<RawValue>, EnrichmentError> {
        let body = serde_json::to_vec(user).map_err(EnrichmentError::Encode)?;
        let Some(deadline) = later(Instant::now(), self.settings.deadline) else {
            return Err(self.out_of_time(0, String::from("the deadline is beyond the clock")));
        };
        let started = SystemTime::now();
        let mut attempts = 0u32;
        let mut last = String::from("the upstream had not answered");
        let result = loop {
            let slot = match self.take_slot(deadline).await {
                Ok(slot) => slot,
                Err(SlotError::Busy) => {
                    break Err(EnrichmentError::Busy {
                        waited: self.settings.max_concurrency_wait,
                    });
                }
                Err(SlotError::OutOfTime) => break Err(self.out_of_time(attempts, last)),
            };
            attempts += 1;
            if attempts > 1 {
                self.metrics.upstream_retries.inc();
            }
            let outcome = self.attempt(&body, deadline).await;
            drop(slot);
            let retry_after = match outcome {
                Ok(enrichment) => break Ok(enrichment),
                Err(AttemptError::Final(error)) => break Err(error),
                Err(AttemptError::OutOfTime) => break Err(self.out_of_time(attempts, last)),
                Err(AttemptError::Transient { cause, retry_after }) => {
                    tracing::warn!(attempt = attempts, %cause, "enrichment attempt failed");
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
            tokio::time::sleep(delay).await;
        };
        tracing::Span::current().record("attempts", attempts);
        match &result {
            Ok(_) => tracing::info!(attempts, "profile enriched"),
            Err(error) => tracing::warn!(attempts, %error, "profile not enriched"),
        }
        result
    }

    fn out_of_time(&self, attempts: u32, last: String) -> EnrichmentError {
        EnrichmentError::DeadlineExceeded {
            deadline: self.settings.deadline,
            attempts,
            last,
        }
    }

    async fn take_slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, SlotError> {
        let started = Instant::now();
        let patience = self
            .settings
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
            Err(_) if patience < self.settings.max_concurrency_wait => Err(SlotError::OutOfTime),
            Err(_) => Err(SlotError::Busy),
        }
    }

    async fn attempt(&self, body: &[u8], deadline: Instant) -> Result<Box<RawValue>, AttemptError> {
        let budget = self
            .settings
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let cut_by_deadline = budget < self.settings.attempt_timeout;
        let timed_out = |budget: Duration| {
            if cut_by_deadline {
                AttemptError::OutOfTime
            } else {
                AttemptError::Transient {
                    cause: format!("no complete answer within {} s", seconds(&budget)),
                    retry_after: None,
                }
            }
        };
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(budget)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return Err(timed_out(budget)),
            Err(error) => return Err(classify_failure(error)),
        };
        let status = response.status();
        match default_on_request_success(&response) {
            None => {}
            Some(Retryable::Transient) => {
                return Err(AttemptError::Transient {
                    cause: format!("the upstream answered status {status}"),
                    retry_after: retry_after(response.headers()),
                });
            }
            Some(Retryable::Fatal) => {
                return Err(AttemptError::Final(EnrichmentError::Rejected { status }));
            }
        }
        let bytes = match read_limited(response).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLarge) => {
                return Err(AttemptError::Final(EnrichmentError::AnswerTooLarge));
            }
            Err(ReadError::Broken(error)) if error.is_timeout() => return Err(timed_out(budget)),
            Err(ReadError::Broken(error)) => {
                tracing::warn!(error = %error.without_url(), "upstream answer broke off");
                return Err(AttemptError::Transient {
                    cause: "the connection broke while the upstream answered".to_owned(),
                    retry_after: None,
                });
            }
        };
        json_object(&bytes).ok_or(AttemptError::Final(EnrichmentError::NotAnObject))
    }
}

/// Transport failures: reqwest-retry decides which ones another attempt may cure.
fn classify_failure(error: reqwest_middleware::Error) -> AttemptError {
    match default_on_request_failure(&error) {
        Some(Retryable::Fatal) => AttemptError::Final(EnrichmentError::Unrecoverable(error)),
        Some(Retryable::Transient) | None => {
            let cause = if error.is_connect() {
                "could not connect to the upstream"
            } else {
                "the request to the upstream failed"
            };
            tracing::warn!(error = %error.without_url(), "upstream request failed");
            AttemptError::Transient {
                cause: cause.to_owned(),
                retry_after: None,
            }
        }
    }
}

enum ReadError {
    TooLarge,
    Broken(reqwest::Error),
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Broken)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The upstream's answer, kept byte for byte, if it is one JSON object.
fn json_object(bytes: &[u8]) -> Option<Box<RawValue>> {
    let value: Box<RawValue> = serde_json::from_slice(bytes).ok()?;
    value.get().starts_with('{').then_some(value)
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 section 10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// `now + wait`, or `None` when that instant is beyond what the clock can hold (a
/// hostile `Retry-After` of 10^19 seconds): never an overflow panic.
fn later(now: Instant, wait: Duration) -> Option<Instant> {
    now.checked_add(wait)
}

fn seconds(duration: &Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

/// Counts every attempt by outcome and times it, whoever makes it.
struct AttemptTelemetry {
    metrics: Metrics,
}

#[async_trait::async_trait]
impl Middleware for AttemptTelemetry {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let started = Instant::now();
        let result = next.run(request, extensions).await;
        self.metrics
            .upstream_latency
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(response) => response.status().as_str().to_owned(),
            Err(error) if error.is_timeout() => "timeout".to_owned(),
            Err(error) if error.is_connect() => "connect_error".to_owned(),
            Err(_) => "error".to_owned(),
        };
        self.metrics
            .upstream_attempts
            .with_label_values(&[outcome.as_str()])
            .inc();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn only_a_json_object_is_an_enrichment() {
        assert_eq!(
            json_object(br#" {"b":1, "a":[2]} "#).map(|v| v.get().to_owned()),
            Some(r#"{"b":1, "a":[2]}"#.to_owned())
        );
        for body in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"42",
            b"null",
            b"",
            b"<html>",
            b"{} {}",
        ] {
            assert!(
                json_object(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));

        let later = SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));

        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));

        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
