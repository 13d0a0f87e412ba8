//! Asynchronous enrichment over Kafka, on when `ENRICHER_INPUT_TOPIC` is set.
//!
//! A record of the input topic (key: userId, value: a `POST /users` body) goes
//! through the same parsing, validation and [`EnrichmentClient::enrich`] as
//! `POST /users` ([`handler`]); its answer - the 200 body, byte for byte - is
//! produced to `ENRICHER_OUTPUT_TOPIC` keyed by the profile's userId.
//!
//! **At least once, in order per key.** Records of different keys are enriched
//! at once (at most `ENRICHER_KAFKA_MAX_IN_FLIGHT`, and the sources' slots
//! still bound the upstream calls); a record waits for the previous record of
//! its key, so two records of one user are answered in offset order. The
//! producer is idempotent with `acks=all`, and a partition's offset is stored
//! (auto offset store off, auto commit on) only once every earlier record of
//! it has its output - or its dead letter - acknowledged ([`tracker`]). A crash
//! replays what was not stored: duplicates are possible, losses are not.
//!
//! **Failures.** An invalid profile, or one a source refuses (a 4xx other than
//! 408/429, an answer that is not a JSON object), goes to `ENRICHER_DLQ_TOPIC`
//! with the `dlq-*` headers; so does one whose answer is too large to produce
//! ([`MAX_MESSAGE_BYTES`], or the output topic's limit). A transient failure (outage, deadline, open
//! breaker, no slot) pauses the record's partition and tries the record again
//! after `ENRICHER_KAFKA_RETRY_BACKOFF`, doubling up to 30 s: an outage never
//! dead-letters nor drops a good profile. A failed produce is retried the same
//! way.
//!
//! **Health.** The Kafka side never makes the process unready: `/ready` covers
//! what HTTP needs, so a broker outage does not take `POST /users` out of its
//! Service. It shows in `/metrics` instead - `enricher_kafka_in_group` (the
//! consumer in its group) and `enricher_kafka_produce_failures_total` - and in
//! the alert `EnricherKafkaUnhealthy`. `Prefer: respond-async` answers 503
//! when the broker does not acknowledge the profile within [`MESSAGE_TIMEOUT`],
//! or at once when the producer's buffer ([`PRODUCER_BUFFER_KBYTES`]) is full.
//!
//! **Rebalances.** A record whose partition went to another member while it
//! was enriched is not answered here (`enricher_kafka_answers_withheld_total`):
//! the new owner fetches it again from the stored offset, and an answer from
//! the former owner could land after the new owner's answer to a later record
//! of the same user. (The check runs before each produce; a rebalance during
//! the broker's acknowledgement itself is not covered - Kafka transactions
//! would be.)
//!
//! Records waiting out an outage hold their in-flight places; when every place
//! is taken the loop stops polling, and after `max.poll.interval.ms` (5 min)
//! librdkafka leaves the group and rejoins at the next poll: the records since
//! the stored offsets are then answered again (duplicates, never losses).
//!
//! **Stopping.** SIGTERM/SIGINT: no record is taken any more; records in flight
//! may finish within [`SHUTDOWN_GRACE`], the rest are abandoned (their offsets
//! are not stored, the next owner replays them); the stored offsets are
//! committed while leaving the group, bounded too, so the process exits within
//! 10 s.

pub mod handler;
pub mod tracker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use prometheus::IntGauge;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use service_kit::kafka::trace::{record_span, trace_context};
use service_kit::kafka::{DeadLetters, DropAside, MemberContext, commit};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use self::handler::{Verdict, handle};
use self::tracker::{Partition, Tracker};
use crate::config::KafkaSettings;
use crate::enrichment::EnrichmentClient;
use crate::metrics::Metrics;

/// How long after SIGTERM records in flight may still finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);
/// How long leaving the group (and the last commit) may take after that.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the worker's answers and dead letters may wait for room in the
/// producer's buffer (a failure then is retried like any other).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker has to acknowledge a record (librdkafka's
/// `message.timeout.ms`), and the longest a `Prefer: respond-async` request
/// waits: librdkafka looks for timed-out records from its broker threads, and
/// with every broker down it was seen to be seconds late, so the intake holds
/// the bound itself too.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The producer's buffer (librdkafka's `queue.buffering.max.kbytes`, 1 GiB by
/// default): records not yet acknowledged, e.g. while the broker is away.
pub const PRODUCER_BUFFER_KBYTES: u32 = 4096;
/// The largest record the producer sends (librdkafka's `message.max.bytes`,
/// 1,000,000 by default): room for a dead letter of any record the input topic
/// holds at Kafka's default limit (1 MiB) with its headers, and for answers of
/// several sources; below [`PRODUCER_BUFFER_KBYTES`], so a record too large
/// is refused at once rather than waiting for room forever. An answer over it
/// (or over the output topic's `max.message.bytes`) is dead-lettered.
pub const MAX_MESSAGE_BYTES: u32 = 3 * 1024 * 1024;

