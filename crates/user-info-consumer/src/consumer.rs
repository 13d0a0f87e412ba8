//! The consume loop: Kafka -> PostgreSQL, effectively once. It only moves
//! data: what a record means is `records`' job, how it is stored the store's.
//!
//! **Effectively once.** The next offset of each (group, topic, partition) is
//! stored in PostgreSQL, in the same transaction as the rows its records
//! changed, and a batch moves it only from the value it started from. So:
//! - a crash anywhere loses nothing and applies nothing twice: the transaction
//!   either holds the rows and the offset, or neither;
//! - a member that lost its partition while a batch was held up (a zombie)
//!   finds the offset moved, rolls back and drops the batch (`fenced`);
//! - on assignment a member reads the stored offsets, skips records before them
//!   and seeks back when Kafka's committed offset is past them. Where the group
//!   has no row yet (an upgrade), Kafka's committed offset counts, then
//!   `KAFKA_AUTO_OFFSET_RESET`.
//!
//! Kafka's committed offsets follow (auto offset store off, stored after each
//! committed transaction, committed asynchronously) for lag tooling only.
//!
//! Records are applied in batches (`CONSUMER_BATCH_SIZE` records,
//! `CONSUMER_BATCH_MAX_BYTES` or `CONSUMER_BATCH_MAX_WAIT_MS`), folded once per user in offset order so the
//! result equals one-by-one application. While a batch's transaction runs, the
//! next batch's records are received and decoded (read ahead), so the database
//! and the decoding work at once; they are applied only after it is stored.
//! Dead letters are written (and acknowledged) before the batch's transaction,
//! so an offset never passes a record that is neither applied nor
//! dead-lettered. While the database or the
//! dead-letter topic is unavailable, the assigned partitions are paused (the
//! consumer keeps polling, so it stays in its group) and the batch is retried
//! with capped exponential backoff. Any rebalance drops everything in hand:
//! the assignment it was fetched under is gone.
//!
//! **Nothing dropped waits for traffic.** Records are dropped unapplied when a
//! batch is fenced (another member moved the offset - or our own COMMIT
//! succeeded but its answer came after `DATABASE_QUERY_TIMEOUT`, so the retry
//! found the offset moved) and while a pause has failed. Kafka's fetch position
//! is past them, so each such partition is sought back at once, to its stored
//! offset (or to the first record dropped while the stored offset is unknown);
//! a seek that fails is retried every second. Only a rebalance needs no seek:
//! a new assignment fetches from Kafka's committed offset, never past
//! PostgreSQL's.
//!
//! **Stopping.** SIGTERM/SIGINT: the batch in hand may finish within
//! [`SHUTDOWN_GRACE`]; what cannot (a silent database) is abandoned - nothing is
//! stored for it, the next owner replays it - and leaving the group is bounded
//! too, so the process exits within 10 s whatever the database and the broker do.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use service_kit::error_chain;
use service_kit::kafka::{DEAD_LETTER_MAX_BYTES, DeadLetters};
use service_kit::kafka::{DropAside, MemberContext, commit};
use tokio::sync::watch;
use user_store::{BatchWrite, OffsetAdvance, StoreError};

use crate::config::ConsumerSettings;
use crate::records::{Batch, Incoming};
use crate::status::Status;

/// How long after SIGTERM the batch in hand may still be worked on.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long leaving the group may take after that.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a seek back that failed is tried again.
const SEEK_RETRY: Duration = Duration::from_secs(1);

type Partition = (String, i32);

/// What this member knows of one assigned partition.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// The stored next offset; `None` while the group has no row for it.
    stored: Option<i64>,
    /// Whether the records received since follow on from `stored` (the first
    /// was `stored` itself, or we sought there). Until then a record past
    /// `stored` means Kafka's committed offset was ahead of PostgreSQL's.
    contiguous: bool,
}

/// Why a batch ended without its offsets being stored.
enum Outcome {
    Done,
    /// A rebalance or a fence: everything in hand is dropped.
    Dropped,
    /// Shutdown's grace is over.
    Stopping,
}

