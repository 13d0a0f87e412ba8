//! Asynchronous enrichment over Kafka (`ENRICHER_INPUT_TOPIC`), against a real
//! Kafka-protocol broker (a tansu process, see KAFKA.md) and a wiremock upstream.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use profile_enricher::config::Settings;
use profile_enricher::kafka::MESSAGE_TIMEOUT;
use serde_json::{Value, json};
use service_kit::testing::otlp::{Receiver, trace_parent};
use service_kit::testing::{
    Broker, ReadRecord, eventually, log_path, produce, produce_with_headers, read_until, unique,
};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{TestApp, binary, free_port, json_answer, spawn_app_with, start, terminate};
use crate::traces::{CLIENT_SPAN_ID, TRACE_ID};

const LONG: Duration = Duration::from_secs(120);

/// A deterministic upstream: its answer depends on the body only, so an answer
/// on the output topic can be compared with what `POST /users` answers. While
/// `down`, it answers 503; it refuses (400) the user `refused`; it answers
/// ages below 24 later the younger they are (5 ms per year, or 100 when `slow`:
/// then a user's four versions take 0.9 s, longer than an auto-commit interval).
#[derive(Clone, Default)]
struct Echo {
    down: Arc<AtomicBool>,
    /// 100 ms per year below 24 instead of 5.
    slow: bool,
}

impl Respond for Echo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if self.down.load(Ordering::SeqCst) {
            return ResponseTemplate::new(503);
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        if body["userId"] == "refused" {
            return ResponseTemplate::new(400);
        }
        // Younger profiles take longer: 5 (or 100) ms per year below 24.
        let years = 24u64.saturating_sub(body["age"].as_u64().unwrap_or(24));
        let delay = years * if self.slow { 100 } else { 5 };
        json_answer(json!({"source_user_id": body["userId"], "age_seen": body["age"]}))
            .set_delay(Duration::from_millis(delay))
    }
}

fn profile(user: &str, age: u32) -> Value {
    json!({"userId": user, "username": format!("name_{age}"), "email": "Someone@Example.com",
           "age": age, "address": {"street": "1 Main St", "city": "Town", "zip_code": "12345"}})
}

fn record(user: &str, value: &Value) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        Some(user.as_bytes().to_vec()),
        Some(serde_json::to_vec(value).unwrap()),
    )
}

struct Topics {
    input: String,
    output: String,
    dlq: String,
    group: String,
}

impl Topics {
    async fn create(broker: &Broker, partitions: i32) -> Self {
        let topics = Topics {
            input: unique("profiles"),
            output: unique("enriched"),
            dlq: unique("dlq"),
            group: unique("enricher"),
        };
        broker.create_topic(&topics.input, partitions).await;
        broker.create_topic(&topics.output, partitions).await;
        broker.create_topic(&topics.dlq, 1).await;
        topics
    }

    fn configure(&self, settings: &mut Settings, broker: &Broker) {
        let kafka = &mut settings.kafka;
        kafka.enricher_input_topic = Some(self.input.clone());
        kafka.enricher_output_topic = self.output.clone();
        kafka.enricher_dlq_topic = self.dlq.clone();
        kafka.kafka_group_id = self.group.clone();
        kafka.kafka_session_timeout_ms = 6000;
        kafka.kafka_heartbeat_interval_ms = 500;
        kafka.enricher_kafka_retry_backoff = Duration::from_millis(100);
        kafka.connection.kafka_bootstrap_servers = broker.bootstrap.clone();
    }

    /// The binary in the Kafka mode, its upstream `upstream`, logging to a file.
    fn binary(&self, broker: &Broker, upstream: &MockServer, port: u16) -> Command {
        let mut command = binary(port);
        command
            .env("EXTERNAL_API_URL", format!("{}/enrich", upstream.uri()))
            .env("ENRICHER_INPUT_TOPIC", &self.input)
            .env("ENRICHER_OUTPUT_TOPIC", &self.output)
            .env("ENRICHER_DLQ_TOPIC", &self.dlq)
            .env("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap)
            .env("KAFKA_GROUP_ID", &self.group)
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", "500")
            .env("ENRICHER_KAFKA_RETRY_BACKOFF", "0.1")
            .env("RUST_LOG", "info")
            .stderr(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(log_path("enricher")).unwrap(),
            ));
        command
    }
}

