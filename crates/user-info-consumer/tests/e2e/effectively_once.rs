//! Effectively once: every record's effect lands exactly once, in order,
//! whatever crashes, zombies and stops happen. The tests count applications
//! with a column and a trigger only the test's schema has: a user's `applied`
//! starts at 1 and every update adds one, so with one distinct user per record
//! a lost record is a missing user and a record applied twice is a 2.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use serde_json::json;
use user_store::testing::{TcpProxy, TestDatabase, eventually, postgres_address};
use uuid::Uuid;

use crate::support::{Broker, Record, Setup, produce};

const LANDING: Duration = Duration::from_secs(120);

/// Installs the schema and the application counter.
fn count_applications(db: &TestDatabase) {
    db.migrate();
    db.execute(
        "ALTER TABLE user_info ADD COLUMN applied integer NOT NULL DEFAULT 1;
         CREATE FUNCTION count_application() RETURNS trigger AS $$
         BEGIN NEW.applied := OLD.applied + 1; RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER count_application BEFORE UPDATE ON user_info
             FOR EACH ROW EXECUTE FUNCTION count_application();",
    );
}

/// How many users were applied other than `times` times.
fn applied_other_than(db: &TestDatabase, times: i32) -> i64 {
    db.count_where(&format!(
        "SELECT count(*) AS n FROM user_info WHERE applied <> {times}"
    ))
}

/// Asserts that the group's stored offsets are the partitions' end offsets.
fn assert_stored_offsets_are(db: &TestDatabase, ends: &HashMap<i32, i64>) {
    let stored = db.count_where(&format!(
        "SELECT count(*) AS n FROM consumer_offsets WHERE {}",
        ends.iter()
            .map(|(p, end)| format!("(partition = {p} AND next_offset = {end})"))
            .collect::<Vec<_>>()
            .join(" OR ")
    ));
    assert_eq!(
        stored,
        ends.len() as i64,
        "stored offsets are the end offsets {ends:?}"
    );
}

fn distinct_users(count: usize, tag: &str) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let id = Uuid::new_v4();
            Record::user(
                id,
                json!({"user_id": id, "first_name": format!("{tag}{i}")}),
            )
        })
        .collect()
}

fn merge(a: &mut HashMap<i32, i64>, b: HashMap<i32, i64>) {
    for (partition, end) in b {
        let at = a.entry(partition).or_default();
        *at = (*at).max(end);
    }
}

#[tokio::test]
async fn kill_9_mid_stream_and_inside_a_transaction_applies_every_record_exactly_once() {
    let setup = Setup::new(3).await;
    count_applications(&setup.db);
    let producer = setup.broker.producer_one_per_batch();
    // One distinct user per record: an offset stored too early would show as
    // a missing user, not be hidden by a later version.
    let mut ends = produce(&producer, &setup.topic, &distinct_users(10_000, "n")).await;

    let mut first = setup.consumer_with_batch_size(50);
    assert!(
        eventually(LANDING, || async {
            first.counter("consumer_messages_applied_total").await > 0
        })
        .await
    );
    first.kill_9();
    let applied_at_kill = setup.db.count();
    assert!(
        applied_at_kill < 10_000,
        "killed mid-stream ({applied_at_kill})"
    );

    // A kill while a batch is inside its transaction: the test holds a lock on
    // a stored user, the next batch updates that user and waits for the lock
    // (its offsets already advanced in the same transaction).
    let locked: Uuid = {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            user_id: Uuid,
        }
        let mut conn = setup.db.connect();
        let ids: Vec<Id> = diesel::sql_query("SELECT user_id FROM user_info LIMIT 1")
            .load(&mut conn)
            .unwrap();
        ids[0].user_id
    };
    let mut holder = setup.db.connect();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM user_info WHERE user_id = '{locked}' FOR UPDATE"
        ))
        .unwrap();
    merge(
        &mut ends,
        produce(
            &producer,
            &setup.topic,
            &[Record::user(
                locked,
                json!({"user_id": locked, "last_name": "Locked"}),
            )],
        )
        .await,
    );
    let mut second = setup.consumer_with_batch_size(50);
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
        WHERE application_name = 'user-info-consumer' AND wait_event_type = 'Lock'";
    assert!(
        eventually(LANDING, || async { setup.db.count_where(waiting) == 1 }).await,
        "a batch waits for the lock inside its transaction"
    );
    second.kill_9();
    holder.batch_execute("ROLLBACK").unwrap();

    let _third = setup.consumer();
    let complete = eventually(Duration::from_secs(150), || async {
        setup.db.count_where(
            "SELECT count(*) AS n FROM user_info WHERE first_name LIKE 'n%' OR last_name = 'Locked'",
        ) == 10_000
            && setup.db.find(locked).is_some_and(|user| user.last_name == "Locked")
    })
    .await;
    assert!(complete, "every record landed after the restarts");
    // The locked user: created, then updated once.
    assert_eq!(setup.db.find(locked).map(|_| ()), Some(()));
    assert_eq!(
        setup.db.count_where(&format!(
            "SELECT count(*) AS n FROM user_info WHERE user_id = '{locked}' AND applied = 2"
        )),
        1
    );
    assert_eq!(
        applied_other_than(&setup.db, 1),
        1,
        "every other record applied once"
    );
    assert_stored_offsets_are(&setup.db, &ends);
}

