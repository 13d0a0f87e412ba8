//! Test support (feature `testing`): a real Kafka-protocol broker - a tansu
//! process on a free port, killed by PID when dropped - with topics, producers
//! and a reader, shared by the end-to-end tests of every Kafka process; and
//! the spans a process exported over OTLP ([`otlp`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod otlp;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other test (or test run) uses: `prefix_<time><count>`.
pub fn unique(prefix: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{nanos:x}{}_{}",
        COUNT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a test process's output goes: a file under the system's temp dir.
pub fn log_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.log", unique(name)))
}

fn log_file(name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(log_path(name)).unwrap())
}

/// The tansu binary: `TANSU_BIN`, else the one `.ci/run` installs, else `PATH`.
fn tansu_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return path.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/tansu-0.6.0-dynostore/bin/tansu");
    if cached.exists() {
        cached
    } else {
        "tansu".into()
    }
}

/// A tansu broker (in-memory storage), killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    pub async fn start() -> Self {
        let port = free_port();
        Self::start_advertising(port, port).await
    }

    /// A broker on `port` that tells clients to reach it at `advertised` (where a
    /// test puts a proxy it can stop and start).
    pub async fn start_advertising(port: u16, advertised: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised_url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log_file("tansu"))
            .stderr(log_file("tansu-err"))
            .spawn()
            .expect("cannot start tansu (see KAFKA.md; .ci/run installs it)");
        let broker = Broker {
            child,
            bootstrap: format!("127.0.0.1:{advertised}"),
        };
        let listening = format!("127.0.0.1:{port}");
        let up = eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(&listening).await.is_ok()
        })
        .await;
        assert!(up, "tansu did not start listening");
        broker
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// A producer that sends every record in a record batch of its own.
    /// tansu 0.6.0 cannot fetch from an offset inside a batch: it answers
    /// from the next batch on (or nothing at the last), so a consumer resuming
    /// mid-batch would skip records there - a broker fault Kafka does not have.
    /// Tests that resume from arbitrary offsets produce with this.
    pub fn producer_one_per_batch(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap()
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap()
    }

    /// A consumer reading `topic` from its beginning, in a group of its own.
    pub fn reader(&self, topic: &str) -> StreamConsumer {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        consumer
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record to produce: key and value, either possibly absent.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces `(key, value)` records in order, waiting for every acknowledgement;
/// returns each partition's end offset (after its last record).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[KeyValue],
) -> HashMap<i32, i64> {
    produce_with_headers(producer, topic, records, &[]).await
}

/// Like [`produce`], every record carrying `headers`.
pub async fn produce_with_headers(
    producer: &FutureProducer,
    topic: &str,
    records: &[KeyValue],
    headers: &[(&str, &str)],
) -> HashMap<i32, i64> {
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for chunk in records.chunks(5_000) {
        let sends = chunk.iter().map(|(key, value)| {
            let mut future: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if !headers.is_empty() {
                let headers = headers
                    .iter()
                    .fold(OwnedHeaders::new(), |all, (key, value)| {
                        all.insert(Header {
                            key,
                            value: Some(*value),
                        })
                    });
                future = future.headers(headers);
            }
            if let Some(key) = key {
                future = future.key(key.as_slice());
            }
            if let Some(value) = value {
                future = future.payload(value.as_slice());
            }
            producer.send(future, Duration::from_secs(30))
        });
        let mut results = Vec::with_capacity(chunk.len());
        for send in sends {
            results.push(send);
        }
        for result in results {
            let delivery = result.await.map_err(|(error, _)| error).unwrap();
            let end = ends.entry(delivery.partition).or_default();
            *end = (*end).max(delivery.offset + 1);
        }
    }
    ends
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl ReadRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }
}

/// Takes what `consumer` received until `done` says enough, or `limit` passes.
pub async fn read_until(
    consumer: &StreamConsumer,
    records: &mut Vec<ReadRecord>,
    limit: Duration,
    mut done: impl FnMut(&[ReadRecord]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done(records) {
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let message = message.unwrap();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(ReadRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
}