async fn kafka_app(
    broker: &Broker,
    topics: &Topics,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let app = spawn_app_with(|settings| {
        topics.configure(settings, broker);
        customise(settings);
    })
    .await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo::default())
        .mount(&app.upstream)
        .await;
    app
}

/// A metric's value from `/metrics` (0 until it shows).
async fn metric(address: &str, name: &str) -> f64 {
    sample(address, name).await.unwrap_or(0.0)
}

/// A metric's value from `/metrics`, `None` while it has no sample.
async fn sample(address: &str, name: &str) -> Option<f64> {
    let response = reqwest::get(format!("{address}/metrics")).await.ok()?;
    let text = response.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `enricher_kafka_in_group` of the enricher in `group`.
fn in_group(group: &str) -> String {
    format!("enricher_kafka_in_group{{group=\"{group}\"}}")
}

/// `POST /users` with `Prefer: respond-async`.
async fn respond_async(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http
        .post(format!("{}/users", app.address))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

/// What `POST /users` answers for `body`, byte for byte.
async fn http_answer(app: &TestApp, body: &Value) -> Vec<u8> {
    let response = app.post_users(serde_json::to_vec(body).unwrap()).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

fn answered_users(records: &[ReadRecord]) -> HashSet<String> {
    records.iter().map(ReadRecord::key_text).collect()
}

#[tokio::test]
async fn two_thousand_profiles_in_are_two_thousand_answers_out_each_as_post_users_answers() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 3).await;
    let app = kafka_app(&broker, &topics, |_| {}).await;
    let joined = eventually(Duration::from_secs(60), || async {
        sample(&app.address, &in_group(&topics.group)).await == Some(1.0)
    })
    .await;
    assert!(
        joined,
        "enricher_kafka_in_group did not turn 1 once the consumer joined"
    );
    let profiles: Vec<(String, Value)> = (0..2000)
        .map(|n| {
            (
                format!("user-{n}"),
                profile(&format!("user-{n}"), 18 + n % 80),
            )
        })
        .collect();
    let records: Vec<_> = profiles
        .iter()
        .map(|(user, value)| record(user, value))
        .collect();
    produce(&broker.producer(), &topics.input, &records).await;

    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 2000
    })
    .await;
    assert_eq!(answered_users(&out).len(), 2000, "answers missing");

    let by_user: HashMap<String, Vec<u8>> = out
        .iter()
        .map(|record| (record.key_text(), record.value.clone().unwrap()))
        .collect();
    let expected: Vec<(String, Vec<u8>)> = futures::stream::iter(&profiles)
        .map(|(user, value)| async { (user.clone(), http_answer(&app, value).await) })
        .buffer_unordered(32)
        .collect()
        .await;
    for (user, answer) in expected {
        assert_eq!(
            String::from_utf8_lossy(&by_user[&user]),
            String::from_utf8_lossy(&answer),
            "the answer on the output topic differs from POST /users for {user}"
        );
    }
    assert_eq!(
        metric(&app.address, "enricher_kafka_records_out_total").await,
        2000.0
    );
    assert_eq!(
        metric(&app.address, "enricher_kafka_dead_lettered_total").await,
        0.0
    );
}

/// The versions of each user's answers, in the order the output topic holds
/// them (one user's answers share a partition).
fn versions(out: &[ReadRecord]) -> HashMap<String, Vec<u64>> {
    let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
    for record in out {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        versions
            .entry(record.key_text())
            .or_default()
            .push(value["user"]["age"].as_u64().unwrap());
    }
    versions
}

