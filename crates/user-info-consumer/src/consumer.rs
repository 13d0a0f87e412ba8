//! The consume loop: Kafka -> PostgreSQL, at least once.
//!
//! rust-rdkafka's at-least-once recipe: auto-commit is on, auto offset *store* is
//! off, and an offset is stored only after every message up to it has had its
//! effect made durable - applied in a committed database transaction, or written
//! to the dead-letter topic and acknowledged. A crash therefore replays messages
//! whose effect may already be in the database; replays are harmless because the
//! merge of a record is idempotent.
//!
//! Messages are applied in batches (`CONSUMER_BATCH_SIZE` messages or
//! `CONSUMER_BATCH_MAX_WAIT_MS`), folded per user in offset order so the result
//! equals one-by-one application. While the database or the dead-letter topic
//! is unavailable, the assigned partitions are paused (the consumer keeps
//! polling, so it stays in its group), nothing is stored, and the batch is
//! retried with capped exponential backoff. When partitions are revoked, the
//! batch in hand is dropped unapplied: the partitions' next owner replays it from
//! the committed offset, so no stale batch can overwrite newer data.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain::Change;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use user_info::error::error_chain;
use user_info::store::Database;
use uuid::Uuid;

use crate::config::Settings;
use crate::handler;
use crate::metrics::Metrics;

/// How long after SIGTERM the batch in hand may still be retried; what is not
/// applied by then is left unstored and replayed by the next consumer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What `/ready` and `/metrics` report.
pub struct Status {
    pub database: Database,
    pub metrics: Metrics,
    joined: AtomicBool,
    database_failing: AtomicBool,
    dead_letters_failing: AtomicBool,
}

impl Status {
    pub fn new(database: Database, metrics: Metrics) -> Self {
        Self {
            database,
            metrics,
            joined: AtomicBool::new(false),
            database_failing: AtomicBool::new(false),
            dead_letters_failing: AtomicBool::new(false),
        }
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready_reason(&self, database_answers: bool) -> Option<String> {
        if !self.joined.load(Ordering::Acquire) {
            return Some("not yet joined the consumer group".to_owned());
        }
        if !database_answers || self.database_failing.load(Ordering::Acquire) {
            return Some("the database is unavailable".to_owned());
        }
        if self.dead_letters_failing.load(Ordering::Acquire) {
            return Some("the dead-letter topic cannot be written".to_owned());
        }
        None
    }
}

/// Logs rebalances and commits, counts revocations, and exports lag.
pub struct UserContext {
    status: Arc<Status>,
    revocations: AtomicU64,
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
                self.revocations.fetch_add(1, Ordering::AcqRel);
                tracing::info!(partitions = %describe(partitions), "partitions revoked");
                commit(consumer, "revoke");
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.status.joined.store(true, Ordering::Release);
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

fn commit<C: Consumer<UserContext>>(consumer: &C, why: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, why, "offset commit failed"),
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

/// One received message, decoded right away; only poison keeps its bytes.
struct Incoming {
    topic: String,
    partition: i32,
    offset: i64,
    decoded: Result<(Uuid, Change), Poison>,
}

struct Poison {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    reason: String,
}

pub struct UserConsumer {
    consumer: StreamConsumer<UserContext>,
    producer: FutureProducer,
    status: Arc<Status>,
    dead_letter_topic: String,
    batch_size: usize,
    batch_wait: Duration,
}

impl UserConsumer {
    pub fn new(settings: &Settings, status: Arc<Status>) -> anyhow::Result<Self> {
        let context = UserContext {
            status: status.clone(),
            revocations: AtomicU64::new(0),
        };
        let consumer: StreamConsumer<UserContext> = settings
            .kafka_client()
            .set("group.id", &settings.kafka_group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &settings.kafka_auto_offset_reset)
            .set(
                "session.timeout.ms",
                settings.kafka_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                settings.kafka_heartbeat_interval_ms.to_string(),
            )
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000")
            .create_with_context(context)?;
        consumer.subscribe(&[settings.kafka_topic.as_str()])?;
        let producer: FutureProducer = settings
            .kafka_client()
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()?;
        tracing::info!(
            topic = settings.kafka_topic,
            group = settings.kafka_group_id,
            dead_letters = settings.kafka_dlq_topic,
            "consumer subscribed"
        );
        Ok(Self {
            consumer,
            producer,
            status,
            dead_letter_topic: settings.kafka_dlq_topic.clone(),
            batch_size: settings.consumer_batch_size.max(1),
            batch_wait: Duration::from_millis(settings.consumer_batch_max_wait_ms),
        })
    }