pub struct UserConsumer {
    /// Dropped aside: see [`DropAside`]; [`UserConsumer::leave`] closes it, bounded.
    consumer: DropAside<StreamConsumer<MemberContext>>,
    dead_letters: DeadLetters,
    status: Arc<Status>,
    group: String,
    topic: String,
    batch_size: usize,
    batch_max_bytes: usize,
    batch_wait: Duration,
}

/// The loop's own state: what was received, and where each partition stands.
struct Intake {
    buffer: Vec<Incoming>,
    /// The keys' and values' bytes in `buffer`.
    buffered_bytes: usize,
    positions: HashMap<Partition, Position>,
    /// The rebalance count the buffer and positions belong to.
    generation: u64,
    /// Partitions whose records are being discarded (a pause that failed)
    /// until the batch in hand ends.
    discarding: HashSet<Partition>,
    /// Partitions whose records were dropped unapplied, with the first such
    /// offset: each is sought back once the batch in hand ends.
    dropped: HashMap<Partition, i64>,
}

impl Intake {
    /// Notes that `records` are dropped unapplied: their partitions must be
    /// sought back.
    fn drop_unapplied<'a>(&mut self, records: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        for (topic, partition, offset) in records {
            self.dropped
                .entry((topic.to_owned(), partition))
                .and_modify(|first| *first = (*first).min(offset))
                .or_insert(offset);
        }
    }

    /// Drops the buffer (records read ahead), noting what it held.
    fn drop_buffer(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.buffered_bytes = 0;
        self.drop_unapplied(
            buffer
                .iter()
                .map(|record| (record.topic.as_str(), record.partition, record.offset)),
        );
    }
}

/// The member's librdkafka settings: the shared ones with the prefetch bound
/// (`KAFKA_QUEUED_MAX_KBYTES`), offsets stored by the loop and auto-committed.
fn consumer_config(settings: &ConsumerSettings) -> ClientConfig {
    let mut config = settings.kafka.member_config(
        &settings.kafka_group_id,
        &settings.kafka_auto_offset_reset,
        settings.kafka_session_timeout_ms,
        settings.kafka_heartbeat_interval_ms,
    );
    config.set(
        "max.poll.interval.ms",
        settings.kafka_max_poll_interval_ms.to_string(),
    );
    config
}

impl UserConsumer {
    pub fn new(settings: &ConsumerSettings, status: Arc<Status>) -> anyhow::Result<Self> {
        let consumer: StreamConsumer<MemberContext> =
            consumer_config(settings).create_with_context(member_context(&status))?;
        consumer.subscribe(&[settings.kafka_topic.as_str()])?;
        let producer: FutureProducer = settings
            .kafka_client()
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("message.max.bytes", DEAD_LETTER_MAX_BYTES.to_string())
            .create()?;
        tracing::info!(
            topic = settings.kafka_topic,
            group = settings.kafka_group_id,
            dead_letters = settings.kafka_dlq_topic,
            "consumer subscribed"
        );
        Ok(Self {
            consumer: DropAside::new(consumer),
            dead_letters: DeadLetters::new(producer, settings.kafka_dlq_topic.clone()),
            status,
            group: settings.kafka_group_id.clone(),
            topic: settings.kafka_topic.clone(),
            batch_size: settings.consumer_batch_size.max(1),
            batch_max_bytes: settings.consumer_batch_max_bytes.max(1),
            batch_wait: settings.batch_wait(),
        })
    }