#[tokio::test]
async fn after_kill_9_and_a_restart_every_input_has_an_answer_in_order_per_user() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 3).await;
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo {
            slow: true,
            ..Echo::default()
        })
        .mount(&upstream)
        .await;
    // 300 users, 4 versions each (ages 20..24), one user's next to each other:
    // order is checkable per user. The upstream answers a later version sooner
    // (see `Echo`), so only waiting for the previous record keeps the order.
    let mut records = Vec::new();
    for n in 0..300 {
        for version in 20..24 {
            let user = format!("user-{n}");
            records.push(record(&user, &profile(&user, version)));
        }
    }
    // tansu 0.6.0 cannot fetch from an offset inside a record batch (it answers
    // from the next batch on): the restarted process, resuming mid-batch, would
    // skip records. So every record is produced in a batch of its own.
    produce(&broker.producer_one_per_batch(), &topics.input, &records).await;

    let port = free_port();
    let mut first = start(topics.binary(&broker, &upstream, port), port).await;
    let address = first.address();
    let midway = eventually(LONG, || async {
        metric(&address, "enricher_kafka_records_out_total").await >= 300.0
    })
    .await;
    assert!(midway, "the first process answered too little");
    let answered = metric(&address, "enricher_kafka_records_out_total").await;
    first.child.kill().unwrap();
    assert!(
        answered < 1200.0,
        "the kill came too late: {answered} answered"
    );
    first.child.wait().unwrap();

    let port = free_port();
    let _second = start(topics.binary(&broker, &upstream, port), port).await;
    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    let complete = |out: &[ReadRecord]| {
        let versions = versions(out);
        versions.len() == 300
            && versions
                .values()
                .all(|seen| (20..24).all(|version| seen.contains(&version)))
    };
    read_until(&reader, &mut out, LONG, complete).await;
    assert!(complete(&out), "an input has no answer after the restart");
    for (user, seen) in versions(&out) {
        let mut first_seen: Vec<u64> = Vec::new();
        for version in seen.iter().copied() {
            if !first_seen.contains(&version) {
                first_seen.push(version);
            }
        }
        assert_eq!(
            first_seen,
            [20, 21, 22, 23],
            "{user} answered out of order: {seen:?}"
        );
    }
}

#[tokio::test]
async fn an_upstream_outage_pauses_and_dead_letters_nothing_then_everything_is_answered() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 2).await;
    let app = spawn_app_with(|settings| {
        topics.configure(settings, &broker);
        settings.upstream.deadline = Duration::from_millis(500);
        settings.upstream.max_retries = 1;
    })
    .await;
    let echo = Echo::default();
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(echo.clone())
        .mount(&app.upstream)
        .await;
    let users: Vec<String> = (0..200).map(|n| format!("user-{n}")).collect();
    let records: Vec<_> = users.iter().map(|u| record(u, &profile(u, 30))).collect();
    produce(&broker.producer(), &topics.input, &records[..50]).await;
    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 50
    })
    .await;
    assert_eq!(answered_users(&out).len(), 50);

    // The outage: the rest arrives while every upstream call fails. It lasts
    // until the circuit breaker opened and let its probes through at least once
    // (CIRCUIT_BREAKER_OPEN_DURATION, 5 s, later): several seconds.
    echo.down.store(true, Ordering::SeqCst);
    produce(&broker.producer(), &topics.input, &records[50..]).await;
    let open = eventually(LONG, || async {
        metric(
            &app.address,
            "enricher_circuit_rejected_total{source=\"default\"}",
        )
        .await
            > 0.0
    })
    .await;
    assert!(open, "the breaker did not open during the outage");
    let when_open = app.upstream_requests().await.len();
    let probed = eventually(LONG, || async {
        app.upstream_requests().await.len() > when_open
    })
    .await;
    assert!(
        probed,
        "the records were not tried again once the breaker let probes through"
    );
    assert_eq!(
        metric(&app.address, "enricher_kafka_records_out_total").await,
        50.0
    );
    echo.down.store(false, Ordering::SeqCst);

    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 200
    })
    .await;
    assert_eq!(
        answered_users(&out).len(),
        200,
        "answers missing after the recovery"
    );
    assert_eq!(
        metric(&app.address, "enricher_kafka_dead_lettered_total").await,
        0.0
    );
    assert!(metric(&app.address, "enricher_kafka_paused_seconds_total").await > 0.0);
}