    /// Consumes until `shutdown` resolves, then finishes the batch in hand,
    /// commits and leaves the group.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(None::<Instant>);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: finishing the batch in hand");
            let _ = stop_tx.send(Some(Instant::now()));
        });
        let mut buffer: Vec<Incoming> = Vec::new();
        loop {
            let mut stopping = stop.clone();
            if stopping.borrow().is_some() {
                break;
            }
            tokio::select! {
                biased;
                _ = stopping.changed() => break,
                _ = self.fill(&mut buffer) => {}
            }
            let batch = std::mem::take(&mut buffer);
            if !self.process(batch, &mut buffer, &stop).await {
                break;
            }
        }
        if !buffer.is_empty() {
            let batch = std::mem::take(&mut buffer);
            self.process(batch, &mut Vec::new(), &stop).await;
        }
        commit(&self.consumer, "shutdown");
        self.consumer.unsubscribe();
        let _ = rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(1));
        Ok(())
    }

    /// Waits for a first message, then takes more until the batch is full or
    /// its wait is over. Cancel-safe: what was received is already in `buffer`.
    async fn fill(&self, buffer: &mut Vec<Incoming>) {
        if buffer.is_empty() {
            match self.consumer.recv().await {
                Ok(message) => buffer.push(decode(&message)),
                Err(error) => {
                    tracing::warn!(%error, "cannot receive from Kafka");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while buffer.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => buffer.push(decode(&message)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot receive from Kafka");
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Applies a batch, dead-letters its poison, then stores its offsets.
    /// Returns `false` when shutdown's grace ran out before the batch was done.
    #[tracing::instrument(name = "batch", skip_all, fields(messages = batch.len()))]
    async fn process(
        &self,
        batch: Vec<Incoming>,
        buffer: &mut Vec<Incoming>,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> bool {
        let started = Instant::now();
        let generation = self.revocations();
        let mut next_offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut changes = Vec::new();
        let mut poison = Vec::new();
        for incoming in batch {
            let next = next_offsets
                .entry((incoming.topic.clone(), incoming.partition))
                .or_default();
            *next = (*next).max(incoming.offset + 1);
            match incoming.decoded {
                Ok(change) => changes.push(change),
                Err(bad) => poison.push((incoming.topic, incoming.partition, incoming.offset, bad)),
            }
        }
        let applied = changes.len();
        let mut paused = false;

        let mut delay = Duration::from_millis(100);
        while !changes.is_empty() {
            if self.revocations() != generation {
                return self.drop_revoked(paused);
            }
            // Bounded by the database's query timeout: an attempt that hangs (a
            // connection lost mid-restart without an answer) is abandoned and retried.
            let outcome = self.status.database.apply_batch(changes.clone()).await;
            match outcome {
                Ok(()) => break,
                Err(error) => {
                    self.status.database_failing.store(true, Ordering::Release);
                    self.status.metrics.database_retries.inc();
                    tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "cannot apply the batch; partitions paused");
                    if !self.back_off(&mut delay, &mut paused, buffer, stop).await {
                        return false;
                    }
                }
            }
        }
        self.status.database_failing.store(false, Ordering::Release);

        for (topic, partition, offset, bad) in &poison {
            let mut delay = Duration::from_millis(100);
            loop {
                if self.revocations() != generation {
                    return self.drop_revoked(paused);
                }
                match self.dead_letter(topic, *partition, *offset, bad).await {
                    Ok(()) => break,
                    Err(error) => {
                        self.status
                            .dead_letters_failing
                            .store(true, Ordering::Release);
                        tracing::error!(%error, topic = self.dead_letter_topic, retry_in = ?delay, "cannot write a dead letter; partitions paused");
                        if !self.back_off(&mut delay, &mut paused, buffer, stop).await {
                            return false;
                        }
                    }
                }
            }
            tracing::warn!(
                topic,
                partition,
                offset,
                reason = bad.reason,
                "message sent to the dead-letter topic"
            );
        }
        self.status
            .dead_letters_failing
            .store(false, Ordering::Release);
        if paused {
            self.resume();
        }
        if self.revocations() != generation {
            return self.drop_revoked(false);
        }

        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &next_offsets {
            if let Err(error) =
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::error!(%error, "cannot record an offset");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            tracing::warn!(%error, "cannot store offsets (partitions revoked?)");
        }
        let metrics = &self.status.metrics;
        metrics.applied.inc_by(applied as u64);
        metrics.dead_lettered.inc_by(poison.len() as u64);
        metrics.batch_size.observe((applied + poison.len()) as f64);
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(applied, dead_lettered = poison.len(), "batch done");
        true
    }

    async fn dead_letter(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        bad: &Poison,
    ) -> Result<(), KafkaError> {
        let partition = partition.to_string();
        let offset = offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq-source-topic",
                value: Some(topic),
            })
            .insert(Header {
                key: "dlq-source-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "dlq-source-offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "dlq-reason",
                value: Some(&bad.reason),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dead_letter_topic).headers(headers);
        if let Some(key) = &bad.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &bad.value {
            record = record.payload(value.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    fn revocations(&self) -> u64 {
        self.consumer.context().revocations.load(Ordering::Acquire)
    }

    fn drop_revoked(&self, paused: bool) -> bool {
        tracing::info!("partitions were revoked: the batch in hand is left to their next owner");
        if paused {
            self.resume();
        }
        true
    }

    /// Pauses every assigned partition; the consumer keeps polling meanwhile.
    fn pause(&self) -> bool {
        match self
            .consumer
            .assignment()
            .and_then(|partitions| self.consumer.pause(&partitions))
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot pause partitions");
                false
            }
        }
    }

    fn resume(&self) {
        if let Err(error) = self
            .consumer
            .assignment()
            .and_then(|partitions| self.consumer.resume(&partitions))
        {
            tracing::warn!(%error, "cannot resume partitions");
        } else {
            tracing::info!("partitions resumed");
        }
    }

    /// After a failed attempt: pauses the partitions (once per batch), waits
    /// `delay` while still polling, then doubles it up to [`MAX_BACKOFF`].
    /// `false` once shutdown's grace is over.
    async fn back_off(
        &self,
        delay: &mut Duration,
        paused: &mut bool,
        buffer: &mut Vec<Incoming>,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> bool {
        if !*paused {
            *paused = self.pause();
        }
        let go_on = self.wait(*delay, buffer, stop).await;
        *delay = (*delay * 2).min(MAX_BACKOFF);
        go_on
    }

    /// Waits `delay` while still polling Kafka (to stay in the group); anything
    /// that arrives joins the next batch. `false` once shutdown's grace is over.
    async fn wait(
        &self,
        delay: Duration,
        buffer: &mut Vec<Incoming>,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            if let Some(since) = *stop.borrow() {
                if since.elapsed() >= SHUTDOWN_GRACE {
                    tracing::warn!("shutdown grace over: leaving the batch unstored for replay");
                    return false;
                }
            }
            match tokio::time::timeout_at(until, self.consumer.recv()).await {
                Ok(Ok(message)) => buffer.push(decode(&message)),
                Ok(Err(error)) => tracing::debug!(%error, "receive error while paused"),
                Err(_) => return true,
            }
        }
    }
}

fn decode<M: Message>(message: &M) -> Incoming {
    let decoded = handler::decode(message.key(), message.payload()).map_err(|reason| Poison {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        reason,
    });
    Incoming {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        decoded,
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
