//! The rdkafka client context: logs rebalances and commits, counts them (the
//! consume loop drops what it holds when the count moves), keeps `/ready` in
//! step with group membership, and exports lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::status::Status;

pub struct UserContext {
    status: Arc<Status>,
    rebalances: AtomicU64,
}

impl UserContext {
    pub fn new(status: Arc<Status>) -> Self {
        Self {
            status,
            rebalances: AtomicU64::new(0),
        }
    }

    /// How many assignments and revocations happened so far: anything fetched
    /// under an older count belongs to an assignment that is gone.
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }
}

impl ClientContext for UserContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.consumer_lag >= 0 {
                    self.status
                        .metrics
                        .lag
                        .with_label_values(&[topic.as_str(), partition.to_string().as_str()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for UserContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.rebalances.fetch_add(1, Ordering::AcqRel);
                self.status.set_joined(false);
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                commit(consumer);
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

/// Starts committing the stored offsets to Kafka, without waiting: they are
/// for lag tooling only (PostgreSQL holds the offsets that count), and a
/// broker outage must never hold up a rebalance or a shutdown.
pub fn commit<C: Consumer<UserContext>>(consumer: &C) {
    match consumer.commit_consumer_state(CommitMode::Async) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "offset commit failed"),
    }
}

pub fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]@{:?}", e.topic(), e.partition(), e.offset()))
        .collect::<Vec<_>>()
        .join(", ")
}