#[tokio::test]
async fn a_zombie_s_batch_is_fenced_and_never_overwrites_the_new_owner_s_newer_values() {
    let setup = Setup::new(1).await;
    count_applications(&setup.db);
    let producer = setup.broker.producer_one_per_batch();
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let via_proxy = setup.db.url_via(proxy.address);
    // A: its database connection will go silent while it holds a batch; it
    // waits for the answer (long query timeout) and stops polling Kafka, so
    // the group gives its partition to B.
    let zombie = setup.consumer_env(
        &via_proxy,
        &setup.group,
        &[
            ("DATABASE_QUERY_TIMEOUT", "120"),
            ("KAFKA_MAX_POLL_INTERVAL_MS", "6000"),
        ],
    );
    let warm_up = Uuid::new_v4();
    let mut ends = produce(
        &producer,
        &setup.topic,
        &[Record::user(
            warm_up,
            json!({"user_id": warm_up, "first_name": "W"}),
        )],
    )
    .await;
    // Stored by A, not only committed: a freeze while the warm-up's COMMIT
    // answer is on its way back would hold that batch instead of v1's.
    assert!(
        eventually(LANDING, || async {
            zombie.counter("consumer_messages_applied_total").await >= 1
        })
        .await
    );
    assert!(setup.db.find(warm_up).is_some());

    let user = Uuid::new_v4();
    let version = |v: u32| {
        Record::user(
            user,
            json!({"user_id": user, "first_name": format!("v{v}")}),
        )
    };
    proxy.freeze();
    merge(
        &mut ends,
        produce(&producer, &setup.topic, &[version(1)]).await,
    );
    assert!(
        eventually(LANDING, || async { proxy.held() > 0 }).await,
        "A sent its batch into the silent database"
    );

    let owner = setup.consumer();
    assert!(
        eventually(LANDING, || async {
            owner.status("/ready").await == Some(200)
        })
        .await,
        "B joined the group"
    );
    let later: Vec<Record> = (2..=5).map(version).collect();
    merge(&mut ends, produce(&producer, &setup.topic, &later).await);
    assert!(
        eventually(LANDING, || async {
            setup.db.find(user).is_some_and(|u| u.first_name == "v5")
        })
        .await,
        "B applied v1..v5"
    );

    proxy.thaw();
    assert!(
        eventually(LANDING, || async {
            zombie.counter("consumer_batches_fenced_total").await >= 1
        })
        .await,
        "A's batch was fenced"
    );
    assert_eq!(setup.db.stored(user).unwrap().first_name, "v5");
    assert_stored_offsets_are(&setup.db, &ends);
}

