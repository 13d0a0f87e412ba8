use std::time::Duration;

use serde_json::json;
use service_kit::testing::otlp::{Receiver, trace_parent};
use user_store::testing::{TcpProxy, eventually, postgres_address};
use uuid::Uuid;

use crate::support::{Record, Setup, produce, read_topic};

/// How long a condition may take to hold. Generous: this 2-core machine is
/// shared by the broker, PostgreSQL, the consumer and the test.
const LANDING: Duration = Duration::from_secs(120);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn distinct_users_land_two_messages_merge_and_a_tombstone_deletes() {
    let setup = Setup::new(3).await;
    let _consumer = setup.consumer();
    let users: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
    let merged = Uuid::new_v4();
    let deleted = users[0];
    let mut records: Vec<Record> = users
        .iter()
        .map(|id| {
            Record::user(
                *id,
                json!({"user_id": id, "first_name": "F", "email": "f@example.com"}),
            )
        })
        .collect();
    records.push(Record::user(
        merged,
        json!({"user_id": merged, "first_name": "John", "last_name": "Doe"}),
    ));
    records.push(Record::user(merged, json!({"user_id": merged.to_string().to_uppercase(), "last_name": null, "phone_number": "+1 555"})));
    records.push(Record::tombstone(&deleted.to_string()));

    produce(&setup.broker.producer(), &setup.topic, &records).await;

    let landed = eventually(LANDING, || async {
        setup.db.count_where("SELECT count(*) AS n FROM user_info") == 200
            && setup.db.find(deleted).is_none()
    })
    .await;
    assert!(
        landed,
        "expected 199 users + the merged one, and the deleted one gone"
    );
    let row = setup.db.find(merged).unwrap();
    assert_eq!(
        (
            row.first_name.as_str(),
            row.last_name.as_str(),
            row.phone_number.as_str(),
            row.email.as_str()
        ),
        ("John", "", "+1 555", "")
    );
    assert_eq!(setup.db.find(users[1]).unwrap().email, "f@example.com");
}