/// The Kafka side's health, for `/metrics` (never `/ready`, see the module's
/// documentation).
pub struct KafkaStatus {
    /// Kept by the consumer's [`MemberContext`].
    joined: Arc<AtomicBool>,
    in_group: IntGauge,
}

impl KafkaStatus {
    fn new(metrics: &Metrics, group: &str) -> Self {
        let in_group = metrics.kafka_in_group.with_label_values(&[group]);
        in_group.set(0);
        Self {
            joined: Arc::new(AtomicBool::new(false)),
            in_group,
        }
    }

    /// Whether the consumer is in its group (partitions assigned, possibly none).
    pub fn in_group(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// Copies the membership into `enricher_kafka_in_group` (at each scrape).
    pub fn publish(&self) {
        self.in_group.set(i64::from(self.in_group()));
    }

    fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Release);
    }
}

/// The Kafka mode's parts: the worker that consumes, the intake that
/// `Prefer: respond-async` produces through, and the health they report.
pub struct KafkaMode {
    pub worker: KafkaWorker,
    pub intake: Intake,
    pub status: Arc<KafkaStatus>,
}

/// The producer `POST /users` with `Prefer: respond-async` writes to.
pub struct Intake {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
}

impl Intake {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Puts a validated profile on the input topic and waits for the broker's
    /// acknowledgement, at most [`MESSAGE_TIMEOUT`]; a full producer buffer
    /// fails at once. A record given up on here may still reach the topic
    /// should the broker take it at that very moment (sending the profile again
    /// then enriches it twice, as any at-least-once retry may). The record
    /// carries the current trace's context, so its enrichment continues the
    /// request's trace.
    pub async fn send(&self, key: &str, value: &[u8]) -> Result<(), KafkaError> {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(value);
        if let Some(headers) = trace_context(&tracing::Span::current()) {
            record = record.headers(headers);
        }
        let acknowledged = self.producer.send(record, Duration::ZERO);
        let sent = match tokio::time::timeout(MESSAGE_TIMEOUT, acknowledged).await {
            Ok(result) => result.map(|_| ()).map_err(|(error, _)| error),
            Err(_) => Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        };
        if sent.is_err() {
            self.metrics.kafka_produce_failures.inc();
        }
        sent
    }
}

/// What the workers of the records share.
struct Shared_ {
    /// Dropped aside: see [`DropAside`]; [`leave`] closes it, bounded.
    consumer: DropAside<StreamConsumer<MemberContext>>,
    producer: FutureProducer,
    dead_letters: DeadLetters,
    client: web::Data<EnrichmentClient>,
    output_topic: String,
    metrics: Metrics,
    status: Arc<KafkaStatus>,
    first_backoff: Duration,
    /// Per partition: records waiting out a transient failure, and since when
    /// the partition is paused.
    paused: Mutex<HashMap<Partition, (usize, Instant)>>,
}

pub struct KafkaWorker {
    shared: Arc<Shared_>,
    max_in_flight: usize,
}

/// A record whose output (or dead letter) is acknowledged.
struct Done {
    generation: u64,
    partition: Partition,
    offset: i64,
}

/// A received record, owned.
struct Record {
    partition: Partition,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

type Turn = Shared<BoxFuture<'static, ()>>;

/// The consumer's librdkafka settings: the shared ones with the prefetch bound
/// (`KAFKA_QUEUED_MAX_KBYTES`), offsets stored by the worker and auto-committed.
fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    settings.connection.member_config(
        &settings.kafka_group_id,
        &settings.kafka_auto_offset_reset,
        settings.kafka_session_timeout_ms,
        settings.kafka_heartbeat_interval_ms,
    )
}

