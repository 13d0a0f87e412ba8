//! Prometheus metrics, in a registry of our own so tests can run many apps in one
//! process without their collectors clashing.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets from 1 ms to ~16 s: slot waits and upstream calls live in that range.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub upstream_attempts: IntCounterVec,
    pub upstream_retries: IntCounter,
    pub slot_wait: Histogram,
    pub upstream_latency: Histogram,
    /// Per source and request: `ok`, `failed` or `skipped`.
    pub source_calls: IntCounterVec,
    pub retry_budget_exhausted: IntCounterVec,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_state: IntGaugeVec,
    pub circuit_transitions: IntCounterVec,
    pub circuit_rejected: IntCounterVec,
    pub coalesced: IntCounterVec,
    pub cache_hits: IntCounterVec,
    /// The Kafka mode (`ENRICHER_INPUT_TOPIC`).
    pub kafka_records_in: IntCounter,
    pub kafka_records_out: IntCounter,
    pub kafka_dead_lettered: IntCounter,
    pub kafka_paused_seconds: Counter,
    pub kafka_lag: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "enricher_upstream_attempts_total",
                "Attempts to call the enrichment API, by outcome (status code or error kind)",
            ),
            &["outcome"],
        )?;
        let upstream_retries = IntCounter::new(
            "enricher_upstream_retries_total",
            "Attempts that were retries of a failed attempt",
        )?;
        let slot_wait = Histogram::with_opts(
            HistogramOpts::new(
                "enricher_slot_wait_seconds",
                "Time spent waiting for a free upstream concurrency slot",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let upstream_latency = Histogram::with_opts(
            HistogramOpts::new(
                "enricher_upstream_latency_seconds",
                "Time until the enrichment API answered (or failed), per attempt",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let source_calls = IntCounterVec::new(
            Opts::new(
                "enricher_source_calls_total",
                "Enrichments asked of each source, by how they went (ok, failed, skipped)",
            ),
            &["source", "status"],
        )?;
        let retry_budget_exhausted = IntCounterVec::new(
            Opts::new(
                "enricher_retry_budget_exhausted_total",
                "Retries refused because the source's retry budget was spent",
            ),
            &["source"],
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "enricher_circuit_state",
                "Each source's circuit breaker: 0 closed, 1 open, 2 half-open",
            ),
            &["source"],
        )?;
        let circuit_transitions = IntCounterVec::new(
            Opts::new(
                "enricher_circuit_transitions_total",
                "Circuit breaker changes of state, by source and new state",
            ),
            &["source", "state"],
        )?;
        let circuit_rejected = IntCounterVec::new(
            Opts::new(
                "enricher_circuit_rejected_total",
                "Attempts refused without calling the source, its circuit breaker being open",
            ),
            &["source"],
        )?;
        let coalesced = IntCounterVec::new(
            Opts::new(
                "enricher_coalesced_total",
                "Source calls that joined an identical call already in flight",
            ),
            &["source"],
        )?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "enricher_cache_hits_total",
                "Source answers served from the cache (ENRICHMENT_CACHE_TTL)",
            ),
            &["source"],
        )?;
        let kafka_records_in = IntCounter::new(
            "enricher_kafka_records_in_total",
            "Records taken from ENRICHER_INPUT_TOPIC",
        )?;
        let kafka_records_out = IntCounter::new(
            "enricher_kafka_records_out_total",
            "Answers acknowledged on ENRICHER_OUTPUT_TOPIC",
        )?;
        let kafka_dead_lettered = IntCounter::new(
            "enricher_kafka_dead_lettered_total",
            "Records acknowledged on ENRICHER_DLQ_TOPIC",
        )?;
        let kafka_paused_seconds = Counter::new(
            "enricher_kafka_paused_seconds_total",
            "Seconds input partitions spent paused on transient upstream failures (summed over partitions)",
        )?;
        let kafka_lag = IntGaugeVec::new(
            Opts::new(
                "enricher_kafka_lag",
                "Records of an input partition not yet consumed (librdkafka's consumer lag)",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(kafka_records_in.clone()))?;
        registry.register(Box::new(kafka_records_out.clone()))?;
        registry.register(Box::new(kafka_dead_lettered.clone()))?;
        registry.register(Box::new(kafka_paused_seconds.clone()))?;
        registry.register(Box::new(kafka_lag.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        registry.register(Box::new(upstream_retries.clone()))?;
        registry.register(Box::new(slot_wait.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(source_calls.clone()))?;
        registry.register(Box::new(retry_budget_exhausted.clone()))?;
        registry.register(Box::new(circuit_state.clone()))?;
        registry.register(Box::new(circuit_transitions.clone()))?;
        registry.register(Box::new(circuit_rejected.clone()))?;
        registry.register(Box::new(coalesced.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        Ok(Self {
            registry,
            requests,
            upstream_attempts,
            upstream_retries,
            slot_wait,
            upstream_latency,
            source_calls,
            retry_budget_exhausted,
            circuit_state,
            circuit_transitions,
            circuit_rejected,
            coalesced,
            cache_hits,
            kafka_records_in,
            kafka_records_out,
            kafka_dead_lettered,
            kafka_paused_seconds,
            kafka_lag,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Counts every answer by method, route pattern and status, and logs it (inside
/// the request's span, so with its request id; successes at `debug`).
pub async fn record_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = request.app_data::<web::Data<Metrics>>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let outcome = next.call(request).await;
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
        metrics
            .requests
            .with_label_values(&[method, route.as_str(), status.as_str()])
            .inc();
    }
    // A success already has its own line where it matters ("profile enriched",
    // with the user id); one more per request would double the log volume and
    // repeat every health probe. Refusals and failures are always logged.
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if status.is_success() || status.is_redirection() {
        tracing::debug!(status = status.as_u16(), elapsed_ms, "request finished");
    } else {
        tracing::info!(status = status.as_u16(), elapsed_ms, "request finished");
    }
    outcome
}

/// Methods are an open set in HTTP; an unbounded label would let clients grow the
/// metric without limit.
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
