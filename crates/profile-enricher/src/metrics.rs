//! Prometheus metrics of the enricher, served on `/metrics`: requests by route
//! and status (count and duration), the upstream calls and each source's
//! resilience, the Kafka mode, the process; every name starts with
//! `enricher_`. In a registry of its own, so tests can run many apps in one
//! process without their collectors clashing.

use prometheus::{Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts};
use service_kit::http::HttpMetrics;
use service_kit::metrics::Registry;

/// Buckets from 1 ms to ~16 s: slot waits and upstream calls live in that range.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
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
    /// 401 and 403 answers: the deployment's credentials for a source are wrong.
    pub source_unauthorized: IntCounterVec,
    /// Calls refused before their deadline by a source's rate limit or pause.
    pub source_throttled: IntCounterVec,
    /// The Kafka mode (`ENRICHER_INPUT_TOPIC`).
    pub kafka_records_in: IntCounter,
    pub kafka_records_out: IntCounter,
    pub kafka_dead_lettered: IntCounter,
    pub kafka_withheld: IntCounter,
    pub kafka_paused_seconds: Counter,
    pub kafka_lag: IntGaugeVec,
    /// 1 while the consumer is in its group; a sample only in the Kafka mode.
    pub kafka_in_group: IntGaugeVec,
    /// Answers, dead letters and `Prefer: respond-async` profiles the broker
    /// did not acknowledge.
    pub kafka_produce_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new("enricher")?;
        let http = HttpMetrics::register(&registry)?;
        let upstream_attempts = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_upstream_attempts_total",
                "Attempts to call the enrichment API, by outcome (status code or error kind)",
            ),
            &["outcome"],
        )?)?;
        let upstream_retries = registry.register(IntCounter::new(
            "enricher_upstream_retries_total",
            "Attempts that were retries of a failed attempt",
        )?)?;
        let slot_wait = registry.register(Histogram::with_opts(
            HistogramOpts::new(
                "enricher_slot_wait_seconds",
                "Time spent waiting for a free upstream concurrency slot",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?)?;
        let upstream_latency = registry.register(Histogram::with_opts(
            HistogramOpts::new(
                "enricher_upstream_latency_seconds",
                "Time until the enrichment API answered (or failed), per attempt",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?)?;
        let source_calls = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_source_calls_total",
                "Enrichments asked of each source, by how they went (ok, not_found, failed, skipped)",
            ),
            &["source", "status"],
        )?)?;
        let retry_budget_exhausted = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_retry_budget_exhausted_total",
                "Retries refused because the source's retry budget was spent",
            ),
            &["source"],
        )?)?;
        let circuit_state = registry.register(IntGaugeVec::new(
            Opts::new(
                "enricher_circuit_state",
                "Each source's circuit breaker: 0 closed, 1 open, 2 half-open",
            ),
            &["source"],
        )?)?;
        let circuit_transitions = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_circuit_transitions_total",
                "Circuit breaker changes of state, by source and new state",
            ),
            &["source", "state"],
        )?)?;
        let circuit_rejected = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_circuit_rejected_total",
                "Attempts refused without calling the source, its circuit breaker being open",
            ),
            &["source"],
        )?)?;
        let coalesced = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_coalesced_total",
                "Source calls that joined an identical call already in flight",
            ),
            &["source"],
        )?)?;
        let cache_hits = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_cache_hits_total",
                "Source answers served from the cache (ENRICHMENT_CACHE_TTL)",
            ),
            &["source"],
        )?)?;
        let source_unauthorized = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_source_unauthorized_total",
                "401 and 403 answers of a source: the enricher's credentials for it are wrong",
            ),
            &["source"],
        )?)?;
        let source_throttled = registry.register(IntCounterVec::new(
            Opts::new(
                "enricher_source_throttled_total",
                "Calls refused at once because the source's rate limit or Retry-After pause would pass the deadline",
            ),
            &["source"],
        )?)?;
        let kafka_records_in = registry.register(IntCounter::new(
            "enricher_kafka_records_in_total",
            "Records taken from ENRICHER_INPUT_TOPIC",
        )?)?;
        let kafka_records_out = registry.register(IntCounter::new(
            "enricher_kafka_records_out_total",
            "Answers acknowledged on ENRICHER_OUTPUT_TOPIC",
        )?)?;
        let kafka_dead_lettered = registry.register(IntCounter::new(
            "enricher_kafka_dead_lettered_total",
            "Records acknowledged on ENRICHER_DLQ_TOPIC",
        )?)?;
        let kafka_withheld = registry.register(IntCounter::new(
            "enricher_kafka_answers_withheld_total",
            "Records not answered by this process because their partition went to another member after they were fetched (the new owner answers them)",
        )?)?;
        let kafka_paused_seconds = registry.register(Counter::new(
            "enricher_kafka_paused_seconds_total",
            "Seconds input partitions spent paused on transient upstream failures (summed over partitions)",
        )?)?;
        let kafka_lag = registry.register(IntGaugeVec::new(
            Opts::new(
                "enricher_kafka_lag",
                "Records of an input partition not yet consumed (librdkafka's consumer lag)",
            ),
            &["topic", "partition"],
        )?)?;
        let kafka_in_group = registry.register(IntGaugeVec::new(
            Opts::new(
                "enricher_kafka_in_group",
                "1 while the Kafka mode's consumer is in its group (partitions assigned, possibly none), else 0",
            ),
            &["group"],
        )?)?;
        let kafka_produce_failures = registry.register(IntCounter::new(
            "enricher_kafka_produce_failures_total",
            "Produces the broker did not acknowledge: answers, dead letters and Prefer: respond-async profiles",
        )?)?;
        Ok(Self {
            registry,
            http,
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
            source_unauthorized,
            source_throttled,
            kafka_records_in,
            kafka_records_out,
            kafka_dead_lettered,
            kafka_withheld,
            kafka_paused_seconds,
            kafka_lag,
            kafka_in_group,
            kafka_produce_failures,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
