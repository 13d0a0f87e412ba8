//! Processes the tests start - a tansu broker (`service_kit::testing`), the
//! consumer binary - each killed by PID when its guard drops, so nothing
//! outlives a test, failed or not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use user_store::testing::TestDatabase;
pub use user_store::testing::free_port;
use uuid::Uuid;

fn log_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}.log", Uuid::new_v4().simple()))
}

/// The tansu broker, shared with the enricher's tests.
pub use service_kit::testing::Broker;

/// A record to produce: key and value, either possibly absent, and headers.
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

impl Record {
    pub fn user(id: Uuid, value: serde_json::Value) -> Self {
        Record {
            key: Some(id.to_string().into_bytes()),
            value: Some(serde_json::to_vec(&value).unwrap()),
            headers: Vec::new(),
        }
    }

    pub fn raw(key: &str, value: &[u8]) -> Self {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.to_vec()),
            headers: Vec::new(),
        }
    }

    pub fn tombstone(key: &str) -> Self {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Produces the records in order (per key), waiting for every acknowledgement;
/// returns each partition's end offset (after its last record).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[Record],
) -> HashMap<i32, i64> {
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for chunk in records.chunks(5_000) {
        let sends = chunk.iter().map(|record| {
            let mut future: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(key) = &record.key {
                future = future.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                future = future.payload(value.as_slice());
            }
            if !record.headers.is_empty() {
                let headers =
                    record
                        .headers
                        .iter()
                        .fold(OwnedHeaders::new(), |headers, (key, value)| {
                            headers.insert(Header {
                                key,
                                value: Some(value),
                            })
                        });
                future = future.headers(headers);
            }
            producer.send(future, Duration::from_secs(30))
        });
        for result in join_all(sends).await {
            let delivery = result.map_err(|(error, _)| error).unwrap();
            let end = ends.entry(delivery.partition).or_default();
            *end = (*end).max(delivery.offset + 1);
        }
    }
    ends
}

/// What a test needs to run the consumer against its own topics and database.
pub struct Setup {
    pub broker: Broker,
    pub db: TestDatabase,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
}

impl Setup {
    pub async fn new(partitions: i32) -> Self {
        let setup = Self::without_dead_letter_topic(partitions).await;
        setup.broker.create_topic(&setup.dlq_topic, 1).await;
        setup
    }

    /// Like [`Setup::new`], but the dead-letter topic does not exist yet.
    pub async fn without_dead_letter_topic(partitions: i32) -> Self {
        Self::on(Broker::start().await, partitions).await
    }

    /// Like [`Setup::new`], on the given broker.
    pub async fn on(broker: Broker, partitions: i32) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        let setup = Setup {
            topic: format!("user_service_{suffix}"),
            dlq_topic: format!("user_service_{suffix}.dlq"),
            group: format!("group_{suffix}"),
            db: TestDatabase::create(),
            broker,
        };
        setup.broker.create_topic(&setup.topic, partitions).await;
        setup
    }

    pub fn consumer(&self) -> ConsumerProcess {
        self.consumer_with(&self.db.url, &self.group)
    }

    pub fn consumer_with_batch_size(&self, size: usize) -> ConsumerProcess {
        let size = size.to_string();
        self.consumer_env(&self.db.url, &self.group, &[("CONSUMER_BATCH_SIZE", &size)])
    }

    pub fn consumer_with(&self, database_url: &str, group: &str) -> ConsumerProcess {
        self.consumer_env(database_url, group, &[])
    }

    pub fn consumer_env(
        &self,
        database_url: &str,
        group: &str,
        extra: &[(&str, &str)],
    ) -> ConsumerProcess {
        let mut vars = vec![
            ("DATABASE_URL", database_url),
            ("DATABASE_CONNECT_TIMEOUT", "1"),
            ("KAFKA_BOOTSTRAP_SERVERS", &self.broker.bootstrap),
            ("KAFKA_TOPIC", &self.topic),
            ("KAFKA_DLQ_TOPIC", &self.dlq_topic),
            ("KAFKA_GROUP_ID", group),
            ("KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("KAFKA_HEARTBEAT_INTERVAL_MS", "500"),
        ];
        vars.extend_from_slice(extra);
        ConsumerProcess::start(&vars)
    }
}

/// Runs `command` to its end, asserting it succeeded; what it printed on stdout.
async fn run_to_success(mut command: Command) -> String {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "replay-dlq failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The consumer binary under test: the release build when `SYSTEM_BIN_DIR` names
/// one (as `scripts/test.sh` does), else the one cargo built for this test.
fn consumer_bin() -> PathBuf {
    std::env::var("SYSTEM_BIN_DIR")
        .map(|dir| PathBuf::from(dir).join("user-info-consumer"))
        .ok()
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_user-info-consumer")))
}

impl Setup {
    fn replay_command(&self, args: &[&str]) -> Command {
        self.replay_command_with(&self.db.url, args)
    }

    fn replay_command_with(&self, database_url: &str, args: &[&str]) -> Command {
        let mut command = Command::new(consumer_bin());
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", database_url)
            .env("DATABASE_CONNECT_TIMEOUT", "2")
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.broker.bootstrap)
            .env("KAFKA_TOPIC", &self.topic)
            .env("KAFKA_DLQ_TOPIC", &self.dlq_topic)
            .env("KAFKA_GROUP_ID", &self.group)
            .arg("replay-dlq")
            .args(args);
        command
    }

    /// Runs `user-info-consumer replay-dlq <args>` to its end; returns what it
    /// printed on stdout.
    pub async fn replay_dlq(&self, args: &[&str]) -> String {
        run_to_success(self.replay_command(args)).await
    }

    /// Like [`Setup::replay_dlq`] with the database out of reach: every selected
    /// letter is replayed, the consumer alone skips superseded ones.
    pub async fn replay_dlq_without_database(&self, args: &[&str]) -> String {
        let nowhere = format!(
            "postgres://postgres:postgres@127.0.0.1:{}/none",
            free_port()
        );
        run_to_success(self.replay_command_with(&nowhere, args)).await
    }

    /// Runs `user-info-consumer replay-dlq <args>` expecting it to fail;
    /// returns what it printed on stderr.
    pub async fn replay_dlq_failing(&self, args: &[&str]) -> String {
        let mut command = self.replay_command(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(!output.status.success(), "replay-dlq succeeded: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

pub struct ConsumerProcess {
    child: Child,
    pub metrics: String,
    /// Everything the process printed (stdout and stderr), as in production.
    pub log: PathBuf,
}

impl ConsumerProcess {
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = log_path("consumer");
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(consumer_bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("CONSUMER_METRICS_HOST", "127.0.0.1")
            .env("CONSUMER_METRICS_PORT", port.to_string())
            .envs(vars.iter().copied())
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .unwrap();
        ConsumerProcess {
            child,
            metrics: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub async fn status(&self, path: &str) -> Option<u16> {
        let response = reqwest::get(format!("{}{path}", self.metrics)).await.ok()?;
        Some(response.status().as_u16())
    }

    /// A counter from `/metrics`, 0 until the port answers.
    pub async fn counter(&self, name: &str) -> u64 {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.metrics)).await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dead letter as read back from the DLQ topic.
#[derive(Debug)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads `count` messages from `topic` (from the beginning), within `limit`.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
    limit: Duration,
) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader_{}", Uuid::new_v4().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while letters.len() < count {
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
        letters.push(DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    letters
}