/// The producer's: idempotent, `acks=all`, its buffer and its wait for an
/// acknowledgement bounded. Keys are hashed with murmur2, as by Java's and
/// kafka-python's producers (librdkafka's default is CRC32): a profile sent
/// with `Prefer: respond-async` lands on the partition the other producers of
/// the input topic would put its `userId` on, behind that user's earlier ones.
fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = settings.connection.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            PRODUCER_BUFFER_KBYTES.to_string(),
        )
        .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string());
    config
}

impl KafkaWorker {
    /// The consumer, subscribed, and the producers; `None` when the mode is off.
    pub fn build(
        settings: &KafkaSettings,
        client: web::Data<EnrichmentClient>,
        metrics: Metrics,
    ) -> anyhow::Result<Option<KafkaMode>> {
        let Some(input) = settings.input_topic() else {
            return Ok(None);
        };
        let status = Arc::new(KafkaStatus::new(&metrics, &settings.kafka_group_id));
        let consumer: StreamConsumer<MemberContext> = consumer_config(settings)
            .create_with_context({
                let lag = metrics.kafka_lag.clone();
                MemberContext::new(status.joined.clone(), move |topic, partition, behind| {
                    lag.with_label_values(&[topic, partition.to_string().as_str()])
                        .set(behind);
                })
            })?;
        consumer.subscribe(&[input])?;
        let producer: FutureProducer = producer_config(settings).create()?;
        tracing::info!(
            input,
            output = settings.enricher_output_topic,
            dead_letters = settings.enricher_dlq_topic,
            group = settings.kafka_group_id,
            "asynchronous enrichment on: consuming"
        );
        let intake = Intake {
            producer: producer.clone(),
            topic: input.to_owned(),
            metrics: metrics.clone(),
        };
        let shared = Arc::new(Shared_ {
            consumer: DropAside::new(consumer),
            dead_letters: DeadLetters::new(producer.clone(), settings.enricher_dlq_topic.clone()),
            producer,
            client,
            output_topic: settings.enricher_output_topic.clone(),
            metrics,
            status: status.clone(),
            first_backoff: settings
                .enricher_kafka_retry_backoff
                .max(Duration::from_millis(10)),
            paused: Mutex::new(HashMap::new()),
        });
        Ok(Some(KafkaMode {
            worker: Self {
                shared,
                max_in_flight: settings.enricher_kafka_max_in_flight.max(1),
            },
            intake,
            status,
        }))
    }