#[tokio::test]
async fn invalid_and_refused_profiles_are_dead_lettered_with_headers_while_neighbours_are_answered()
{
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let app = kafka_app(&broker, &topics, |_| {}).await;
    let mut bad_email = profile("bad-email", 30);
    bad_email["email"] = json!("secret-not-an-address");
    let records = vec![
        record("a", &profile("a", 30)),
        record("bad-email", &bad_email),
        record("b", &profile("b", 30)),
        (Some(b"garbage".to_vec()), Some(b"{not json".to_vec())),
        record("refused", &profile("refused", 30)),
        record("c", &profile("c", 30)),
    ];
    // The producer's own headers travel with a record to the DLQ.
    produce_with_headers(
        &broker.producer_one_per_batch(),
        &topics.input,
        &records,
        &[("x-origin", "signup")],
    )
    .await;

    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 3
    })
    .await;
    assert_eq!(
        answered_users(&out),
        HashSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    let dlq = broker.reader(&topics.dlq);
    let mut letters = Vec::new();
    read_until(&dlq, &mut letters, LONG, |letters| letters.len() == 3).await;
    assert_eq!(letters.len(), 3);
    letters.sort_by_key(|letter| {
        letter
            .header("dlq-source-offset")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    });
    for (letter, (offset, key)) in
        letters
            .iter()
            .zip([(1, "bad-email"), (3, "garbage"), (4, "refused")])
    {
        let (_, value) = &records[offset];
        assert_eq!(
            letter.header("dlq-source-topic"),
            Some(topics.input.as_str())
        );
        assert_eq!(letter.header("dlq-source-partition"), Some("0"));
        assert_eq!(
            letter.header("dlq-source-offset"),
            Some(offset.to_string().as_str())
        );
        assert_eq!(letter.key_text(), key);
        assert_eq!(&letter.value, value, "the original value");
        assert_eq!(
            letter.header("x-origin"),
            Some("signup"),
            "original headers kept"
        );
        let reason = letter.header("dlq-reason").unwrap();
        assert!(!reason.is_empty());
        assert!(
            !reason.contains("secret"),
            "a reason must not hold a value: {reason}"
        );
    }
    assert!(letters[0].header("dlq-reason").unwrap().contains("email"));
    assert!(letters[2].header("dlq-reason").unwrap().contains("400"));
    assert_eq!(
        metric(&app.address, "enricher_kafka_dead_lettered_total").await,
        3.0
    );
}

#[tokio::test]
async fn wrong_credentials_dead_letter_nothing_the_records_wait_until_the_key_works() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let app = spawn_app_with(|settings| topics.configure(settings, &broker)).await;
    let key_works = Arc::new(AtomicBool::new(false));
    let echo = Echo::default();
    let gate = Arc::clone(&key_works);
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(move |request: &Request| {
            if gate.load(Ordering::SeqCst) {
                echo.respond(request)
            } else {
                ResponseTemplate::new(401)
            }
        })
        .mount(&app.upstream)
        .await;
    let users = ["a", "b", "c"];
    let records: Vec<_> = users.iter().map(|u| record(u, &profile(u, 30))).collect();
    produce(&broker.producer(), &topics.input, &records).await;

    // Refused, and tried again later (not retried at once: one call per try).
    let retried = eventually(LONG, || async {
        metric(
            &app.address,
            "enricher_source_unauthorized_total{source=\"default\"}",
        )
        .await
            >= 3.0
    })
    .await;
    assert!(retried, "the refused record was not tried again");
    assert_eq!(
        metric(&app.address, "enricher_kafka_dead_lettered_total").await,
        0.0
    );
    assert_eq!(
        metric(&app.address, "enricher_kafka_records_out_total").await,
        0.0
    );
    key_works.store(true, Ordering::SeqCst);

    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == users.len()
    })
    .await;
    assert_eq!(answered_users(&out).len(), users.len());
    assert_eq!(
        metric(&app.address, "enricher_kafka_dead_lettered_total").await,
        0.0
    );
}