/// A COMMIT PostgreSQL carries out but whose answer comes after
/// `DATABASE_QUERY_TIMEOUT`: the retry finds the offset moved by the batch
/// itself and is fenced, which drops the record read ahead meanwhile. Kafka's
/// fetch position is past it; nothing else is produced, so only the member's
/// own seek back brings it again.
#[tokio::test]
async fn a_commit_answered_too_late_strands_nothing_read_ahead_even_with_no_more_traffic() {
    let setup = Setup::new(1).await;
    count_applications(&setup.db);
    let producer = setup.broker.producer();
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let via_proxy = setup.db.url_in_clear_via(proxy.address);
    let consumer = setup.consumer_env(
        &via_proxy,
        &setup.group,
        &[
            ("DATABASE_QUERY_TIMEOUT", "1"),
            ("CONSUMER_BATCH_SIZE", "1"),
        ],
    );
    let mut ends = produce(&producer, &setup.topic, &distinct_users(1, "warm")).await;
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_messages_applied_total").await >= 1
        })
        .await,
        "the warm-up record was stored"
    );

    proxy.withhold_next_commit_answer();
    // Produced together: the second is read ahead while the first's
    // transaction runs.
    let [late, stranded] = [Uuid::new_v4(), Uuid::new_v4()];
    let records = [late, stranded].map(|id| Record::user(id, json!({"user_id": id})));
    merge(&mut ends, produce(&producer, &setup.topic, &records).await);
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_batches_fenced_total").await >= 1
        })
        .await,
        "the retry of the batch whose COMMIT answer never came was fenced"
    );
    assert!(setup.db.find(late).is_some());

    assert!(
        eventually(LANDING, || async { setup.db.find(stranded).is_some() }).await,
        "the record read ahead was applied with no record after it"
    );
    assert_eq!(
        applied_other_than(&setup.db, 1),
        0,
        "every record applied once"
    );
    assert_stored_offsets_are(&setup.db, &ends);
}

#[tokio::test]
async fn sigterm_with_a_silent_database_exits_within_10_s_and_the_next_member_applies_everything() {
    let setup = Setup::new(3).await;
    count_applications(&setup.db);
    let producer = setup.broker.producer_one_per_batch();
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let via_proxy = setup.db.url_via(proxy.address);
    let mut consumer = setup.consumer_env(
        &via_proxy,
        &setup.group,
        &[
            ("DATABASE_QUERY_TIMEOUT", "60"),
            ("CONSUMER_BATCH_SIZE", "100"),
        ],
    );
    let mut ends = produce(&producer, &setup.topic, &distinct_users(2_000, "a")).await;
    assert!(
        eventually(LANDING, || async {
            consumer.counter("consumer_messages_applied_total").await > 0
        })
        .await
    );
    proxy.freeze();
    merge(
        &mut ends,
        produce(&producer, &setup.topic, &distinct_users(500, "b")).await,
    );
    assert!(eventually(LANDING, || async { proxy.held() > 0 }).await);

    consumer.terminate();
    let signalled = Instant::now();
    let status = consumer.exit_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within 10 s of SIGTERM (after {:?}: {status:?})",
        signalled.elapsed()
    );
    proxy.thaw();
    drop(proxy);

    let _next = setup.consumer();
    let complete = eventually(Duration::from_secs(150), || async {
        setup.db.count() == 2_500
    })
    .await;
    assert!(
        complete,
        "the next member applied everything ({})",
        setup.db.count()
    );
    assert_eq!(
        applied_other_than(&setup.db, 1),
        0,
        "every record applied once"
    );
    assert_stored_offsets_are(&setup.db, &ends);
}

#[tokio::test]
async fn with_the_broker_unreachable_ready_turns_503_once_dropped_and_sigterm_exits_within_10_s() {
    let broker_port = crate::support::free_port();
    let mut proxy = TcpProxy::reserve(format!("127.0.0.1:{broker_port}").parse().unwrap());
    proxy.start();
    let broker = Broker::start_advertising(broker_port, proxy.address.port()).await;
    let setup = Setup::on(broker, 1).await;
    setup.broker.create_topic(&setup.dlq_topic, 1).await;
    let mut consumer = setup.consumer();
    assert!(
        eventually(LANDING, || async {
            consumer.status("/ready").await == Some(200)
        })
        .await,
        "joined"
    );
    proxy.stop();
    assert!(
        eventually(LANDING, || async {
            consumer.status("/ready").await == Some(503)
        })
        .await,
        "/ready is 503 once the member has lost its group"
    );
    assert_eq!(consumer.status("/health").await, Some(200));
    consumer.terminate();
    let status = consumer.exit_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within 10 s: {status:?}"
    );
}

