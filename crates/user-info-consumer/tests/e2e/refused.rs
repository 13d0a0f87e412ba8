//! Records the database itself refuses - a constraint added by an operator, a
//! value too long for a narrowed column - go to the dead-letter topic with the
//! SQLSTATE and the constraint; every other record of their batch lands.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use user_store::testing::eventually;
use uuid::Uuid;

use crate::support::{Record, Setup, produce, read_topic};

const LANDING: Duration = Duration::from_secs(120);

/// The test database with two rules the application does not know: no first
/// name "Blocked" (SQLSTATE 23514) and phone numbers of at most 5 characters
/// (22001).
pub fn with_operator_rules(setup: &Setup) {
    setup.db.migrate();
    setup.db.execute(
        "ALTER TABLE user_info ADD CONSTRAINT no_blocked_names CHECK (first_name <> 'Blocked');
         ALTER TABLE user_info ALTER COLUMN phone_number TYPE varchar(5);",
    );
}

/// 20 good users, 2 refused by the CHECK, 1 refused by the column's length,
/// and one user whose middle record of three is refused; all in one batch.
pub struct Mixed {
    pub good: Vec<Uuid>,
    pub refused: Vec<Uuid>,
    pub partly: Uuid,
    pub records: Vec<Record>,
}

pub fn mixed_records() -> Mixed {
    let good: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let refused: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let partly = Uuid::new_v4();
    let mut records = Vec::new();
    for (i, id) in good.iter().enumerate() {
        records.push(Record::user(
            *id,
            json!({"user_id": id, "first_name": format!("g{i}")}),
        ));
        if i == 10 {
            records.push(Record::user(
                refused[0],
                json!({"user_id": refused[0], "first_name": "Blocked"}),
            ));
            records.push(Record::user(
                partly,
                json!({"user_id": partly, "first_name": "P", "last_name": "one"}),
            ));
            records.push(Record::user(
                partly,
                json!({"user_id": partly, "first_name": "Blocked", "last_name": "two"}),
            ));
            records.push(Record::user(
                partly,
                json!({"user_id": partly, "last_name": "three"}),
            ));
        }
    }
    records.push(Record::user(
        refused[1],
        json!({"user_id": refused[1], "first_name": "Blocked"}),
    ));
    records.push(Record::user(
        refused[2],
        json!({"user_id": refused[2], "phone_number": "+44 20 7946 0000"}),
    ));
    Mixed {
        good,
        refused,
        partly,
        records,
    }
}

#[tokio::test]
async fn records_the_database_refuses_are_dead_lettered_with_the_sqlstate_and_their_batch_lands() {
    let setup = Setup::new(1).await;
    with_operator_rules(&setup);
    let mixed = mixed_records();
    produce(&setup.broker.producer(), &setup.topic, &mixed.records).await;
    let consumer = setup.consumer_with_batch_size(500);

    let landed = eventually(LANDING, || async {
        mixed.good.iter().all(|id| setup.db.find(*id).is_some())
            && setup
                .db
                .find(mixed.partly)
                .is_some_and(|u| u.last_name == "three")
    })
    .await;
    assert!(landed, "every record the database accepts landed");
    // One by one: "one", then "two" refused, then "three" on top of "one".
    let partly = setup.db.stored(mixed.partly).unwrap();
    assert_eq!(
        (partly.first_name.as_str(), partly.last_name.as_str()),
        ("P", "three")
    );
    for id in &mixed.refused {
        assert!(setup.db.find(*id).is_none());
    }

    let letters = read_topic(&setup.broker.bootstrap, &setup.dlq_topic, 4, LANDING).await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    let reasons: Vec<&str> = letters
        .iter()
        .filter_map(|l| l.header("dlq-reason"))
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("SQLSTATE 23514") && r.contains("no_blocked_names"))
            .count(),
        3,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("SQLSTATE 22001"))
            .count(),
        1,
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|r| !r.contains("Blocked") && !r.contains("7946")),
        "{reasons:?}"
    );
    for letter in &letters {
        assert!(letter.value.is_some() && letter.key.is_some());
        assert_eq!(
            letter.header("dlq-source-topic"),
            Some(setup.topic.as_str())
        );
    }
    assert_eq!(consumer.counter("consumer_records_refused_total").await, 4);
}

