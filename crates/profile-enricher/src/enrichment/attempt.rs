//! One HTTP attempt at one source, and how its outcome is classified.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};
use reqwest_retry::{Retryable, default_on_request_failure, default_on_request_success};
// The span macro calls itself by its bare name.
use reqwest_tracing::reqwest_otel_span;
use serde_json::value::RawValue;

use super::request::{AnswerShape, Method, Shaped};
use super::{Answer, EnrichmentError, MAX_ANSWER_BYTES, seconds};
use crate::metrics::Metrics;

/// How one attempt went wrong, as far as the retry loop is concerned.
pub(super) enum AttemptError {
    /// Worth another attempt, after at least `retry_after` if the upstream said so.
    Transient {
        cause: String,
        retry_after: Option<Duration>,
        /// A 429 or 503 with `Retry-After`: the wait is the whole source's.
        pauses_source: bool,
    },
    /// Another attempt cannot help.
    Final(EnrichmentError),
    /// The deadline cut the attempt short.
    OutOfTime,
}

/// Where and how to send an attempt.
pub(super) struct Target<'a> {
    pub http: &'a ClientWithMiddleware,
    pub method: Method,
    pub url: &'a Url,
    /// `None`: no body (GET).
    pub body: Option<&'a [u8]>,
    /// The source's own headers; they replace ours of the same name.
    pub headers: &'a HeaderMap,
    pub answer: &'a AnswerShape,
    pub not_found: &'a [StatusCode],
    /// Presented only to our own `/dummy-enrich`; a client's token is never forwarded.
    pub token: Option<&'a str>,
    pub attempt_timeout: Duration,
}

/// Makes the call once, within `EXTERNAL_API_TIMEOUT` and what is left of the deadline.
pub(super) async fn attempt(
    target: &Target<'_>,
    deadline: Instant,
) -> Result<Answer, AttemptError> {
    let budget = target
        .attempt_timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let cut_by_deadline = budget < target.attempt_timeout;
    let timed_out = |budget: Duration| {
        if cut_by_deadline {
            AttemptError::OutOfTime
        } else {
            AttemptError::Transient {
                cause: format!("no complete answer within {} s", seconds(&budget)),
                retry_after: None,
                pauses_source: false,
            }
        }
    };
    let mut request = target
        .http
        .request(target.method.as_reqwest(), target.url.clone())
        .timeout(budget)
        .header(ACCEPT, "application/json");
    if let Some(body) = target.body {
        request = request
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
    }
    if let Some(token) = target.token {
        request = request.bearer_auth(token);
    }
    if !target.headers.is_empty() {
        request = request.headers(target.headers.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return Err(timed_out(budget)),
        Err(error) => return Err(classify_failure(error)),
    };
    let status = response.status();
    if target.not_found.contains(&status) {
        return Ok(Answer::NotFound);
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(AttemptError::Final(EnrichmentError::Unauthorized {
            status,
        }));
    }
    match default_on_request_success(&response) {
        None => {}
        Some(Retryable::Transient) => {
            let retry_after = retry_after(response.headers());
            return Err(AttemptError::Transient {
                cause: format!("the upstream answered status {status}"),
                retry_after,
                pauses_source: retry_after.is_some()
                    && matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    ),
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
                pauses_source: false,
            });
        }
    };
    shape(&bytes, target.answer)
}

/// A 2xx answer as `enrichment` takes it: a JSON object, verbatim, when the
/// source has no `_SELECT` nor `_INTO`; else what they make of any JSON value.
fn shape(bytes: &[u8], answer: &AnswerShape) -> Result<Answer, AttemptError> {
    let not_an_object = AttemptError::Final(EnrichmentError::NotAnObject);
    if answer.is_verbatim() {
        return json_object(bytes).map(Answer::Object).ok_or(not_an_object);
    }
    let Ok(value) = serde_json::from_slice::<Box<RawValue>>(bytes) else {
        return Err(not_an_object);
    };
    match answer.shape(&value) {
        Shaped::Object(object) => Ok(Answer::Object(object)),
        Shaped::Nothing => Ok(Answer::NotFound),
        Shaped::NotAnObject => Err(not_an_object),
    }
}

/// Transport failures: reqwest-retry decides which ones another attempt may cure.
fn classify_failure(error: reqwest_middleware::Error) -> AttemptError {
    match default_on_request_failure(&error) {
        Some(Retryable::Fatal) => {
            AttemptError::Final(EnrichmentError::Unrecoverable(Arc::new(error)))
        }
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
                pauses_source: false,
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
fn json_object(bytes: &[u8]) -> Option<Arc<RawValue>> {
    let value: Box<RawValue> = serde_json::from_slice(bytes).ok()?;
    value.get().starts_with('{').then(|| Arc::from(value))
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 section 10.2.3). Any
/// other value - negative, fractional, too long for a `u64`, a malformed date - is
/// ignored, so the normal backoff applies; a date in the past means no wait. A
/// value too large for the clock is returned as is: the retry loop adds it to an
/// instant with checked arithmetic and answers 504.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Counts every attempt by outcome and times it, whoever makes it.
pub(super) struct AttemptTelemetry {
    pub metrics: Metrics,
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

/// reqwest-tracing's default client span, with a failure recorded without its
/// URL: a templated URL holds profile values (an e-mail), which are personal data.
pub(super) struct QuietSpanBackend;

impl reqwest_tracing::ReqwestOtelSpanBackend for QuietSpanBackend {
    fn on_request_start(
        request: &reqwest::Request,
        extensions: &mut http::Extensions,
    ) -> tracing::Span {
        let name = reqwest_tracing::default_span_name(request, extensions);
        reqwest_otel_span!(name = name, request)
    }

    fn on_request_end(
        span: &tracing::Span,
        outcome: &reqwest_middleware::Result<reqwest::Response>,
        _: &mut http::Extensions,
    ) {
        let Err(error) = outcome else {
            return reqwest_tracing::default_on_request_end(span, outcome);
        };
        let message = match error {
            reqwest_middleware::Error::Reqwest(error) if error.is_timeout() => "timed out",
            reqwest_middleware::Error::Reqwest(error) if error.is_connect() => "could not connect",
            _ => "the request failed",
        };
        span.record(reqwest_tracing::OTEL_STATUS_CODE, "ERROR");
        span.record(reqwest_tracing::ERROR_MESSAGE, message);
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

    #[test]
    fn retry_after_ignores_what_is_neither_seconds_nor_a_date() {
        for garbage in [
            "-1",
            "1.5",
            "99999999999999999999",
            "",
            "0x10",
            "Sun, 99 Foo 2023",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(garbage).unwrap());
            assert_eq!(retry_after(&headers), None, "{garbage:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("10000000000000000000"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::from_secs(10_000_000_000_000_000_000))
        );
    }
}