/// Four sources each answering 900 KB for the user `big`: its answer (3.6 MB)
/// is over what the producer sends. Retrying cannot help: the record is
/// dead-lettered with the reason, and the records after it are answered.
#[tokio::test]
async fn an_answer_too_large_to_produce_is_dead_lettered_and_the_records_after_it_answered() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let upstream = MockServer::start().await;
    let filler = "x".repeat(900_000);
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            if body["userId"] == "big" {
                json_answer(json!({"blob": filler}))
            } else {
                json_answer(json!({"ok": true}))
            }
        })
        .mount(&upstream)
        .await;
    let records = vec![
        record("big", &profile("big", 30)),
        record("after", &profile("after", 30)),
    ];
    produce(&broker.producer_one_per_batch(), &topics.input, &records).await;
    let port = free_port();
    let mut command = topics.binary(&broker, &upstream, port);
    command
        .env("EXTERNAL_API_URL", "")
        .env("ENRICHMENT_SOURCES", "a,b,c,d");
    for name in ["A", "B", "C", "D"] {
        command
            .env(
                format!("SOURCE_{name}_URL"),
                format!("{}/{name}", upstream.uri()),
            )
            .env(format!("SOURCE_{name}_INTO"), name.to_lowercase());
    }
    let process = start(command, port).await;

    let dlq = broker.reader(&topics.dlq);
    let mut letters = Vec::new();
    read_until(&dlq, &mut letters, LONG, |letters| !letters.is_empty()).await;
    assert_eq!(letters.len(), 1, "the record was dead-lettered");
    assert_eq!(letters[0].key_text(), "big");
    assert_eq!(letters[0].value, records[0].1, "the original value");
    let reason = letters[0].header("dlq-reason").unwrap();
    assert!(reason.contains("too large"), "{reason}");
    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| !out.is_empty()).await;
    assert_eq!(answered_users(&out), HashSet::from(["after".to_owned()]));
    assert_eq!(
        metric(&process.address(), "enricher_kafka_dead_lettered_total").await,
        1.0
    );
}

/// Member A holds a record of each of two partitions (their first upstream
/// call takes 30 s) when member B joins and takes one partition. A does not
/// answer the record whose partition went to B: B fetches it again and
/// answers it, and A's late answer could have landed after B's answer to a
/// later record of that user.
#[tokio::test]
async fn a_record_whose_partition_moved_while_it_was_enriched_is_answered_by_the_new_owner_only() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 2).await;
    let upstream = MockServer::start().await;
    let called: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
    let seen = Arc::clone(&called);
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let user = body["userId"].as_str().unwrap_or_default().to_owned();
            let first = seen.lock().unwrap().insert(user);
            let answer = json_answer(json!({"seen": true}));
            if first {
                answer.set_delay(Duration::from_secs(30))
            } else {
                answer
            }
        })
        .mount(&upstream)
        .await;
    let producer = broker.producer();
    for (partition, user) in [(0, "p0"), (1, "p1")] {
        let value = serde_json::to_vec(&profile(user, 30)).unwrap();
        let record: rdkafka::producer::FutureRecord<'_, str, [u8]> =
            rdkafka::producer::FutureRecord::to(&topics.input)
                .key(user)
                .payload(value.as_slice())
                .partition(partition);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
    let port = free_port();
    let a = start(topics.binary(&broker, &upstream, port), port).await;
    let holding = eventually(LONG, || async { called.lock().unwrap().len() == 2 }).await;
    assert!(holding, "A is enriching both records");

    let port = free_port();
    let b = start(topics.binary(&broker, &upstream, port), port).await;
    let joined = eventually(LONG, || async {
        sample(&b.address(), &in_group(&topics.group)).await == Some(1.0)
    })
    .await;
    assert!(joined, "B joined the group");

    let withheld = eventually(LONG, || async {
        metric(&a.address(), "enricher_kafka_answers_withheld_total").await == 1.0
    })
    .await;
    assert!(withheld, "A left the moved partition's record to B");
    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 2
    })
    .await;
    assert_eq!(
        answered_users(&out),
        HashSet::from(["p0".to_owned(), "p1".to_owned()]),
        "both records answered"
    );
    assert!(metric(&b.address(), "enricher_kafka_records_out_total").await >= 1.0);
}

