//! Request metrics of the HTTP services, the same in each: a count and a
//! duration histogram of every answer by method, route and status.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::metrics::Registry;

/// From 1 ms to 30 s: a probe answers in well under a millisecond, an
/// enrichment may take its whole deadline (15 s by default).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];

/// `<prefix>_http_requests_total` and `<prefix>_http_request_duration_seconds`,
/// labelled `method`, `route` (the matched pattern, never the raw path, so
/// clients cannot grow the label set; `unmatched` for a 404) and `status`.
/// An app puts it in its data (`web::Data<HttpMetrics>`) and wraps itself in
/// [`record_request`].
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        const LABELS: &[&str] = &["method", "route", "status"];
        let requests = registry.register(IntCounterVec::new(
            Opts::new(
                registry.name("http_requests_total"),
                "HTTP requests answered, by method, route pattern and status",
            ),
            LABELS,
        )?)?;
        let duration = registry.register(HistogramVec::new(
            HistogramOpts::new(
                registry.name("http_request_duration_seconds"),
                "Time from a request's arrival to its answer, by method, route pattern and status",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            LABELS,
        )?)?;
        Ok(Self { requests, duration })
    }

    fn observe(&self, method: &str, route: &str, status: &str, seconds: f64) {
        let labels = [method, route, status];
        self.requests.with_label_values(&labels).inc();
        self.duration.with_label_values(&labels).observe(seconds);
    }
}

/// Counts and times every answer (also the guard's 401 and 431, and actix's
/// own 404 and 405, when wrapped outside them), and logs it inside the
/// request's span, so with its request id: refusals and failures at `info`,
/// successes at `debug` (a success that matters has its own line, and one more
/// per request would repeat every health probe).
pub async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = request.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let outcome = next.call(request).await;
    let elapsed = started.elapsed();
    let (status, route) = match &outcome {
        Ok(response) => (
            response.status(),
            response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
        ),
        Err(error) => (
            error.as_response_error().status_code(),
            "unmatched".to_owned(),
        ),
    };
    if let Some(metrics) = metrics {
        metrics.observe(method, &route, status.as_str(), elapsed.as_secs_f64());
    }
    let elapsed_ms = elapsed.as_millis() as u64;
    if status.is_success() || status.is_redirection() {
        tracing::debug!(status = status.as_u16(), elapsed_ms, "request finished");
    } else {
        tracing::info!(status = status.as_u16(), elapsed_ms, "request finished");
    }
    outcome
}

/// Methods are an open set in HTTP; an unbounded label would let clients grow
/// the metric without limit.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
