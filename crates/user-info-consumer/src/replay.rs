//! `user-info-consumer replay-dlq`: puts dead letters back on the topic they
//! came from, once an operator has fixed what refused them (a constraint
//! dropped, a validation rule relaxed).
//!
//! Each dead letter read is re-produced to its `dlq-source-topic` with its
//! original key, value and headers (the `dlq-*` ones dropped) plus
//! `dlq-replayed-from: <dead-letter topic>/<partition>/<offset>` and
//! `dlq-replayed-source: <topic>/<partition>/<offset>` (where the record was
//! first: the consumer skips the replay when the user changed since - see
//! `user_store`'s `replays`), and acknowledged
//! before the run commits its position under its own consumer group
//! (`<KAFKA_GROUP_ID>.replay-dlq`, or `--group`): a second run starts where the
//! first stopped and replays nothing twice - also when the first failed half-way
//! (what it had replayed is committed before it reports the failure, and every
//! [`COMMIT_EVERY`] letters on the way). Letters a filter leaves out are
//! passed over for good by that group (another `--group` examines them again).
//! `--dry-run` counts what would be replayed and changes nothing.
//!
//! **Superseded letters.** A letter whose user changed after it was
//! dead-lettered (HTTP or Kafka) would make the user older: reading the marks
//! the consumer keeps (`DATABASE_URL`), the run leaves it out and counts it as
//! superseded - in `--dry-run` too. The consumer checks again when a replay
//! arrives, under the user's row lock, so a change made in between is still
//! caught; without the database the run replays every selected letter and the
//! consumer alone skips them.
//!
//! **Partition.** A letter goes back to the partition its record came from
//! (`dlq-source-partition`), so it stays behind the user's earlier records and
//! before the later ones, whatever partitioner the original producer used
//! (Java clients and kafka-python hash keys with murmur2, librdkafka with
//! CRC32). Only when that partition no longer exists (or the header is
//! missing) is the key hashed, with murmur2 like Java's default partitioner.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use service_kit::error_chain;
use service_kit::kafka::DEAD_LETTER_MAX_BYTES;
use user_store::{DatabaseSettings, MarksReader, RecordPlace};

use crate::config::ConsumerSettings;
use crate::records::REPLAYED_SOURCE;

/// How long a run waits for one more dead letter before it takes the topic as
/// read to its end.
const IDLE: Duration = Duration::from_secs(3);
/// How many letters a run replays between two commits of its position.
const COMMIT_EVERY: u64 = 100;

/// One end of the range to replay: an offset, or a time (the record's timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Offset(i64),
    Time(DateTime<Utc>),
}

impl Bound {
    fn parse(text: &str) -> Result<Self, String> {
        if let Ok(offset) = text.parse::<i64>() {
            return Ok(Bound::Offset(offset));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| Bound::Time(time.with_timezone(&Utc)))
            .map_err(|_| format!("`{text}` is neither an offset nor an RFC 3339 time"))
    }