#[tokio::test]
async fn prefer_respond_async_answers_202_and_the_answer_appears_on_the_output_topic() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let app = kafka_app(&broker, &topics, |_| {}).await;
    let body = profile("async-user", 42);
    let response = app
        .http
        .post(format!("{}/users", app.address))
        .header("content-type", "application/json")
        .header("prefer", "wait=10, Respond-Async")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["userId"], "async-user");

    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| !out.is_empty()).await;
    assert_eq!(out.len(), 1, "no answer on the output topic");
    assert_eq!(out[0].key_text(), "async-user");
    assert_eq!(
        String::from_utf8_lossy(out[0].value.as_deref().unwrap()),
        String::from_utf8_lossy(&http_answer(&app, &body).await)
    );

    let mut invalid = body.clone();
    invalid["email"] = json!("nope");
    let response = app
        .http
        .post(format!("{}/users", app.address))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(serde_json::to_vec(&invalid).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        422,
        "an invalid profile is refused at once"
    );
}

#[tokio::test]
async fn ready_answers_200_in_the_kafka_mode_while_the_consumer_is_not_in_its_group_and_the_gauge_says_so()
 {
    // No broker listens there: the consumer can never join.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let group = unique("enricher");
    let app = spawn_app_with(|settings| {
        settings.kafka.enricher_input_topic = Some("profiles".to_owned());
        settings.kafka.kafka_group_id = group.clone();
        settings.kafka.connection.kafka_bootstrap_servers = nowhere;
    })
    .await;
    app.upstream_answers(Echo::default()).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200, "HTTP needs no broker");
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(
        sample(&app.address, &in_group(&group)).await,
        Some(0.0),
        "the gauge shows the consumer out of its group"
    );
    let body = serde_json::to_vec(&profile("sync-user", 30)).unwrap();
    assert_eq!(app.post_users(body).await.status(), 200);
}

