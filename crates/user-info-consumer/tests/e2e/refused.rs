//! Records the database itself refuses - a constraint added by an operator, a
//! value too long for a narrowed column - go to the dead-letter topic with the
//! SQLSTATE and the constraint; every other record of their batch lands.

use std::time::Duration;

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

    let dry = setup.replay_dlq(&["--dry-run"]).await;
    assert!(dry.contains("4 dead letters read, would replay 4"), "{dry}");
    let filtered = setup.replay_dlq(&["--dry-run", "--reason", "22001"]).await;
    assert!(
        filtered.contains("would replay 1, 3 left out"),
        "{filtered}"
    );

    // The dry runs stored no position: the real run replays all four.
    let real = setup.replay_dlq(&[]).await;
    assert!(real.contains("4 dead letters read, replayed 4"), "{real}");
    let landed = eventually(LANDING, || async {
        mixed.refused.iter().all(|id| setup.db.find(*id).is_some())
            && setup
                .db
                .find(mixed.partly)
                .is_some_and(|u| u.last_name == "two")
    })
    .await;
    assert!(landed, "the replayed records landed");
    assert_eq!(
        setup.db.stored(mixed.refused[0]).unwrap().first_name,
        "Blocked"
    );

    let again = setup.replay_dlq(&[]).await;
    assert!(again.contains("0 dead letters read, replayed 0"), "{again}");
}