    /// Whether a record at `offset`, stamped `time` (ms since the epoch), is
    /// before this bound.
    fn is_after(&self, offset: i64, time: Option<i64>) -> bool {
        match self {
            Bound::Offset(bound) => offset < *bound,
            Bound::Time(bound) => time.is_some_and(|ms| ms < bound.timestamp_millis()),
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Replay letters from here on (inclusive).
    pub since: Option<Bound>,
    /// Stop before here (exclusive); the run's position stays there.
    pub until: Option<Bound>,
    /// Replay only letters whose `dlq-reason` contains this text.
    pub reason: Option<String>,
    pub dry_run: bool,
    pub group: Option<String>,
}

impl Options {
    /// Parses the words after `replay-dlq`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options::default();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let mut value = |name: &str| {
                words
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match word.as_str() {
                "--since" => options.since = Some(Bound::parse(&value("--since")?)?),
                "--until" => options.until = Some(Bound::parse(&value("--until")?)?),
                "--reason" => options.reason = Some(value("--reason")?),
                "--group" => options.group = Some(value("--group")?),
                "--dry-run" => options.dry_run = true,
                other => {
                    return Err(format!(
                        "unknown argument `{other}`; usage: replay-dlq [--since OFFSET|TIME] \
                         [--until OFFSET|TIME] [--reason TEXT] [--group NAME] [--dry-run]"
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub replayed: u64,
    pub skipped: u64,
    /// Letters not replayed because their users changed since they were
    /// dead-lettered.
    pub superseded: u64,
}

/// Replays the dead letters the options select; see the module's header.
/// `database`: where the consumer writes, to leave out superseded letters;
/// without it (unreachable) every selected letter is replayed and the
/// consumer skips the superseded ones as they arrive.
pub async fn replay(
    settings: &ConsumerSettings,
    database: &DatabaseSettings,
    options: &Options,
) -> anyhow::Result<Summary> {
    let mut marks = match MarksReader::connect(database).await {
        Ok(marks) => Some(marks),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "cannot read the dead letters' marks: every selected letter is replayed, and the consumer skips those whose users changed since");
            None
        }
    };
    let topic = settings.kafka_dlq_topic.as_str();
    let group = options
        .group
        .clone()
        .unwrap_or_else(|| format!("{}.replay-dlq", settings.kafka_group_id));
    let consumer: StreamConsumer = settings
        .kafka_consumer()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .context("cannot create the Kafka consumer")?;
    let producer: FutureProducer = settings
        .kafka_client()
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", DEAD_LETTER_MAX_BYTES.to_string())
        .create()
        .context("cannot create the Kafka producer")?;

    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition(topic, partition.id());
    }
    if assignment.count() == 0 {
        bail!("the dead-letter topic {topic} has no partitions (does it exist?)");
    }
    let committed = consumer
        .committed_offsets(assignment, Duration::from_secs(10))
        .context("cannot read the run's committed position")?;
    let mut start = TopicPartitionList::new();
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(offset) => Offset::Offset(offset),
            _ => Offset::Beginning,
        };
        start.add_partition_offset(topic, element.partition(), offset)?;
    }
    consumer
        .assign(&start)
        .context("cannot assign the dead-letter topic")?;

    let mut summary = Summary::default();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut stopped: Vec<i32> = Vec::new();
    let mut partition_counts: HashMap<String, i32> = HashMap::new();
    while let Ok(received) = tokio::time::timeout(IDLE, consumer.recv()).await {
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                commit_positions(&consumer, topic, &positions, options.dry_run)?;
                return Err(error).context("cannot read the dead-letter topic");
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        if stopped.contains(&partition) {
            continue;
        }
        let time = message.timestamp().to_millis();
        if options
            .until
            .is_some_and(|until| !until.is_after(offset, time))
        {
            stopped.push(partition);
            continue;
        }
        summary.read += 1;
        let reason = header(&message, "dlq-reason").unwrap_or_default();
        let selected = options
            .since
            .is_none_or(|since| !since.is_after(offset, time))
            && options
                .reason
                .as_deref()
                .is_none_or(|wanted| reason.contains(wanted));
        if !selected {
            summary.skipped += 1;
            positions.insert(partition, offset + 1);
            continue;
        }
        let source =
            header(&message, "dlq-source-topic").unwrap_or_else(|| settings.kafka_topic.clone());
        let source_partition = header(&message, "dlq-source-partition")
            .and_then(|partition| partition.parse::<i32>().ok());
        // Where the record was first: its letter's mark is found by it.
        let original_place = source_partition
            .zip(header(&message, "dlq-source-offset"))
            .and_then(|(partition, offset)| {
                Some(RecordPlace {
                    topic: source.clone(),
                    partition,
                    offset: offset.parse().ok()?,
                })
            });
        if let (Some(reader), Some(place)) = (&marks, &original_place) {
            match reader.is_superseded(place).await {
                Ok(true) => {
                    tracing::info!(
                        letter = format!("{topic}/{partition}/{offset}"),
                        "superseded: its user changed after it was dead-lettered; not replayed"
                    );
                    summary.superseded += 1;
                    positions.insert(partition, offset + 1);
                    continue;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "cannot read the dead letters' marks any more: the consumer skips superseded letters as they arrive");
                    marks = None;
                }
            }
        }
        if !options.dry_run {
            let replayed_from = format!("{topic}/{partition}/{offset}");
            let mut headers = OwnedHeaders::new();
            if let Some(original) = message.headers() {
                for kept in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
                    headers = headers.insert(Header {
                        key: kept.key,
                        value: kept.value,
                    });
                }
            }
            headers = headers.insert(Header {
                key: "dlq-replayed-from",
                value: Some(&replayed_from),
            });
            // The consumer finds the letter's mark by it, and skips the
            // replay if its user changed since.
            let original = original_place
                .as_ref()
                .map(|place| format!("{}/{}/{}", place.topic, place.partition, place.offset));
            if let Some(place) = &original {
                headers = headers.insert(Header {
                    key: REPLAYED_SOURCE,
                    value: Some(place),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&source).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(value) = message.payload() {
                record = record.payload(value);
            }
            let count = match partition_counts.get(&source) {
                Some(count) => *count,
                None => {
                    let count = partition_count(&consumer, &source).unwrap_or(0);
                    partition_counts.insert(source.clone(), count);
                    count
                }
            };
            if let Some(original) =
                source_partition.filter(|partition| (0..count).contains(partition))
            {
                record = record.partition(original);
            }
            let sent = producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)
                .with_context(|| format!("cannot replay {replayed_from} to {source}"));
            if let Err(error) = sent {
                commit_positions(&consumer, topic, &positions, false)?;
                return Err(error);
            }
        }
        positions.insert(partition, offset + 1);
        summary.replayed += 1;
        if summary.replayed % COMMIT_EVERY == 0 {
            commit_positions(&consumer, topic, &positions, options.dry_run)?;
        }
    }
    commit_positions(&consumer, topic, &positions, options.dry_run)?;
    Ok(summary)
}

