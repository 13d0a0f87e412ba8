//! The rdkafka client context of the input consumer: logs rebalances and
//! commits, counts rebalances (what was taken under an older count belongs to
//! an assignment that is gone), keeps `/ready` in step with group membership,
//! and exports lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use super::KafkaStatus;
use crate::metrics::Metrics;

pub struct EnricherContext {
    status: Arc<KafkaStatus>,
    metrics: Metrics,
    rebalances: AtomicU64,
}

impl EnricherContext {
    pub fn new(status: Arc<KafkaStatus>, metrics: Metrics) -> Self {
        Self {
            status,
            metrics,
            rebalances: AtomicU64::new(0),
        }
    }

    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }
}

impl ClientContext for EnricherContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .kafka_lag
                        .with_label_values(&[topic.as_str(), partition.to_string().as_str()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for EnricherContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.rebalances.fetch_add(1, Ordering::AcqRel);
                self.status.set_joined(false);
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Async) {
                    tracing::debug!(%error, "no offsets committed on revocation");
                }
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.rebalances.fetch_add(1, Ordering::AcqRel);
            self.status.set_joined(true);
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed"),
        }
    }
}

/// Commits the stored offsets and waits for the answer (at shutdown, on a
/// thread of its own, bounded by the caller).
pub fn commit<C: Consumer<EnricherContext>>(consumer: &C) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "offset commit failed"),
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(", ")
}
