//! Prometheus metrics of the consumer, served on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub applied: IntCounter,
    pub dead_lettered: IntCounter,
    pub database_retries: IntCounter,
    pub fenced: IntCounter,
    pub refused: IntCounter,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub lag: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let applied = IntCounter::new(
            "consumer_messages_applied_total",
            "Messages applied to the database",
        )?;
        let dead_lettered = IntCounter::new(
            "consumer_messages_dead_lettered_total",
            "Messages sent to the dead-letter topic",
        )?;
        let database_retries = IntCounter::new(
            "consumer_database_retries_total",
            "Batches retried because the database was unavailable",
        )?;
        let fenced = IntCounter::new(
            "consumer_batches_fenced_total",
            "Batches rolled back because another member had moved their partition's offset",
        )?;
        let refused = IntCounter::new(
            "consumer_records_refused_total",
            "Records the database refused (SQLSTATE 22, 23), isolated by splitting their batch and dead-lettered",
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("consumer_batch_size", "Messages per applied batch")
                .buckets(vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0]),
        )?;
        let batch_seconds = Histogram::with_opts(HistogramOpts::new(
            "consumer_batch_duration_seconds",
            "Time to apply a batch, dead letters and offset storage included",
        ))?;
        let lag = IntGaugeVec::new(
            Opts::new("consumer_lag", "Messages behind the partition's end"),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(database_retries.clone()))?;
        registry.register(Box::new(fenced.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            registry,
            applied,
            dead_lettered,
            database_retries,
            fenced,
            refused,
            batch_size,
            batch_seconds,
            lag,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