/// Commits the run's position: after the last letter it replayed or passed
/// over, per partition. A dry run commits nothing.
fn commit_positions(
    consumer: &StreamConsumer,
    topic: &str,
    positions: &HashMap<i32, i64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    if dry_run || positions.is_empty() {
        return Ok(());
    }
    let mut done = TopicPartitionList::new();
    for (partition, next) in positions {
        done.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    consumer
        .commit(&done, CommitMode::Sync)
        .context("cannot commit the run's position")
}

/// How many partitions `topic` has now; `None` when the broker does not say.
fn partition_count(consumer: &StreamConsumer, topic: &str) -> Option<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    i32::try_from(partitions).ok().filter(|count| *count > 0)
}

fn header<M: Message>(message: &M, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_take_offsets_times_a_reason_and_dry_run() {
        let options = Options::parse(&words(
            "--since 10 --until 2026-12-02T10:00:00Z --reason 23514 --dry-run",
        ))
        .unwrap();
        assert_eq!(options.since, Some(Bound::Offset(10)));
        assert!(matches!(options.until, Some(Bound::Time(_))));
        assert_eq!(options.reason.as_deref(), Some("23514"));
        assert!(options.dry_run);
        assert!(Options::parse(&words("--since yesterday")).is_err());
        assert!(Options::parse(&words("--reason")).is_err());
        assert!(Options::parse(&words("--force")).is_err());
    }

    #[test]
    fn bounds_compare_offsets_and_timestamps() {
        assert!(Bound::Offset(5).is_after(4, None));
        assert!(!Bound::Offset(5).is_after(5, None));
        let noon = Bound::parse("2026-12-02T12:00:00Z").unwrap();
        let before = DateTime::parse_from_rfc3339("2026-12-02T11:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert!(noon.is_after(0, Some(before)));
        assert!(!noon.is_after(0, Some(before + 2 * 3600 * 1000)));
    }
}
