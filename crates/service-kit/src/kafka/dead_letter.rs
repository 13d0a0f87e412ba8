//! Writing a record that cannot be processed to the dead-letter topic, with its
//! original key, value and headers (its trace context among them), and where
//! it came from: the headers `dlq-source-topic`, `dlq-source-partition`,
//! `dlq-source-offset` (decimal strings) and `dlq-reason` (the field and the
//! rule, never the value), after the original ones.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The producer's `message.max.bytes` for dead letters: above anything a
/// consumer could read (librdkafka's `receive.message.max.bytes`, 100 MB, bounds
/// a fetch) plus the letter's headers, so the producer never refuses a letter
/// for its size; the dead-letter topic's `max.message.bytes` decides (keep it
/// above the source topic's: deploy/ and compose give them 2 MiB). librdkafka's
/// own default, 1,000,000, is below Kafka's topic default (1 MiB): a record
/// near that limit, readable, would have stopped its partition for good.
pub const DEAD_LETTER_MAX_BYTES: u32 = 100 * 1024 * 1024;

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes one dead letter - the record from `source_topic`/`partition`/`offset`
    /// with its `key`, `value` and `headers` - and waits for the broker's
    /// acknowledgement.
    #[allow(clippy::too_many_arguments)]
    pub async fn write(
        &self,
        source_topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<&OwnedHeaders>,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let partition = partition.to_string();
        let offset = offset.to_string();
        // A letter's own `dlq-*` headers are the ones below (a replayed letter
        // refused again had its old ones dropped by the replay).
        let original = headers
            .map(|headers| headers.iter())
            .into_iter()
            .flatten()
            .filter(|header| !header.key.starts_with("dlq-"));
        let headers = original
            .fold(OwnedHeaders::new(), |copy, header| copy.insert(header))
            .insert(Header {
                key: "dlq-source-topic",
                value: Some(source_topic),
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
                value: Some(reason),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// Waits up to `timeout` for what is still in flight.
    pub fn flush(&self, timeout: Duration) {
        let _ = rdkafka::producer::Producer::flush(&self.producer, timeout);
    }
}