#[tokio::test]
async fn with_the_broker_stopped_post_users_and_ready_answer_200_and_respond_async_503_within_its_bound()
 {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let app = kafka_app(&broker, &topics, |_| {}).await;
    let gauge = in_group(&topics.group);
    let joined = eventually(LONG, || async {
        sample(&app.address, &gauge).await == Some(1.0)
    })
    .await;
    assert!(joined, "the consumer did not join its group");
    assert_eq!(
        respond_async(&app, &profile("before", 30)).await.status(),
        202
    );

    drop(broker);

    let body = profile("during", 30);
    assert_eq!(
        app.post_users(serde_json::to_vec(&body).unwrap())
            .await
            .status(),
        200,
        "the synchronous path needs no broker"
    );
    assert_eq!(app.get("/ready").await.status(), 200);
    // The broker never acknowledges: 503 once MESSAGE_TIMEOUT has passed
    // (librdkafka looks for timed-out records every second), never a hang.
    let bound = MESSAGE_TIMEOUT + Duration::from_secs(5);
    let response = tokio::time::timeout(bound, respond_async(&app, &body))
        .await
        .expect("Prefer: respond-async hung past its bound with the broker stopped");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/queue-unavailable");
    assert!(metric(&app.address, "enricher_kafka_produce_failures_total").await >= 1.0);

    // The consumer's session times out (6 s here): the gauge shows it, /ready
    // does not.
    let dropped = eventually(LONG, || async {
        sample(&app.address, &gauge).await == Some(0.0)
    })
    .await;
    assert!(
        dropped,
        "enricher_kafka_in_group stayed 1 with the broker stopped"
    );
    assert_eq!(app.get("/ready").await.status(), 200);
    assert_eq!(
        app.post_users(serde_json::to_vec(&body).unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn without_an_input_topic_prefer_respond_async_is_ignored() {
    let app = spawn_app_with(|_| {}).await;
    app.upstream_answers(Echo::default()).await;
    let response = app
        .http
        .post(format!("{}/users", app.address))
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(serde_json::to_vec(&profile("sync-user", 30)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("preference-applied").is_none());
    assert_eq!(app.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn sigterm_while_the_upstream_is_slow_exits_0_within_10_s_and_loses_nothing() {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let slow = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(json_answer(json!({"slow": true})).set_delay(Duration::from_secs(60)))
        .mount(&slow)
        .await;
    let users: Vec<String> = (0..20).map(|n| format!("user-{n}")).collect();
    let records: Vec<_> = users.iter().map(|u| record(u, &profile(u, 30))).collect();
    // One record per batch: the next process resumes at a stored offset (tansu
    // 0.6.0 cannot fetch from inside a batch).
    produce(&broker.producer_one_per_batch(), &topics.input, &records).await;

    let port = free_port();
    let mut process = start(topics.binary(&broker, &slow, port), port).await;
    let busy = eventually(LONG, || async {
        !slow
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    assert!(busy, "no record reached the upstream");
    // Exit 0 within 10 s of the signal.
    terminate(&mut process).await;

    // Nothing abandoned was marked done: the next process answers every record.
    let fast = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo::default())
        .mount(&fast)
        .await;
    let port = free_port();
    let _next = start(topics.binary(&broker, &fast, port), port).await;
    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| {
        answered_users(out).len() == 20
    })
    .await;
    assert_eq!(answered_users(&out).len(), 20, "records lost at shutdown");
}

#[tokio::test]
async fn a_respond_async_requests_trace_continues_through_the_input_topic_to_the_upstream_and_the_answer()
 {
    let broker = Broker::start().await;
    let topics = Topics::create(&broker, 1).await;
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo::default())
        .mount(&upstream)
        .await;
    let receiver = Receiver::start().await;
    let port = free_port();
    let mut command = topics.binary(&broker, &upstream, port);
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.uri());
    let mut process = start(command, port).await;

    let response = reqwest::Client::new()
        .post(format!("{}/users", process.address()))
        .header("prefer", "respond-async")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .json(&profile("traced-user", 30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let reader = broker.reader(&topics.output);
    let mut out = Vec::new();
    read_until(&reader, &mut out, LONG, |out| !out.is_empty()).await;
    assert_eq!(out.len(), 1, "no answer on the output topic");
    let (answer_trace, answer_parent) = trace_parent(
        out[0]
            .header("traceparent")
            .expect("the answer's traceparent"),
    );
    assert_eq!(
        answer_trace, TRACE_ID,
        "the answer carries the request's trace"
    );
    let requests = upstream.received_requests().await.unwrap();
    let sent = requests[0].headers["traceparent"].to_str().unwrap();
    assert_eq!(
        trace_parent(sent).0,
        TRACE_ID,
        "the upstream call continues it"
    );

    terminate(&mut process).await;
    let spans = receiver.spans().await;
    let record = spans
        .iter()
        .find(|span| span.span_id == answer_parent)
        .unwrap_or_else(|| panic!("the record's span was not exported: {spans:#?}"));
    assert_eq!(record.trace_id, TRACE_ID);
    assert_eq!(record.name, "enrich record");
}