    /// Consumes until `shutdown` resolves, then leaves the group, all within
    /// 10 s of the signal.
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
        let mut intake = Intake {
            buffer: Vec::new(),
            buffered_bytes: 0,
            positions: HashMap::new(),
            generation: self.consumer.context().rebalances(),
            discarding: HashSet::new(),
            dropped: HashMap::new(),
        };
        loop {
            let mut stopping = stop.clone();
            if stopping.borrow().is_some() {
                break;
            }
            self.follow_rebalances(&mut intake);
            self.seek_back(&mut intake);
            let seeks_pending = !intake.dropped.is_empty();
            tokio::select! {
                biased;
                _ = stopping.changed() => break,
                _ = self.fill(&mut intake) => {}
                () = tokio::time::sleep(SEEK_RETRY), if seeks_pending => continue,
            }
            let Some(batch) = self.next_batch(&mut intake, &stop).await else {
                continue;
            };
            if let Outcome::Stopping = self.process(batch, &mut intake, &stop).await {
                break;
            }
        }
        self.leave().await;
        Ok(())
    }

    /// Waits for a first record, then takes more until the batch is full or
    /// its wait is over. Cancel-safe: what was received is already taken in.
    async fn fill(&self, intake: &mut Intake) {
        if intake.buffer.is_empty() {
            match self.consumer.recv().await {
                Ok(message) => self.take_in(intake, &message),
                Err(error) => {
                    tracing::warn!(%error, "cannot receive from Kafka");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return;
                }
            }
        }
        self.take_in_for_a_batch(intake).await;
    }

    /// Takes records in until the buffer holds a batch (`CONSUMER_BATCH_SIZE`
    /// records or `CONSUMER_BATCH_MAX_BYTES`), `CONSUMER_BATCH_MAX_WAIT_MS`
    /// has passed or Kafka fails to deliver. Yields after each record, so that a
    /// transaction running beside it (read-ahead) sees its answers between
    /// records. Cancel-safe: what was received is already taken in.
    async fn take_in_for_a_batch(&self, intake: &mut Intake) {
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while intake.buffer.len() < self.batch_size && intake.buffered_bytes < self.batch_max_bytes
        {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => self.take_in(intake, &message),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot receive from Kafka");
                    break;
                }
                Err(_) => break,
            }
            tokio::task::yield_now().await;
        }
    }

    /// Takes a received record in - after dropping everything held under an
    /// older assignment, when a rebalance happened since.
    fn take_in(&self, intake: &mut Intake, message: &BorrowedMessage<'_>) {
        self.follow_rebalances(intake);
        let partition = (message.topic().to_owned(), message.partition());
        if intake.discarding.contains(&partition) {
            intake.drop_unapplied([(message.topic(), message.partition(), message.offset())]);
            return;
        }
        let record = Incoming::from_message(message);
        intake.buffered_bytes += record.size();
        intake.buffer.push(record);
    }

    /// `true` when a rebalance happened since the intake was last checked; the
    /// buffer and positions are then dropped.
    fn follow_rebalances(&self, intake: &mut Intake) -> bool {
        let now = self.consumer.context().rebalances();
        if now == intake.generation {
            return false;
        }
        if !intake.buffer.is_empty() {
            tracing::info!(
                records = intake.buffer.len(),
                "rebalanced: records fetched under the old assignment are dropped"
            );
        }
        intake.generation = now;
        intake.buffer.clear();
        intake.buffered_bytes = 0;
        intake.positions.clear();
        intake.discarding.clear();
        intake.dropped.clear();
        true
    }

    /// Turns the buffer into a batch: positions of newly assigned partitions
    /// read from PostgreSQL, records it already holds skipped, and a seek back
    /// where Kafka's position is past PostgreSQL's. `None` when nothing is left
    /// to apply.
    async fn next_batch(
        &self,
        intake: &mut Intake,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> Option<Batch> {
        let unresolved = intake
            .buffer
            .iter()
            .any(|record| !intake.positions.contains_key(&record.partition_key()));
        if unresolved {
            let mut delay = Duration::from_millis(100);
            loop {
                let read = self
                    .status
                    .database
                    .stored_offsets(&self.group, &self.topic);
                let read = tokio::select! {
                    read = read => read,
                    () = grace_over(stop.clone()) => return None,
                };
                match read {
                    Ok(stored) => {
                        self.status.set_database_failing(false);
                        for record in &intake.buffer {
                            intake
                                .positions
                                .entry(record.partition_key())
                                .or_insert(Position {
                                    stored: stored.get(&record.partition).copied(),
                                    contiguous: false,
                                });
                        }
                        break;
                    }
                    Err(error) => {
                        self.status.set_database_failing(true);
                        self.status.metrics.database_retries.inc();
                        tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "cannot read the stored offsets");
                        let mut paused = false;
                        match self.back_off(&mut delay, &mut paused, intake, stop).await {
                            Outcome::Done => {}
                            _ => return None,
                        }
                        if paused {
                            self.resume();
                        }
                    }
                }
            }
        }
        let mut behind: HashSet<Partition> = HashSet::new();
        let records = std::mem::take(&mut intake.buffer);
        intake.buffered_bytes = 0;
        let mut kept = Vec::with_capacity(records.len());
        for record in records {
            let key = record.partition_key();
            if behind.contains(&key) {
                continue;
            }
            let Some(position) = intake.positions.get_mut(&key) else {
                continue;
            };
            match position.stored {
                Some(stored) if record.offset < stored => {}
                Some(stored) if !position.contiguous && record.offset > stored => {
                    intake.drop_unapplied([(record.topic.as_str(), record.partition, stored)]);
                    behind.insert(key);
                }
                _ => {
                    position.contiguous = true;
                    kept.push(record);
                }
            }
        }
        if !behind.is_empty() {
            kept.retain(|record| !behind.contains(&record.partition_key()));
            self.seek_back(intake);
        }
        if kept.is_empty() {
            return None;
        }
        Some(Batch::new(kept))
    }

    /// Moves a partition's fetch position back to `offset`; `false` when
    /// librdkafka refused (the partition's position is then not trusted).
    fn seek(&self, topic: &str, partition: i32, offset: i64, intake: &mut Intake) -> bool {
        let key = (topic.to_owned(), partition);
        let result = self.consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(1),
        );
        let sought = result.is_ok();
        match result {
            Ok(()) => tracing::info!(topic, partition, offset, "sought back"),
            Err(error) => tracing::warn!(%error, topic, partition, offset, "cannot seek"),
        }
        if let Some(position) = intake.positions.get_mut(&key) {
            position.contiguous = sought;
        }
        sought
    }

    /// Seeks every partition whose records were dropped back to its stored
    /// offset - or, while that is unknown, to the first record dropped (what
    /// comes again before the stored offset is then skipped). A partition no
    /// longer assigned is let go; a seek that fails stays, to be retried.
    /// Leaves everything while a rebalance is not yet followed (it drops what
    /// was noted).
    fn seek_back(&self, intake: &mut Intake) {
        if intake.dropped.is_empty() || self.consumer.context().rebalances() != intake.generation {
            return;
        }
        let assigned = match self.consumer.assignment() {
            Ok(assigned) => assigned,
            Err(error) => {
                tracing::warn!(%error, "cannot read the assignment to seek back");
                return;
            }
        };
        for (key, first) in std::mem::take(&mut intake.dropped) {
            let (topic, partition) = &key;
            if assigned.find_partition(topic, *partition).is_none() {
                continue;
            }
            let offset = match intake.positions.get(&key).and_then(|p| p.stored) {
                Some(stored) => stored,
                None => {
                    intake.positions.remove(&key);
                    first
                }
            };
            if !self.seek(topic, *partition, offset, intake) {
                intake.dropped.insert(key, first);
            }
        }
    }

    /// Writes the batch's dead letters, then applies its changes and advances
    /// its offsets in one transaction; retries while the database or the
    /// dead-letter topic is unavailable.
    #[tracing::instrument(name = "batch", skip_all, fields(records = batch.records()))]
    async fn process(
        &self,
        mut batch: Batch,
        intake: &mut Intake,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> Outcome {
        let started = Instant::now();
        // Traced records link the batch that applies them (and it them).
        let this = tracing::Span::current();
        for record in batch.record_spans() {
            this.follows_from(record);
        }
        let advances: Vec<OffsetAdvance> = batch
            .partitions
            .iter()
            .map(|((topic, partition), range)| OffsetAdvance {
                topic: topic.clone(),
                partition: *partition,
                expected: intake
                    .positions
                    .get(&(topic.clone(), *partition))
                    .and_then(|position| position.stored),
                next: range.next,
            })
            .collect();
        let generation = intake.generation;
        let mut paused = false;
        let mut written = 0;
        let mut delay = Duration::from_millis(100);
        let mut one_by_one = false;
        let outcome = loop {
            self.follow_rebalances(intake);
            if intake.generation != generation {
                break Outcome::Dropped;
            }
            let attempt = async {
                while let Some(letter) = batch.dead_letters.get(written) {
                    self.dead_letters
                        .write(
                            &letter.topic,
                            letter.partition,
                            letter.offset,
                            letter.poison.key.as_deref(),
                            letter.poison.value.as_deref(),
                            letter.poison.headers.as_ref(),
                            &letter.poison.reason,
                        )
                        .await
                        .map_err(Failure::DeadLetter)?;
                    tracing::warn!(
                        topic = letter.topic,
                        partition = letter.partition,
                        offset = letter.offset,
                        reason = letter.poison.reason,
                        "record sent to the dead-letter topic"
                    );
                    written += 1;
                }
                let (letters, replays, follow) = (
                    batch.letter_marks(),
                    batch.replays(),
                    batch.replays_to_follow(),
                );
                let write = BatchWrite {
                    folded: &batch.folded,
                    letters: &letters,
                    replays: &replays,
                    follow: &follow,
                    one_by_one,
                };
                self.status
                    .database
                    .apply_batch(&self.group, &advances, &write)
                    .await
                    .map_err(Failure::Database)
            };
            let result = tokio::select! {
                result = attempt => result,
                () = grace_over(stop.clone()) => break Outcome::Stopping,
                never = self.read_ahead(intake) => match never {},
            };
            match result {
                Ok(()) => break Outcome::Done,
                Err(Failure::Database(StoreError::Fenced { partitions })) => {
                    self.status.metrics.fenced.inc();
                    tracing::warn!(
                        partitions,
                        "batch fenced: a partition's offset was moved by another member; dropped"
                    );
                    // Our own COMMIT may have succeeded (its answer came too
                    // late): the batch's records and those read ahead are
                    // fetched again from where each partition stands.
                    intake.drop_unapplied(batch.partitions.iter().map(
                        |((topic, partition), range)| (topic.as_str(), *partition, range.first),
                    ));
                    intake.drop_buffer();
                    intake.positions.clear();
                    break Outcome::Dropped;
                }
                Err(Failure::Database(StoreError::Superseded(places))) => {
                    // Their users changed since they were dead-lettered:
                    // applying them would undo that. The rest applies.
                    batch.supersede(places);
                    continue;
                }
                Err(Failure::Database(StoreError::Rejected(error))) => {
                    // The database answered and refused: find the records it
                    // refuses (if any), dead-letter them, apply the rest.
                    let users = batch.users();
                    let found = tokio::select! {
                        found = self.status.database.find_refused(&users) => found,
                        () = grace_over(stop.clone()) => break Outcome::Stopping,
                    };
                    match found {
                        Ok(refusals) if !refusals.is_empty() => {
                            drop(users);
                            self.status.metrics.refused.inc_by(refusals.len() as u64);
                            tracing::warn!(
                                records = refusals.len(),
                                "the database refuses records of the batch: isolated for the dead-letter topic"
                            );
                            batch.refuse(refusals);
                            continue;
                        }
                        Ok(_) if !one_by_one => {
                            // Refused whole, no record refused alone: the
                            // multi-row statement met the changes in another
                            // order than the records'. One user at a time.
                            tracing::warn!(
                                "the database refuses the batch but no record of it alone: applying it user by user"
                            );
                            one_by_one = true;
                            continue;
                        }
                        Ok(_) => Failure::Database(StoreError::Rejected(error)),
                        Err(other) => Failure::Database(other),
                    }
                    .report(&self.status, &delay, self.dead_letters.topic());
                    match self.back_off(&mut delay, &mut paused, intake, stop).await {
                        Outcome::Done => {}
                        other => break other,
                    }
                }
                Err(failure) => {
                    failure.report(&self.status, &delay, self.dead_letters.topic());
                    match self.back_off(&mut delay, &mut paused, intake, stop).await {
                        Outcome::Done => {}
                        other => break other,
                    }
                }
            }
        };
        self.status.set_dead_letters_failing(false);
        if paused {
            self.resume();
        }
        intake.discarding.clear();
        match outcome {
            Outcome::Done => self.stored(&batch, intake, generation, started),
            Outcome::Dropped => {
                tracing::info!("the batch in hand is left to the partitions' owner")
            }
            Outcome::Stopping => {
                tracing::warn!(
                    "shutdown grace over: the batch in hand is abandoned, unstored, for replay"
                )
            }
        }
        outcome
    }

    /// While the batch in hand is applied: receives and decodes the records
    /// of the next one (up to a batch), so that it is ready the moment this one
    /// is stored - the database and the decoding work at the same time. They
    /// are only taken in: nothing is applied before the batch in hand is
    /// stored, and a rebalance, a fence or a discarding pause drops them with
    /// everything else in hand.
    ///
    /// Reads ahead for at most `CONSUMER_BATCH_MAX_WAIT_MS`, as a batch is
    /// filled: a member whose transaction hangs then stops polling, and
    /// `KAFKA_MAX_POLL_INTERVAL_MS` hands its partitions to a member that can
    /// apply them (the one in hand is fenced).
    async fn read_ahead(&self, intake: &mut Intake) -> Infallible {
        self.take_in_for_a_batch(intake).await;
        std::future::pending().await
    }

    /// After the batch's transaction committed: positions move (unless a
    /// rebalance since `generation` dropped them: the next batch reads them
    /// from PostgreSQL), Kafka's offsets follow.
    fn stored(&self, batch: &Batch, intake: &mut Intake, generation: u64, started: Instant) {
        self.status.set_database_failing(false);
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), range) in &batch.partitions {
            let key = (topic.clone(), *partition);
            if intake.generation == generation {
                let position = intake.positions.entry(key.clone()).or_insert(Position {
                    stored: None,
                    contiguous: true,
                });
                position.stored = Some(range.next);
            }
            if let Err(error) =
                offsets.add_partition_offset(topic, *partition, Offset::Offset(range.next))
            {
                tracing::error!(%error, "cannot record an offset");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            tracing::debug!(%error, "cannot store offsets in Kafka (partitions revoked?)");
        }
        let metrics = &self.status.metrics;
        metrics.applied.inc_by(batch.changes() as u64);
        metrics
            .dead_lettered
            .inc_by(batch.dead_letters.len() as u64);
        metrics.superseded.inc_by(batch.superseded.len() as u64);
        for place in &batch.superseded {
            tracing::warn!(
                topic = place.topic,
                partition = place.partition,
                offset = place.offset,
                "replayed dead letter skipped: its user changed after it was dead-lettered"
            );
        }
        metrics.batch_size.observe(batch.records() as f64);
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            applied = batch.changes(),
            dead_lettered = batch.dead_letters.len(),
            "batch done"
        );
    }

    /// Pauses every assigned partition; the consumer keeps polling meanwhile.
    /// When pausing fails, what arrives meanwhile is discarded (and re-read
    /// later from the stored offset) rather than piled up or applied.
    fn pause(&self, intake: &mut Intake) -> bool {
        let result = self.consumer.assignment().and_then(|partitions| {
            self.consumer.pause(&partitions)?;
            Ok(partitions)
        });
        match result {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot pause partitions: discarding what arrives until the batch is stored");
                if let Ok(partitions) = self.consumer.assignment() {
                    for element in partitions.elements() {
                        intake
                            .discarding
                            .insert((element.topic().to_owned(), element.partition()));
                    }
                }
                // Read ahead: they come again after the seek back.
                let (discarded, kept): (Vec<Incoming>, Vec<Incoming>) =
                    std::mem::take(&mut intake.buffer)
                        .into_iter()
                        .partition(|record| intake.discarding.contains(&record.partition_key()));
                intake.buffered_bytes = kept.iter().map(Incoming::size).sum();
                intake.buffer = kept;
                intake.drop_unapplied(
                    discarded
                        .iter()
                        .map(|record| (record.topic.as_str(), record.partition, record.offset)),
                );
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
    async fn back_off(
        &self,
        delay: &mut Duration,
        paused: &mut bool,
        intake: &mut Intake,
        stop: &watch::Receiver<Option<Instant>>,
    ) -> Outcome {
        let generation = intake.generation;
        if !*paused {
            *paused = self.pause(intake);
        }
        let until = tokio::time::Instant::now() + *delay;
        *delay = (*delay * 2).min(MAX_BACKOFF);
        loop {
            let received = tokio::select! {
                received = tokio::time::timeout_at(until, self.consumer.recv()) => received,
                () = grace_over(stop.clone()) => return Outcome::Stopping,
            };
            match received {
                Ok(Ok(message)) => self.take_in(intake, &message),
                Ok(Err(error)) => tracing::debug!(%error, "receive error while paused"),
                Err(_) => return Outcome::Done,
            }
            if intake.generation != generation {
                return Outcome::Dropped;
            }
        }
    }

    /// Hands Kafka the offsets for lag tooling and leaves the group, bounded:
    /// with the broker away, closing the client could otherwise take minutes.
    async fn leave(self) {
        commit(&*self.consumer, CommitMode::Async);
        self.status.set_joined(false);
        self.dead_letters.flush(Duration::from_millis(500));
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let consumer = self.consumer.into_inner();
            consumer.unsubscribe();
            drop(consumer);
            let _ = done_tx.send(());
        });
        if tokio::time::timeout(LEAVE_TIMEOUT, done).await.is_err() {
            tracing::warn!("the broker did not answer: leaving the group without it");
        }
    }
}