    /// Consumes until `shutdown` resolves, then stops within 10 s (see the
    /// module's documentation).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let mut tracker = Tracker::default();
        let mut generation = shared.consumer.context().rebalances();
        let mut turns: HashMap<Vec<u8>, Turn> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let next = async {
                let permit = permits.clone().acquire_owned().await;
                (permit, shared.consumer.recv().await)
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = done_rx.recv() => {
                    store(&shared, &mut tracker, generation, done);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                (permit, received) = next => {
                    let Ok(permit) = permit else { break };
                    let message = match received {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(%error, "cannot receive from Kafka");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let now = shared.consumer.context().rebalances();
                    if now != generation {
                        generation = now;
                        tracker.clear();
                    }
                    let record = Record::from(&message);
                    drop(message);
                    shared.metrics.kafka_records_in.inc();
                    tracker.take(&record.partition, record.offset);
                    let (turn_tx, turn_rx) = oneshot::channel::<()>();
                    let mine: Turn = turn_rx.map(|_| ()).boxed().shared();
                    let key = record.key.clone().unwrap_or_default();
                    let previous = turns.insert(key, mine);
                    if turns.len() > 4 * self.max_in_flight {
                        // Finished turns go (polling a finished one resolves at
                        // once); at most `max_in_flight` are unfinished.
                        turns.retain(|_, turn| turn.clone().now_or_never().is_none());
                    }
                    let shared = shared.clone();
                    let done_tx = done_tx.clone();
                    tasks.spawn(async move {
                        if let Some(previous) = previous {
                            previous.await;
                        }
                        let (partition, offset) = (record.partition.clone(), record.offset);
                        process(&shared, record, generation).await;
                        drop(permit);
                        let _ = done_tx.send(Done { generation, partition, offset });
                        let _ = turn_tx.send(());
                    });
                }
            }
        }
        tracing::info!(
            in_flight = tracker.in_flight(),
            "shutdown requested: no more records are taken"
        );
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while !tasks.is_empty() {
            tokio::select! {
                biased;
                Some(done) = done_rx.recv() => store(&shared, &mut tracker, generation, done),
                Some(_) = tasks.join_next() => {}
                () = &mut grace => {
                    tracing::warn!(
                        abandoned = tracker.in_flight(),
                        "shutdown grace over: records in flight are abandoned, unstored, for replay"
                    );
                    break;
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        while let Ok(done) = done_rx.try_recv() {
            store(&shared, &mut tracker, generation, done);
        }
        leave(shared).await;
    }
}

impl From<&BorrowedMessage<'_>> for Record {
    fn from(message: &BorrowedMessage<'_>) -> Self {
        Record {
            partition: (message.topic().to_owned(), message.partition()),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message.headers().map(BorrowedHeaders::detach),
        }
    }
}

/// A record is acknowledged: stores its partition's offset when every earlier
/// record of it is acknowledged too.
fn store(shared: &Shared_, tracker: &mut Tracker, generation: u64, done: Done) {
    if done.generation != generation {
        return;
    }
    let Some(next) = tracker.finish(&done.partition, done.offset) else {
        return;
    };
    let mut offsets = TopicPartitionList::new();
    let (topic, partition) = &done.partition;
    if let Err(error) = offsets.add_partition_offset(topic, *partition, Offset::Offset(next)) {
        tracing::error!(%error, "cannot record an offset");
        return;
    }
    if let Err(error) = shared.consumer.store_offsets(&offsets) {
        tracing::debug!(%error, "cannot store an offset (partition revoked?)");
    }
}

/// Enriches one record and produces its answer or dead letter, retrying
/// transient failures until they pass (the task is aborted at shutdown).
/// While traces are exported, this runs in a span that continues the record's
/// trace, and the answer carries that span's trace context.
async fn process(shared: &Shared_, record: Record, generation: u64) {
    let span = record_span(
        "enrich record",
        record.headers.as_ref(),
        &record.partition.0,
        record.partition.1,
        record.offset,
    );
    match span {
        Some(span) => {
            enrich_record(shared, record, generation)
                .instrument(span)
                .await
        }
        None => enrich_record(shared, record, generation).await,
    }
}

/// Whether this process still owns the partition a record of `generation`
/// (the rebalance count when it was fetched) came from. After a rebalance
/// that took it away, the new owner fetches the record again from the stored
/// offset and answers it: an answer from here could land after the new
/// owner's answer to a later record of the same user.
fn still_owns(shared: &Shared_, partition: &Partition, generation: u64) -> bool {
    if shared.consumer.context().rebalances() == generation {
        return true;
    }
    shared
        .consumer
        .assignment()
        .is_ok_and(|assigned| assigned.find_partition(&partition.0, partition.1).is_some())
}

async fn enrich_record(shared: &Shared_, record: Record, generation: u64) {
    let mut delay = shared.first_backoff;
    let mut waiting = false;
    let verdict = loop {
        match handle(&shared.client, record.value.as_deref()).await {
            Verdict::Later(error) => {
                if !waiting {
                    waiting = true;
                    hold(shared, &record.partition);
                }
                tracing::warn!(
                    error = %error,
                    topic = record.partition.0,
                    partition = record.partition.1,
                    offset = record.offset,
                    retry_in = ?delay,
                    "transient enrichment failure: partition paused, record retried later"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            verdict => break verdict,
        }
    };
    if waiting {
        release(shared, &record.partition);
    }
    let mut verdict = verdict;
    let mut delay = shared.first_backoff;
    loop {
        if !still_owns(shared, &record.partition, generation) {
            shared.metrics.kafka_withheld.inc();
            tracing::info!(
                topic = record.partition.0,
                partition = record.partition.1,
                offset = record.offset,
                "the partition went to another member since the record was fetched: its answer is left to the new owner"
            );
            return;
        }
        let result = match &verdict {
            Verdict::Answer { key, body } => {
                let mut out = FutureRecord::to(&shared.output_topic)
                    .key(key.as_bytes())
                    .payload(body.as_slice());
                if let Some(headers) = trace_context(&tracing::Span::current()) {
                    out = out.headers(headers);
                }
                shared
                    .producer
                    .send(out, QUEUE_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| error)
            }
            Verdict::DeadLetter(reason) => {
                shared
                    .dead_letters
                    .write(
                        &record.partition.0,
                        record.partition.1,
                        record.offset,
                        record.key.as_deref(),
                        record.value.as_deref(),
                        record.headers.as_ref(),
                        reason,
                    )
                    .await
            }
            Verdict::Later(_) => return,
        };
        match result {
            Ok(()) => {
                match &verdict {
                    Verdict::Answer { .. } => shared.metrics.kafka_records_out.inc(),
                    _ => {
                        shared.metrics.kafka_dead_lettered.inc();
                        tracing::warn!(
                            topic = record.partition.0,
                            partition = record.partition.1,
                            offset = record.offset,
                            "record sent to the dead-letter topic"
                        );
                    }
                }
                return;
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
                if matches!(verdict, Verdict::Answer { .. }) =>
            {
                // Retrying cannot help: the record goes to the dead letters.
                let bytes = match &verdict {
                    Verdict::Answer { body, .. } => body.len(),
                    _ => 0,
                };
                verdict = Verdict::DeadLetter(format!(
                    "the answer ({bytes} bytes) is too large for the output topic \
                     (the producer's limit: {MAX_MESSAGE_BYTES} bytes, or the topic's max.message.bytes)"
                ));
            }
            Err(error) => {
                shared.metrics.kafka_produce_failures.inc();
                tracing::error!(%error, retry_in = ?delay, "cannot produce; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A record of `partition` waits out a transient failure: the partition is
/// paused (the consumer keeps polling, so it stays in its group).
fn hold(shared: &Shared_, partition: &Partition) {
    let Ok(mut paused) = shared.paused.lock() else {
        return;
    };
    let entry = paused
        .entry(partition.clone())
        .or_insert((0, Instant::now()));
    entry.0 += 1;
    if entry.0 == 1 {
        entry.1 = Instant::now();
        set_paused(shared, partition, true);
    }
}

fn release(shared: &Shared_, partition: &Partition) {
    let Ok(mut paused) = shared.paused.lock() else {
        return;
    };
    let Some(entry) = paused.get_mut(partition) else {
        return;
    };
    entry.0 = entry.0.saturating_sub(1);
    if entry.0 == 0 {
        shared
            .metrics
            .kafka_paused_seconds
            .inc_by(entry.1.elapsed().as_secs_f64());
        paused.remove(partition);
        set_paused(shared, partition, false);
    }
}

fn set_paused(shared: &Shared_, (topic, partition): &Partition, pause: bool) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    let result = if pause {
        shared.consumer.pause(&list)
    } else {
        shared.consumer.resume(&list)
    };
    match result {
        Ok(()) => tracing::info!(topic, partition, pause, "partition pause changed"),
        Err(error) => tracing::debug!(%error, topic, partition, "cannot pause or resume"),
    }
}

/// Commits the stored offsets and leaves the group, bounded: with the broker
/// away, closing the client could otherwise take minutes.
async fn leave(shared: Arc<Shared_>) {
    shared.status.set_joined(false);
    let (done_tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        // Waits for the broker, on this thread of its own, bounded below.
        commit(&*shared.consumer, CommitMode::Sync);
        shared.consumer.unsubscribe();
        let _ = rdkafka::producer::Producer::flush(&shared.producer, Duration::from_millis(500));
        // Closes the consumer here (it leaves the group) once no task holds it.
        if let Ok(shared) = Arc::try_unwrap(shared) {
            drop(shared.consumer.into_inner());
        }
        let _ = done_tx.send(());
    });
    if tokio::time::timeout(LEAVE_TIMEOUT, done).await.is_err() {
        tracing::warn!("the broker did not answer: leaving the group without it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_variables;

    fn kafka(pairs: &[(&str, &str)]) -> KafkaSettings {
        from_variables(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .unwrap()
        .kafka
    }

    #[test]
    fn the_consumer_fetches_ahead_at_most_kafka_queued_max_kbytes() {
        let kbytes = |settings: &KafkaSettings| {
            consumer_config(settings)
                .get("queued.max.messages.kbytes")
                .map(str::to_owned)
        };
        assert_eq!(kbytes(&kafka(&[])).as_deref(), Some("2048"));
        assert_eq!(
            kbytes(&kafka(&[("KAFKA_QUEUED_MAX_KBYTES", "300")])).as_deref(),
            Some("300")
        );
    }

    #[test]
    fn the_producer_waits_for_the_broker_and_buffers_a_bounded_amount() {
        let config = producer_config(&kafka(&[]));
        assert_eq!(config.get("message.timeout.ms"), Some("10000"));
        assert_eq!(config.get("queue.buffering.max.kbytes"), Some("4096"));
        assert_eq!(config.get("queued.max.messages.kbytes"), None);
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("message.max.bytes"), Some("3145728"));
    }
}
