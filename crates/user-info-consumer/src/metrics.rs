//! Prometheus metrics of the consumer, served on `/metrics`: records applied
//! and dead-lettered, batches, lag, the database pool, the process; every name
//! starts with `consumer_`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts};
use service_kit::metrics::Registry;
use user_store::Database;
use user_store::metrics::PoolGauges;

pub struct Metrics {
    registry: Registry,
    pub applied: IntCounter,
    pub dead_lettered: IntCounter,
    pub database_retries: IntCounter,
    pub fenced: IntCounter,
    pub refused: IntCounter,
    pub superseded: IntCounter,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub lag: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric of the process; `database` is the one whose
    /// pool the gauges show.
    pub fn new(database: &Database) -> Result<Self, prometheus::Error> {
        let registry = Registry::new("consumer")?;
        PoolGauges::register(&registry, database)?;
        let applied = registry.register(IntCounter::new(
            "consumer_messages_applied_total",
            "Messages applied to the database",
        )?)?;
        let dead_lettered = registry.register(IntCounter::new(
            "consumer_messages_dead_lettered_total",
            "Messages sent to the dead-letter topic",
        )?)?;
        let database_retries = registry.register(IntCounter::new(
            "consumer_database_retries_total",
            "Batches retried because the database was unavailable",
        )?)?;
        let fenced = registry.register(IntCounter::new(
            "consumer_batches_fenced_total",
            "Batches rolled back because another member had moved their partition's offset",
        )?)?;
        let refused = registry.register(IntCounter::new(
            "consumer_records_refused_total",
            "Records the database refused (SQLSTATE 22, 23), isolated by splitting their batch and dead-lettered",
        )?)?;
        let superseded = registry.register(IntCounter::new(
            "consumer_replays_superseded_total",
            "Replayed dead letters skipped because their user changed after they were dead-lettered",
        )?)?;
        let batch_size = registry.register(Histogram::with_opts(
            HistogramOpts::new("consumer_batch_size", "Messages per applied batch")
                .buckets(vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0]),
        )?)?;
        let batch_seconds = registry.register(Histogram::with_opts(HistogramOpts::new(
            "consumer_batch_duration_seconds",
            "Time to apply a batch, dead letters and offset storage included",
        ))?)?;
        let lag = registry.register(IntGaugeVec::new(
            Opts::new("consumer_lag", "Messages behind the partition's end"),
            &["topic", "partition"],
        )?)?;
        Ok(Self {
            registry,
            applied,
            dead_lettered,
            database_retries,
            fenced,
            refused,
            superseded,
            batch_size,
            batch_seconds,
            lag,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