#[tokio::test]
async fn replay_dlq_puts_fixed_records_back_once_and_a_dry_run_changes_nothing() {
    let setup = Setup::new(1).await;
    with_operator_rules(&setup);
    let mixed = mixed_records();
    produce(&setup.broker.producer(), &setup.topic, &mixed.records).await;
    let consumer = setup.consumer_with_batch_size(500);
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_records_refused_total").await == 4
                && mixed.good.iter().all(|id| setup.db.find(*id).is_some())
        })
        .await
    );
    // The operator fixes what refused them.
    setup.db.execute(
        "ALTER TABLE user_info DROP CONSTRAINT no_blocked_names;
         ALTER TABLE user_info ALTER COLUMN phone_number TYPE text;",
    );

    // The middle record of `partly` was followed by a third that applied:
    // replaying it would make that user older. It is left out.
    let dry = setup.replay_dlq(&["--dry-run"]).await;
    assert!(
        dry.contains("4 dead letters read, would replay 3") && dry.contains("1 superseded"),
        "{dry}"
    );
    let filtered = setup.replay_dlq(&["--dry-run", "--reason", "22001"]).await;
    assert!(
        filtered.contains("would replay 1, 3 left out"),
        "{filtered}"
    );

    // The dry runs stored no position: the real run replays the three.
    let real = setup.replay_dlq(&[]).await;
    assert!(
        real.contains("4 dead letters read, replayed 3") && real.contains("1 superseded"),
        "{real}"
    );
    let landed = eventually(LANDING, || async {
        mixed.refused.iter().all(|id| setup.db.find(*id).is_some())
    })
    .await;
    assert!(landed, "the replayed records landed");
    assert_eq!(
        setup.db.stored(mixed.refused[0]).unwrap().first_name,
        "Blocked"
    );
    let partly = setup.db.stored(mixed.partly).unwrap();
    assert_eq!(
        (partly.first_name.as_str(), partly.last_name.as_str()),
        ("P", "three")
    );

    let again = setup.replay_dlq(&[]).await;
    assert!(again.contains("0 dead letters read, replayed 0"), "{again}");
}

/// The partition `producer` puts `key` on in a fresh topic of three.
async fn partition_of(setup: &Setup, producer: &FutureProducer, key: &str) -> i32 {
    let topic = format!("probe_{}", Uuid::new_v4().simple());
    setup.broker.create_topic(&topic, 3).await;
    let record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).key(key).payload("probe");
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)
        .unwrap()
        .partition
}

fn producer_with(setup: &Setup, partitioner: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &setup.broker.bootstrap)
        .set("partitioner", partitioner)
        .create()
        .unwrap()
}

/// Reads `topic` from its beginning until a replayed record (one with
/// `dlq-replayed-from`) arrives; its partition.
async fn replayed_partition(setup: &Setup, topic: &str) -> Option<i32> {
    let reader = setup.broker.reader(topic);
    let deadline = tokio::time::Instant::now() + LANDING;
    while let Ok(message) = tokio::time::timeout_at(deadline, reader.recv()).await {
        let message = message.unwrap();
        let replayed = message
            .headers()
            .is_some_and(|headers| headers.iter().any(|h| h.key == "dlq-replayed-from"));
        if replayed {
            return Some(message.partition());
        }
    }
    None
}