#[tokio::test]
async fn poison_goes_to_the_dlq_with_its_headers_while_the_valid_messages_around_it_apply() {
    let setup = Setup::new(1).await;
    let consumer = setup.consumer();
    let (before, after) = (Uuid::new_v4(), Uuid::new_v4());
    let poison: Vec<(&str, Option<&[u8]>)> = vec![
        ("not-utf8", Some(b"\xff\xfe\xfd")),
        ("not-json", Some(b"{not json")),
        ("array", Some(b"[1,2,3]")),
        ("no-user-id", Some(br#"{"first_name":"Nobody"}"#)),
        (
            "bad-email",
            Some(br#"{"user_id":"7b0e7a36-5d1b-4b59-9a0f-4c1b3c5d7e21","email":"not-an-email"}"#),
        ),
        ("bad-tombstone", None),
    ];
    let mut records = vec![Record::user(
        before,
        json!({"user_id": before, "first_name": "Before"}),
    )];
    for (key, value) in &poison {
        let record = match value {
            Some(value) => Record::raw(key, value),
            None => Record::tombstone(key),
        };
        // The producer's own headers travel with the record to the DLQ.
        records.push(
            record
                .with_header("x-origin", key)
                .with_header("traceparent", TRACEPARENT),
        );
    }
    records.push(Record::user(
        after,
        json!({"user_id": after, "first_name": "After"}),
    ));

    produce(&setup.broker.producer(), &setup.topic, &records).await;

    let letters = read_topic(
        &setup.broker.bootstrap,
        &setup.dlq_topic,
        poison.len(),
        LANDING,
    )
    .await;
    assert_eq!(
        letters.len(),
        poison.len(),
        "every poison message lands in the DLQ"
    );
    for (index, (key, value)) in poison.iter().enumerate() {
        let letter = letters
            .iter()
            .find(|l| l.key.as_deref() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(
            letter.value.as_deref(),
            *value,
            "{key}: original value kept"
        );
        assert_eq!(
            letter.header("dlq-source-topic"),
            Some(setup.topic.as_str())
        );
        assert_eq!(letter.header("dlq-source-partition"), Some("0"));
        assert_eq!(
            letter.header("dlq-source-offset"),
            Some((index + 1).to_string().as_str())
        );
        assert!(
            letter.header("dlq-reason").is_some_and(|r| !r.is_empty()),
            "{key}"
        );
        assert_eq!(
            letter.header("x-origin"),
            Some(*key),
            "original headers kept"
        );
        assert_eq!(letter.header("traceparent"), Some(TRACEPARENT));
    }
    let email_reason = letters
        .iter()
        .find(|l| l.key.as_deref() == Some(b"bad-email".as_slice()))
        .unwrap();
    assert!(
        !email_reason
            .header("dlq-reason")
            .unwrap()
            .contains("not-an-email")
    );

    let landed = eventually(LANDING, || async {
        setup.db.find(before).is_some() && setup.db.find(after).is_some()
    })
    .await;
    assert!(landed, "valid messages around the poison are applied");
    assert_eq!(
        setup.db.count_where("SELECT count(*) AS n FROM user_info"),
        2
    );
    let dead = eventually(LANDING, || async {
        consumer
            .counter("consumer_messages_dead_lettered_total")
            .await
            == poison.len() as u64
    })
    .await;
    assert!(dead, "the metric counts the dead letters");
    let logs = std::fs::read_to_string(&consumer.log).unwrap();
    assert!(
        logs.contains("dlq-reason") || logs.contains("dead-letter"),
        "dead letters are logged"
    );
    for secret in ["not-an-email", "Nobody"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the consumer's logs"
        );
    }
}

#[tokio::test]
async fn replaying_the_same_messages_leaves_the_same_rows() {
    let setup = Setup::new(2).await;
    let users: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut records = Vec::new();
    for (n, id) in users.iter().enumerate() {
        records.push(Record::user(
            *id,
            json!({"user_id": id, "first_name": "A", "last_name": format!("L{n}")}),
        ));
        records.push(Record::user(*id, json!({"user_id": id, "first_name": "B"})));
    }
    produce(&setup.broker.producer(), &setup.topic, &records).await;
    let snapshot = || {
        let mut rows: Vec<(Uuid, String, String)> = users
            .iter()
            .filter_map(|id| setup.db.find(*id))
            .map(|u| (u.user_id, u.first_name, u.last_name))
            .collect();
        rows.sort();
        rows
    };

    let first = setup.consumer();
    let applied = eventually(LANDING, || async {
        first.counter("consumer_messages_applied_total").await == 100
    })
    .await;
    assert!(applied);
    drop(first);
    let before = snapshot();
    assert_eq!(before.len(), 50);
    assert!(before.iter().all(|(_, first_name, _)| first_name == "B"));

    // A new group replays the whole topic from the beginning.
    let replay = setup.consumer_with(&setup.db.url, &format!("{}-replay", setup.group));
    let replayed = eventually(LANDING, || async {
        replay.counter("consumer_messages_applied_total").await == 100
    })
    .await;
    assert!(replayed);
    assert_eq!(snapshot(), before);
}

#[tokio::test]
async fn kill_9_in_the_middle_of_20000_messages_then_restart_loses_nothing() {
    let setup = Setup::new(3).await;
    let users: Vec<Uuid> = (0..2_000).map(|_| Uuid::new_v4()).collect();
    let mut records = Vec::with_capacity(20_000);
    for version in 0..10 {
        for id in &users {
            records.push(Record::user(*id, json!({"user_id": id, "first_name": format!("v{version}"), "email": format!("u{version}@example.com")})));
        }
    }
    produce(&setup.broker.producer(), &setup.topic, &records).await;

    // Small batches, so that the kill lands in the middle of the stream.
    let mut first = setup.consumer_with_batch_size(50);
    let started = eventually(LANDING, || async {
        first.counter("consumer_messages_applied_total").await > 0
    })
    .await;
    assert!(started, "the consumer started applying");
    let applied_at_kill = first.counter("consumer_messages_applied_total").await;
    first.kill_9();
    assert!(
        applied_at_kill < 20_000,
        "killed in the middle ({applied_at_kill} applied)"
    );

    let _second = setup.consumer();
    let complete = eventually(Duration::from_secs(150), || async {
        setup.db.count_where("SELECT count(*) AS n FROM user_info WHERE first_name = 'v9' AND email = 'u9@example.com'") == 2_000
    })
    .await;
    assert!(
        complete,
        "every user holds its last value after the restart"
    );
    assert_eq!(
        setup.db.count_where("SELECT count(*) AS n FROM user_info"),
        2_000
    );
}

/// Users produced while the database is away (first name "During").
const DURING: i64 = 100;

/// A TCP proxy in front of PostgreSQL (started), and the test database's URL through it.
fn database_behind_a_proxy(setup: &Setup) -> (TcpProxy, String) {
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let url = setup.db.url_via(proxy.address);
    (proxy, url)
}

fn during_the_outage() -> Vec<Record> {
    (0..DURING)
        .map(|_| Uuid::new_v4())
        .map(|id| Record::user(id, json!({"user_id": id, "first_name": "During"})))
        .collect()
}

fn landed_during_the_outage(setup: &Setup) -> i64 {
    setup
        .db
        .count_where("SELECT count(*) AS n FROM user_info WHERE first_name = 'During'")
}

#[tokio::test]
async fn a_database_outage_keeps_the_consumer_up_and_everything_lands_afterwards() {
    let setup = Setup::new(1).await;
    let (mut proxy, via_proxy) = database_behind_a_proxy(&setup);
    let mut consumer = setup.consumer_with(&via_proxy, &setup.group);
    let producer = setup.broker.producer();

    let early = Uuid::new_v4();
    produce(
        &producer,
        &setup.topic,
        &[Record::user(
            early,
            json!({"user_id": early, "first_name": "Early"}),
        )],
    )
    .await;
    assert!(eventually(LANDING, || async { setup.db.find(early).is_some() }).await);

    proxy.stop();
    produce(&producer, &setup.topic, &during_the_outage()).await;
    let not_ready = eventually(LANDING, || async {
        consumer.status("/ready").await == Some(503)
    })
    .await;
    assert!(not_ready, "/ready reports the outage");
    let retried = eventually(LANDING, || async {
        consumer.counter("consumer_database_retries_total").await >= 2
    })
    .await;
    assert!(retried, "the batch was retried while the database was down");
    assert_eq!(consumer.status("/health").await, Some(200));
    assert!(consumer.is_running());
    assert_eq!(
        setup.db.count_where("SELECT count(*) AS n FROM user_info"),
        1,
        "nothing applied while down"
    );

    proxy.start();
    assert!(
        eventually(LANDING, || async {
            landed_during_the_outage(&setup) == DURING
        })
        .await,
        "everything produced during the outage lands"
    );
    assert!(
        eventually(LANDING, || async {
            consumer.status("/ready").await == Some(200)
        })
        .await
    );
}

#[tokio::test]
async fn sigterm_makes_the_consumer_exit_0_within_10_seconds() {
    let setup = Setup::new(1).await;
    let mut consumer = setup.consumer();
    let id = Uuid::new_v4();
    produce(
        &setup.broker.producer(),
        &setup.topic,
        &[Record::user(id, json!({"user_id": id}))],
    )
    .await;
    assert!(eventually(LANDING, || async { setup.db.find(id).is_some() }).await);
    assert!(
        eventually(LANDING, || async {
            consumer.status("/ready").await == Some(200)
        })
        .await
    );

    consumer.terminate();

    let status = consumer.exit_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status: {status:?}"
    );
}

/// A poison record just under librdkafka's default `message.max.bytes`
/// (1,000,000): readable, but with the letter's headers over that limit. The
/// dead-letter producer must not refuse it, or its partition stops for good.
#[tokio::test]
async fn a_poison_record_near_the_size_limit_reaches_the_dlq_whole_and_its_partition_goes_on() {
    let setup = Setup::new(1).await;
    let consumer = setup.consumer();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.broker.bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let big = vec![b'x'; 999_990];
    let after = Uuid::new_v4();
    let records = [
        Record::raw("big-poison", &big),
        Record::user(after, json!({"user_id": after, "first_name": "After"})),
    ];
    produce(&producer, &setup.topic, &records).await;

    let letters = read_topic(&setup.broker.bootstrap, &setup.dlq_topic, 1, LANDING).await;
    assert_eq!(letters.len(), 1, "the big poison record reached the DLQ");
    assert_eq!(letters[0].key.as_deref(), Some(b"big-poison".as_slice()));
    assert!(
        letters[0].value.as_deref() == Some(big.as_slice()),
        "its value whole"
    );
    assert_eq!(letters[0].header("dlq-source-offset"), Some("0"));
    assert!(
        eventually(LANDING, || async { setup.db.find(after).is_some() }).await,
        "the record after it applied"
    );
    assert_eq!(
        consumer
            .counter("consumer_messages_dead_lettered_total")
            .await,
        1
    );
}

/// A backlog of large records fills a batch by bytes, not by count: with
/// `CONSUMER_BATCH_MAX_BYTES` under one record, every batch holds one record
/// (the read-ahead beside it likewise), however many are waiting.
#[tokio::test]
async fn a_backlog_of_large_records_is_taken_in_batches_bounded_by_bytes() {
    let setup = Setup::new(1).await;
    let big = vec![b'x'; 300_000];
    let records: Vec<Record> = (0..20)
        .map(|i| Record::raw(&format!("big-{i}"), &big))
        .collect();
    produce(&setup.broker.producer(), &setup.topic, &records).await;
    let consumer = setup.consumer_env(
        &setup.db.url,
        &setup.group,
        &[("CONSUMER_BATCH_MAX_BYTES", "200000")],
    );
    assert!(
        eventually(LANDING, || async {
            consumer
                .counter("consumer_messages_dead_lettered_total")
                .await
                == 20
        })
        .await,
        "every record went its way"
    );
    assert_eq!(
        consumer
            .counter("consumer_batch_size_bucket{le=\"1\"}")
            .await,
        20,
        "twenty batches of one record"
    );
}

#[tokio::test]
async fn a_missing_dead_letter_topic_holds_the_poison_until_the_topic_exists() {
    let setup = Setup::without_dead_letter_topic(1).await;
    let consumer = setup.consumer();
    let after = Uuid::new_v4();
    let records = [
        Record::raw("poison", b"not json"),
        Record::user(after, json!({"user_id": after, "first_name": "After"})),
    ];
    produce(&setup.broker.producer(), &setup.topic, &records).await;

    let not_ready = eventually(LANDING, || async {
        consumer.status("/ready").await == Some(503)
            && consumer
                .counter("consumer_messages_dead_lettered_total")
                .await
                == 0
    })
    .await;
    assert!(not_ready, "a failing DLQ write makes the consumer unready");
    assert_eq!(consumer.status("/health").await, Some(200));

    setup.broker.create_topic(&setup.dlq_topic, 1).await;
    let letters = read_topic(&setup.broker.bootstrap, &setup.dlq_topic, 1, LANDING).await;
    assert_eq!(letters.len(), 1, "the poison message was not dropped");
    assert_eq!(letters[0].key.as_deref(), Some(b"poison".as_slice()));
    assert_eq!(letters[0].header("dlq-source-offset"), Some("0"));
    assert!(eventually(LANDING, || async { setup.db.find(after).is_some() }).await);
    assert!(
        eventually(LANDING, || async {
            consumer.status("/ready").await == Some(200)
        })
        .await
    );
}

#[tokio::test]
async fn a_database_that_stops_answering_is_given_up_on_after_the_query_timeout_and_everything_lands()
 {
    let setup = Setup::new(1).await;
    let (proxy, via_proxy) = database_behind_a_proxy(&setup);
    let consumer = setup.consumer_env(&via_proxy, &setup.group, &[("DATABASE_QUERY_TIMEOUT", "1")]);
    let producer = setup.broker.producer();
    let early = Uuid::new_v4();
    produce(
        &producer,
        &setup.topic,
        &[Record::user(early, json!({"user_id": early}))],
    )
    .await;
    assert!(eventually(LANDING, || async { setup.db.find(early).is_some() }).await);

    // Connections stay open, nothing answers: a hung server or a partition. Each
    // attempt must be abandoned (not wait forever) and retried.
    proxy.freeze();
    produce(&producer, &setup.topic, &during_the_outage()).await;
    let retried = eventually(LANDING, || async {
        consumer.counter("consumer_database_retries_total").await >= 2
    })
    .await;
    assert!(
        retried,
        "attempts against a silent database were given up and retried"
    );
    assert_eq!(
        setup.db.count_where("SELECT count(*) AS n FROM user_info"),
        1,
        "nothing applied while the database was silent"
    );

    proxy.thaw();
    assert!(
        eventually(LANDING, || async {
            landed_during_the_outage(&setup) == DURING
        })
        .await,
        "everything produced while the database was silent lands"
    );
}

#[tokio::test]
async fn a_broker_outage_keeps_the_consumer_running_and_it_catches_up_afterwards() {
    let broker_port = crate::support::free_port();
    let mut proxy = TcpProxy::reserve(format!("127.0.0.1:{broker_port}").parse().unwrap());
    proxy.start();
    let broker = crate::support::Broker::start_advertising(broker_port, proxy.address.port()).await;
    let setup = Setup::on(broker, 1).await;
    setup.broker.create_topic(&setup.dlq_topic, 1).await;
    let mut consumer = setup.consumer();
    let producer = setup.broker.producer();
    let before = Uuid::new_v4();
    produce(
        &producer,
        &setup.topic,
        &[Record::user(before, json!({"user_id": before}))],
    )
    .await;
    assert!(eventually(LANDING, || async { setup.db.find(before).is_some() }).await);

    proxy.stop();
    let noticed = eventually(LANDING, || async {
        let logs = std::fs::read_to_string(&consumer.log).unwrap_or_default();
        logs.contains("Connection refused") || logs.contains("Disconnected")
    })
    .await;
    assert!(noticed, "the consumer saw the broker go away");
    assert!(consumer.is_running());
    assert_eq!(consumer.status("/health").await, Some(200));

    proxy.start();
    let after: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let records: Vec<Record> = after
        .iter()
        .map(|id| Record::user(*id, json!({"user_id": id, "first_name": "After"})))
        .collect();
    produce(&producer, &setup.topic, &records).await;
    let caught_up = eventually(LANDING, || async {
        setup
            .db
            .count_where("SELECT count(*) AS n FROM user_info WHERE first_name = 'After'")
            == 50
    })
    .await;
    assert!(caught_up, "everything produced after the outage lands");
    assert!(consumer.is_running());
}

#[tokio::test]
async fn the_metrics_port_refuses_a_request_head_over_16_kib_with_431() {
    let setup = Setup::new(1).await;
    let consumer = setup.consumer();
    let up = eventually(Duration::from_secs(30), || async {
        consumer.status("/health").await == Some(200)
    })
    .await;
    assert!(up, "the metrics port never answered");
    let response = reqwest::Client::new()
        .get(format!("{}/health", consumer.metrics))
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
}

#[tokio::test]
async fn metrics_show_the_database_pool_and_the_process_under_the_consumer_prefix() {
    let setup = Setup::new(1).await;
    let consumer = setup.consumer_env(&setup.db.url, &setup.group, &[("DATABASE_POOL_SIZE", "3")]);
    let id = Uuid::new_v4();
    produce(
        &setup.broker.producer(),
        &setup.topic,
        &[Record::user(id, json!({"user_id": id, "first_name": "M"}))],
    )
    .await;
    let applied = eventually(LANDING, || async {
        consumer.counter("consumer_messages_applied_total").await == 1
    })
    .await;
    assert!(applied, "the record lands");

    // The batch was applied through the pool, which keeps its connection.
    assert_eq!(consumer.counter("consumer_db_pool_max_size").await, 3);
    assert!(consumer.counter("consumer_db_pool_size").await >= 1);
    let text = reqwest::get(format!("{}/metrics", consumer.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "consumer_db_pool_available ",
        "consumer_db_pool_waiting ",
        "consumer_process_cpu_seconds_total ",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    assert!(
        consumer
            .counter("consumer_process_resident_memory_bytes")
            .await
            > 0
    );
    assert!(consumer.counter("consumer_process_open_fds").await > 0);
}

#[tokio::test]
async fn a_records_trace_is_continued_by_the_consumers_spans_exported_over_otlp() {
    let setup = Setup::new(1).await;
    let receiver = Receiver::start().await;
    let mut consumer = setup.consumer_env(
        &setup.db.url,
        &setup.group,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.uri())],
    );
    let (id, untraced) = (Uuid::new_v4(), Uuid::new_v4());
    let records = [
        Record::user(id, json!({"user_id": id, "first_name": "Traced"}))
            .with_header("traceparent", TRACEPARENT),
        Record::user(
            untraced,
            json!({"user_id": untraced, "first_name": "Plain"}),
        ),
    ];
    produce(&setup.broker.producer(), &setup.topic, &records).await;
    assert!(
        eventually(LANDING, || async {
            setup.db.find(id).is_some() && setup.db.find(untraced).is_some()
        })
        .await
    );

    // SIGTERM: what is left is exported before the exit, within the bound.
    consumer.terminate();
    let status = consumer.exit_within(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    let spans = receiver.spans().await;
    let (trace_id, parent_id) = trace_parent(TRACEPARENT);
    let applied = spans
        .iter()
        .find(|span| span.trace_id == trace_id && span.parent_span_id == parent_id)
        .unwrap_or_else(|| panic!("no span continues the record's trace: {spans:#?}"));
    assert_eq!(applied.name, "apply user record");
    assert_eq!(applied.service, "user-info-consumer");
    let record_spans = spans.iter().filter(|span| span.name == "apply user record");
    assert_eq!(
        record_spans.count(),
        1,
        "a record without a trace context gets no span of its own"
    );
    let link = (applied.trace_id.clone(), applied.span_id.clone());
    let batch = spans
        .iter()
        .find(|span| span.links.contains(&link))
        .unwrap_or_else(|| panic!("no batch links the record's span: {spans:#?}"));
    assert_eq!(batch.name, "batch");
}
