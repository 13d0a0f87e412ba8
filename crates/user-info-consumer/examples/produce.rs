//! Pre-produces user records for the ingest benchmark (`bench/run.sh`):
//!
//! ```sh
//! cargo run --release --example produce -- <bootstrap> <topic> <count>
//! ```
//! Each record is a distinct user (key = value's `user_id`), like a backfill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topic, count] = args.as_slice() else {
        panic!("usage: produce <bootstrap> <topic> <count>");
    };
    let count: usize = count.parse().expect("count must be a number");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("cannot create the producer");
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let chunk = (count - sent).min(20_000);
        let records: Vec<(String, String)> = (0..chunk)
            .map(|n| {
                let id = Uuid::new_v4();
                let value = serde_json::json!({
                    "user_id": id,
                    "first_name": format!("First{}", sent + n),
                    "last_name": "Bench",
                    "email": format!("user{}@example.com", sent + n),
                    "phone_number": "+1 555 0100",
                });
                (id.to_string(), value.to_string())
            })
            .collect();
        let sends = records.iter().map(|(key, value)| {
            producer.send(
                FutureRecord::to(topic)
                    .key(key.as_str())
                    .payload(value.as_str()),
                Duration::from_secs(120),
            )
        });
        for result in join_all(sends).await {
            result.map_err(|(error, _)| error).expect("delivery failed");
        }
        sent += chunk;
    }
    eprintln!("produced {count} records in {:.1?}", started.elapsed());
}