/// The record was on a partition neither CRC32 (librdkafka's default) nor
/// murmur2 (Java's) would hash its key to - as when its producer chose the
/// partition itself: the replay puts it back there, behind the user's other
/// records.
#[tokio::test]
async fn replay_dlq_puts_a_letter_back_on_the_partition_its_record_came_from() {
    let setup = Setup::new(3).await;
    with_operator_rules(&setup);
    let user = Uuid::new_v4();
    let key = user.to_string();
    let hashed = [
        partition_of(&setup, &producer_with(&setup, "consistent_random"), &key).await,
        partition_of(&setup, &producer_with(&setup, "murmur2_random"), &key).await,
    ];
    let chosen = (0..3).find(|p| !hashed.contains(p)).unwrap();
    let value = serde_json::to_vec(&json!({"user_id": user, "first_name": "Blocked"})).unwrap();
    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&setup.topic)
        .key(key.as_bytes())
        .payload(value.as_slice())
        .partition(chosen);
    setup
        .broker
        .producer()
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
    let consumer = setup.consumer();
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_records_refused_total").await == 1
        })
        .await
    );
    setup
        .db
        .execute("ALTER TABLE user_info DROP CONSTRAINT no_blocked_names;");

    let real = setup.replay_dlq(&[]).await;
    assert!(real.contains("1 dead letters read, replayed 1"), "{real}");
    assert_eq!(
        replayed_partition(&setup, &setup.topic).await,
        Some(chosen),
        "replayed onto partition {chosen} (hashing would give {hashed:?})"
    );
    assert!(eventually(LANDING, || async { setup.db.find(user).is_some() }).await);
}

/// A run that fails half-way (the second letter's topic does not exist) has
/// committed the first: the next run replays only the second.
#[tokio::test]
async fn a_replay_that_fails_half_way_replays_only_the_rest_next_time() {
    let setup = Setup::new(1).await;
    let missing = format!("missing_{}", Uuid::new_v4().simple());
    let letter = |topic: &str, name: &str| {
        let id = Uuid::new_v4();
        Record::user(id, json!({"user_id": id, "first_name": name}))
            .with_header("dlq-source-topic", topic)
            .with_header("dlq-source-partition", "0")
            .with_header("dlq-reason", "refused by the database: SQLSTATE 23514")
    };
    // One produce batch each: tansu 0.6.0 puts a partition's end at its last
    // batch's first offset + 1, so a run resuming inside a batch would see
    // nothing left to read (Kafka does not).
    produce(
        &setup.broker.producer_one_per_batch(),
        &setup.dlq_topic,
        &[letter(&setup.topic, "first"), letter(&missing, "second")],
    )
    .await;

    let failed = setup.replay_dlq_failing(&[]).await;
    assert!(failed.contains(&missing), "{failed}");
    setup.broker.create_topic(&missing, 1).await;
    let again = setup.replay_dlq(&[]).await;
    assert!(again.contains("1 dead letters read, replayed 1"), "{again}");
}