/// The group member's context: `/ready` follows its membership, `/metrics` its lag.
fn member_context(status: &Arc<Status>) -> MemberContext {
    let metrics = status.clone();
    MemberContext::new(status.joined(), move |topic, partition, lag| {
        metrics
            .metrics
            .lag
            .with_label_values(&[topic, partition.to_string().as_str()])
            .set(lag);
    })
}

/// Why an attempt at a batch failed.
enum Failure {
    DeadLetter(rdkafka::error::KafkaError),
    Database(StoreError),
}

impl Failure {
    fn report(&self, status: &Status, delay: &Duration, dead_letter_topic: &str) {
        match self {
            Failure::DeadLetter(error) => {
                status.set_dead_letters_failing(true);
                tracing::error!(%error, topic = dead_letter_topic, retry_in = ?delay, "cannot write a dead letter; partitions paused");
            }
            Failure::Database(error) => {
                status.set_database_failing(true);
                status.metrics.database_retries.inc();
                tracing::warn!(error = %error_chain(error), retry_in = ?delay, "cannot apply the batch; partitions paused");
            }
        }
    }
}

/// Resolves once shutdown was requested and its grace is over; never before.
async fn grace_over(mut stop: watch::Receiver<Option<Instant>>) {
    let since = match stop.wait_for(Option::is_some).await {
        Ok(since) => *since,
        Err(_) => return std::future::pending().await,
    };
    if let Some(since) = since {
        tokio::time::sleep_until((since + SHUTDOWN_GRACE).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_kit::settings::FromVariables;

    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_member_fetches_ahead_at_most_kafka_queued_max_kbytes() {
        let kbytes = |variables: &[(&str, &str)]| {
            let variables: HashMap<String, String> = variables
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let settings = Settings::from_variables(variables).unwrap();
            consumer_config(&settings.consumer)
                .get("queued.max.messages.kbytes")
                .map(str::to_owned)
        };
        assert_eq!(kbytes(&[]).as_deref(), Some("16384"));
        assert_eq!(
            kbytes(&[("KAFKA_QUEUED_MAX_KBYTES", "700")]).as_deref(),
            Some("700")
        );
    }
}
