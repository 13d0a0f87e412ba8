//! The rdkafka context of every consumer-group member of ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

/// Reports one partition's lag: topic, partition, records behind.
type LagReport = Box<dyn Fn(&str, i32, i64) + Send + Sync>;

/// Logs rebalances and commits, counts rebalances (what was fetched under an
/// older count belongs to an assignment that is gone), keeps a `joined` flag in
/// step with group membership (for `/ready`), and reports lag from librdkafka's
/// statistics. On revocation it starts committing the stored offsets without
/// waiting: a broker outage must never hold a rebalance up.
pub struct MemberContext {
    rebalances: AtomicU64,
    joined: Arc<AtomicBool>,
    lag: LagReport,
}

impl MemberContext {
    pub fn new(
        joined: Arc<AtomicBool>,
        lag: impl Fn(&str, i32, i64) + Send + Sync + 'static,
    ) -> Self {
        Self {
            rebalances: AtomicU64::new(0),
            joined,
            lag: Box::new(lag),
        }
    }

    /// How many assignments and revocations happened so far.
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Acquire)
    }
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.consumer_lag >= 0 {
                    (self.lag)(&topic, partition, stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.rebalances.fetch_add(1, Ordering::AcqRel);
                self.joined.store(false, Ordering::Release);
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                commit(consumer, CommitMode::Async);
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
            self.joined.store(true, Ordering::Release);
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

/// Commits the stored offsets; "nothing to commit" is not a failure. `Async`
/// does not wait; `Sync` waits for the broker (only where the caller bounds it).
pub fn commit<C: Consumer<MemberContext>>(consumer: &C, mode: CommitMode) {
    match consumer.commit_consumer_state(mode) {
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
