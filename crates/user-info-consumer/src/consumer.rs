//! The consume loop: Kafka -> PostgreSQL, at least once. It only moves data;
//! what a record means is `records`' job, how it is stored the store's.
//!
//! rust-rdkafka's at-least-once recipe: auto-commit is on, auto offset *store* is
//! off, and an offset is stored only after every message up to it has had its
//! effect made durable - applied in a committed database transaction, or written
//! to the dead-letter topic and acknowledged. A crash therefore replays messages
//! whose effect may already be in the database; replays are harmless because the
//! merge of a record is idempotent.
//!
//! Messages are applied in batches (`CONSUMER_BATCH_SIZE` messages or
//! `CONSUMER_BATCH_MAX_WAIT_MS`), folded once per user in offset order so the
//! result equals one-by-one application. While the database or the dead-letter
//! topic is unavailable, the assigned partitions are paused (the consumer keeps
//! polling, so it stays in its group), nothing is stored, and the batch is
//! retried with capped exponential backoff. When partitions are revoked, the
//! batch in hand is dropped unapplied: the partitions' next owner replays it from
//! the committed offset.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use service_kit::error_chain;
use tokio::sync::watch;

use crate::config::ConsumerSettings;
use crate::context::{UserContext, commit};
use crate::dead_letter::DeadLetters;
use crate::records::{Batch, Incoming};
use crate::status::Status;

/// How long after SIGTERM the batch in hand may still be retried; what is not
/// applied by then is left unstored and replayed by the next consumer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct UserConsumer {
    consumer: StreamConsumer<UserContext>,
    dead_letters: DeadLetters,
    status: Arc<Status>,
    batch_size: usize,
    batch_wait: Duration,
}

impl UserConsumer {
    pub fn new(settings: &ConsumerSettings, status: Arc<Status>) -> anyhow::Result<Self> {
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
            .create_with_context(UserContext::new(status.clone()))?;
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
            dead_letters: DeadLetters::new(producer, settings.kafka_dlq_topic.clone()),
            status,
            batch_size: settings.consumer_batch_size.max(1),
            batch_wait: settings.batch_wait(),
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
            let batch = Batch::new(std::mem::take(&mut buffer));
            if !self.process(batch, &mut buffer, &stop).await {
                break;
            }
        }
        if !buffer.is_empty() {
            let batch = Batch::new(std::mem::take(&mut buffer));
            self.process(batch, &mut Vec::new(), &stop).await;
        }
        commit(&self.consumer, "shutdown");
        self.consumer.unsubscribe();
        self.status.set_joined(false);
        self.dead_letters.flush(Duration::from_secs(1));
        Ok(())
    }

    /// Waits for a first message, then takes more until the batch is full or
    /// its wait is over. Cancel-safe: what was received is already in `buffer`.
    async fn fill(&self, buffer: &mut Vec<Incoming>) {
        if buffer.is_empty() {
            match self.consumer.recv().await {
                Ok(message) => buffer.push(Incoming::from_message(&message)),
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
                Ok(Ok(message)) => buffer.push(Incoming::from_message(&message)),
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
    #[tracing::instrument(name = "batch", skip_all, fields(messages = batch.records()))]
    async fn process(
        &self,
        batch: Batch,
        buffer: &mut Vec<Incoming>,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> bool {
        let started = Instant::now();
        let generation = self.revocations();
        let mut paused = false;

        let mut delay = Duration::from_millis(100);
        while !batch.folded.is_empty() {
            if self.revocations() != generation {
                return self.drop_revoked(paused);
            }
            // Bounded by the database's query timeout: an attempt that hangs (a
            // connection lost mid-restart without an answer) is abandoned and retried.
            match self.status.database.apply_batch(&batch.folded).await {
                Ok(()) => break,
                Err(error) => {
                    self.status.set_database_failing(true);
                    self.status.metrics.database_retries.inc();
                    tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "cannot apply the batch; partitions paused");
                    if !self.back_off(&mut delay, &mut paused, buffer, stop).await {
                        return false;
                    }
                }
            }
        }
        self.status.set_database_failing(false);

        for letter in &batch.dead_letters {
            let mut delay = Duration::from_millis(100);
            loop {
                if self.revocations() != generation {
                    return self.drop_revoked(paused);
                }
                match self.dead_letters.write(letter).await {
                    Ok(()) => break,
                    Err(error) => {
                        self.status.set_dead_letters_failing(true);
                        tracing::error!(%error, topic = self.dead_letters.topic(), retry_in = ?delay, "cannot write a dead letter; partitions paused");
                        if !self.back_off(&mut delay, &mut paused, buffer, stop).await {
                            return false;
                        }
                    }
                }
            }
            tracing::warn!(
                topic = letter.topic,
                partition = letter.partition,
                offset = letter.offset,
                reason = letter.poison.reason,
                "message sent to the dead-letter topic"
            );
        }
        self.status.set_dead_letters_failing(false);
        if paused {
            self.resume();
        }
        if self.revocations() != generation {
            return self.drop_revoked(false);
        }

        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next_offsets {
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
        metrics.applied.inc_by(batch.changes as u64);
        metrics
            .dead_lettered
            .inc_by(batch.dead_letters.len() as u64);
        metrics.batch_size.observe(batch.records() as f64);
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            applied = batch.changes,
            dead_lettered = batch.dead_letters.len(),
            "batch done"
        );
        true
    }

    fn revocations(&self) -> u64 {
        self.consumer.context().revocations()
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
                Ok(Ok(message)) => buffer.push(Incoming::from_message(&message)),
                Ok(Err(error)) => tracing::debug!(%error, "receive error while paused"),
                Err(_) => return true,
            }
        }
    }
}
