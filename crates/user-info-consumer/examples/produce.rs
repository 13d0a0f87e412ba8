//! Pre-produces records for the benchmark (`bench/run.sh`):
//!
//! ```sh
//! cargo run --release --example produce -- <bootstrap> <topic> <count> [new|mixed|profiles]
//! ```
//! - `new` (the default): each record a distinct new user (key = value's
//!   `user_id`), like a backfill.
//! - `mixed`: of every ten records, five new users, four updates of one of the
//!   [`SEEDED`] users `bench/run.sh` puts in the table first (ids
//!   `00000000-0000-4000-8000-<n, 12 digits>`, n = 1..=100,000, spread by a
//!   multiplicative hash), and one tombstone of such a user.
//! - `profiles`: `POST /users` bodies for the enricher's Kafka mode (key = the
//!   userId `bench-<n>`), each one distinct.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

/// How many users the `mixed` shape's updates and tombstones pick from.
const SEEDED: u64 = 100_000;

#[derive(Clone, Copy)]
enum Shape {
    New,
    Mixed,
    Profiles,
}

/// Record `n` of the shape: key and value (`None` = a tombstone).
fn record(shape: Shape, n: usize) -> (String, Option<String>) {
    let new_user = |id: String| {
        let value = serde_json::json!({
            "user_id": id,
            "first_name": format!("First{n}"),
            "last_name": "Bench",
            "email": format!("user{n}@example.com"),
            "phone_number": "+1 555 0100",
        });
        (id, Some(value.to_string()))
    };
    let seeded = || {
        let pick = (n as u64).wrapping_mul(2_654_435_761) % SEEDED + 1;
        format!("00000000-0000-4000-8000-{pick:012}")
    };
    match (shape, n % 10) {
        (Shape::New, _) | (Shape::Mixed, 0..=4) => new_user(Uuid::new_v4().to_string()),
        (Shape::Mixed, 5..=8) => {
            let id = seeded();
            let value = serde_json::json!({"user_id": id, "first_name": format!("Changed{n}")});
            (id, Some(value.to_string()))
        }
        (Shape::Mixed, _) => (seeded(), None),
        (Shape::Profiles, _) => {
            let id = format!("bench-{n}");
            let value = serde_json::json!({
                "userId": id, "username": "testuser", "email": "testuser@example.com", "age": 30,
                "address": {"street": "123 Main St", "city": "Anytown", "state": "CA", "zip_code": "12345"},
                "signupTs": "2023-01-01T12:00:00Z",
            });
            (id, Some(value.to_string()))
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, topic, count, shape) = match args.as_slice() {
        [_, bootstrap, topic, count] => (bootstrap, topic, count, "new"),
        [_, bootstrap, topic, count, shape] => (bootstrap, topic, count, shape.as_str()),
        _ => panic!("usage: produce <bootstrap> <topic> <count> [new|mixed|profiles]"),
    };
    let shape = match shape {
        "new" => Shape::New,
        "mixed" => Shape::Mixed,
        "profiles" => Shape::Profiles,
        other => panic!("unknown shape {other:?}: new, mixed or profiles"),
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
        let records: Vec<(String, Option<String>)> =
            (sent..sent + chunk).map(|n| record(shape, n)).collect();
        let sends = records.iter().map(|(key, value)| {
            let mut record = FutureRecord::to(topic).key(key.as_str());
            if let Some(value) = value {
                record = record.payload(value.as_str());
            }
            producer.send(record, Duration::from_secs(120))
        });
        for result in join_all(sends).await {
            result.map_err(|(error, _)| error).expect("delivery failed");
        }
        sent += chunk;
    }
    eprintln!("produced {count} records in {:.1?}", started.elapsed());
}