/// The case: a refused record replayed after its user changed (here
/// as `PUT`/`POST /user` would change it) is skipped, not applied over the
/// change; two refused records of one user replay in their order; a letter
/// whose user nobody changed applies.
#[tokio::test]
async fn a_replayed_letter_never_undoes_a_later_change_and_one_user_s_letters_replay_in_order() {
    let setup = Setup::new(1).await;
    with_operator_rules(&setup);
    let [changed, twice, untouched] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let records = [
        Record::user(
            changed,
            json!({"user_id": changed, "first_name": "A", "email": "a@example.com"}),
        ),
        Record::user(
            changed,
            json!({"user_id": changed, "first_name": "Blocked", "email": "x@example.com"}),
        ),
        Record::user(
            twice,
            json!({"user_id": twice, "first_name": "B", "last_name": "1"}),
        ),
        Record::user(
            twice,
            json!({"user_id": twice, "first_name": "Blocked", "last_name": "2"}),
        ),
        Record::user(
            twice,
            json!({"user_id": twice, "first_name": "Blocked", "last_name": "3"}),
        ),
        Record::user(
            untouched,
            json!({"user_id": untouched, "first_name": "Blocked"}),
        ),
    ];
    produce(&setup.broker.producer(), &setup.topic, &records).await;
    // One record per batch: each replay is checked after the one before it
    // applied (the marks of the user's later letters must follow it).
    let consumer = setup.consumer_with_batch_size(1);
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_records_refused_total").await == 4
                && setup.db.find(twice).is_some()
        })
        .await
    );
    // A change after the refusal, as user-info makes it.
    setup.db.execute(&format!(
        "UPDATE user_info SET email = 'later@example.com', version = version + 1, \
         updated_at = now() WHERE user_id = '{changed}'"
    ));
    setup
        .db
        .execute("ALTER TABLE user_info DROP CONSTRAINT no_blocked_names;");

    // With the marks at hand, replay-dlq leaves the superseded letter out.
    let dry = setup.replay_dlq(&["--dry-run"]).await;
    assert!(
        dry.contains("would replay 3") && dry.contains("1 superseded"),
        "{dry}"
    );
    // Without them (as when the user changes between the run and the
    // consumer), the consumer skips it under the user's row lock.
    let real = setup.replay_dlq_without_database(&[]).await;
    assert!(real.contains("4 dead letters read, replayed 4"), "{real}");
    assert!(
        eventually(LANDING, || async {
            setup.db.find(untouched).is_some()
                && consumer.counter("consumer_replays_superseded_total").await == 1
        })
        .await,
        "the untouched user's letter applied, one letter skipped"
    );
    let changed = setup.db.stored(changed).unwrap();
    assert_eq!(
        (changed.first_name.as_str(), changed.email.as_str()),
        ("A", "later@example.com"),
        "the later change stands"
    );
    let twice = setup.db.stored(twice).unwrap();
    assert_eq!(
        (twice.first_name.as_str(), twice.last_name.as_str()),
        ("Blocked", "3"),
        "both letters applied, in their order"
    );
    assert_eq!(setup.db.stored(untouched).unwrap().first_name, "Blocked");
}

/// An operator's UNIQUE index on e-mail: one user gives up an address and a
/// new user takes it, in that order, in one batch. Every record is fine in
/// its order, but the batch's multi-row INSERT meets the new user first and
/// is refused whole, while the dry run (record by record) finds no culprit:
/// the batch is then applied user by user, nothing dead-lettered.
#[tokio::test]
async fn a_batch_refused_whole_though_no_record_is_refused_alone_is_applied_user_by_user() {
    let setup = Setup::new(1).await;
    setup.db.migrate();
    setup
        .db
        .execute("CREATE UNIQUE INDEX one_user_per_email ON user_info (email) WHERE email <> ''");
    let (existing, newcomer) = (Uuid::new_v4(), Uuid::new_v4());
    let producer = setup.broker.producer();
    produce(
        &producer,
        &setup.topic,
        &[Record::user(
            existing,
            json!({"user_id": existing, "email": "x@example.com"}),
        )],
    )
    .await;
    let first = setup.consumer();
    assert!(eventually(LANDING, || async { setup.db.find(existing).is_some() }).await);
    drop(first);

    // Both in the next member's first fetch: one batch.
    produce(
        &producer,
        &setup.topic,
        &[
            Record::user(
                existing,
                json!({"user_id": existing, "email": "y@example.com"}),
            ),
            Record::user(
                newcomer,
                json!({"user_id": newcomer, "email": "x@example.com"}),
            ),
        ],
    )
    .await;
    let consumer = setup.consumer_with_batch_size(500);
    assert!(
        eventually(LANDING, || async {
            setup
                .db
                .find(newcomer)
                .is_some_and(|user| user.email == "x@example.com")
        })
        .await,
        "the batch was applied"
    );
    assert_eq!(setup.db.stored(existing).unwrap().email, "y@example.com");
    assert_eq!(consumer.counter("consumer_records_refused_total").await, 0);
    assert_eq!(
        consumer
            .counter("consumer_messages_dead_lettered_total")
            .await,
        0
    );
}
