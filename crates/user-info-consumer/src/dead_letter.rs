//! Writing a record that cannot be applied to the dead-letter topic, with its
//! original key and value and where it came from.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::records::DeadLetter;

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

    /// Writes one dead letter and waits for the broker's acknowledgement.
    pub async fn write(&self, letter: &DeadLetter) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq-source-topic",
                value: Some(&letter.topic),
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
                value: Some(&letter.poison.reason),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &letter.poison.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.poison.value {
            record = record.payload(value.as_slice());
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