/// Records every value a user's first name took, in the order written: a stale
/// overwrite or a record applied twice shows as a version not above the last.
fn record_history(db: &TestDatabase) {
    db.migrate();
    db.execute(
        "ALTER TABLE user_info ADD COLUMN history text NOT NULL DEFAULT '';
         CREATE FUNCTION record_history() RETURNS trigger AS $$
         BEGIN
             IF TG_OP = 'INSERT' THEN NEW.history := NEW.first_name;
             ELSE NEW.history := OLD.history || ',' || NEW.first_name;
             END IF;
             RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER record_history BEFORE INSERT OR UPDATE ON user_info
             FOR EACH ROW EXECUTE FUNCTION record_history();",
    );
}

fn applied_so_far(db: &TestDatabase) -> i64 {
    db.count_where("SELECT coalesce(sum(next_offset), 0)::bigint AS n FROM consumer_offsets")
}

#[tokio::test]
async fn three_members_coming_and_going_under_load_with_a_database_freeze_apply_each_record_once_in_order()
 {
    const USERS: usize = 1_000;
    const VERSIONS: usize = 60;
    let setup = Setup::new(3).await;
    record_history(&setup.db);
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let via_proxy = setup.db.url_via(proxy.address);
    let member = || {
        setup.consumer_env(
            &via_proxy,
            &setup.group,
            &[
                ("CONSUMER_BATCH_SIZE", "50"),
                ("DATABASE_QUERY_TIMEOUT", "2"),
            ],
        )
    };

    // The stream: one version of every user per round, produced while the
    // members come and go.
    let producer = setup.broker.producer_one_per_batch();
    let topic = setup.topic.clone();
    let stream_users = users.clone();
    let stream = tokio::spawn(async move {
        let mut ends = HashMap::new();
        for version in 1..=VERSIONS {
            let round: Vec<Record> = stream_users
                .iter()
                .map(|id| {
                    Record::user(
                        *id,
                        json!({"user_id": id, "first_name": format!("v{version}")}),
                    )
                })
                .collect();
            merge(&mut ends, produce(&producer, &topic, &round).await);
        }
        ends
    });

    let total = (USERS * VERSIONS) as i64;
    let reach = |share: i64| {
        let db = &setup.db;
        async move {
            let at = total * share / 100;
            assert!(
                eventually(Duration::from_secs(180), || async {
                    applied_so_far(db) >= at
                })
                .await,
                "the group reached {share} % ({} applied)",
                applied_so_far(db)
            );
        }
    };
    let mut first = member();
    reach(5).await;
    let mut second = member();
    reach(15).await;
    let third = member();
    reach(25).await;
    first.terminate();
    assert!(
        first
            .exit_within(Duration::from_secs(10))
            .await
            .is_some_and(|s| s.success())
    );
    reach(35).await;
    // A freeze: every member's database stops answering until one has given
    // an attempt up and retried.
    proxy.freeze();
    assert!(eventually(LANDING, || async { proxy.held() > 0 }).await);
    assert!(
        eventually(LANDING, || async {
            third.counter("consumer_database_retries_total").await > 0
                || second.counter("consumer_database_retries_total").await > 0
        })
        .await
    );
    proxy.thaw();
    reach(50).await;
    second.kill_9();
    let fourth = member();
    reach(70).await;
    let fifth = member();

    let ends = stream.await.unwrap();
    let done = eventually(Duration::from_secs(240), || async {
        applied_so_far(&setup.db) == total
    })
    .await;
    assert!(
        done,
        "all {total} records applied ({})",
        applied_so_far(&setup.db)
    );

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        first_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        history: String,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT first_name, history FROM user_info")
        .load(&mut setup.db.connect())
        .unwrap();
    assert_eq!(rows.len(), USERS);
    for row in &rows {
        assert_eq!(
            row.first_name,
            format!("v{VERSIONS}"),
            "every user ends at its last record"
        );
        let versions: Vec<usize> = row
            .history
            .split(',')
            .map(|v| v.trim_start_matches('v').parse().unwrap())
            .collect();
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "written in order, none twice: {}",
            row.history
        );
    }
    assert_stored_offsets_are(&setup.db, &ends);
    let assignments: usize = [&first, &second, &third, &fourth, &fifth]
        .iter()
        .map(|member| {
            std::fs::read_to_string(&member.log)
                .unwrap()
                .matches("partitions assigned")
                .count()
        })
        .sum();
    assert!(
        assignments >= 6,
        "at least 4 rebalances ({assignments} assignments)"
    );
}
