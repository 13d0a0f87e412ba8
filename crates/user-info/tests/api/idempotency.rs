//! `Idempotency-Key` on `POST /user`: the first answer is kept in PostgreSQL and
//! replayed to a retry with the same body, with no second effect; another body
//! is 422, a retry while the first is in flight 409; keys expire and are purged.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use serde_json::{Value, json};
use user_store::Database;
use uuid::Uuid;

use crate::helpers::{
    TestDatabase, eventually, problem, settings, spawn_app, spawn_busy_app, spawn_configured,
};

fn keys(app: &crate::helpers::TestApp) -> i64 {
    app.db
        .count_where("SELECT count(*) AS n FROM idempotency_keys")
}

async fn answer(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, etag, response.json().await.unwrap())
}

#[tokio::test]
async fn the_same_keyed_post_without_user_id_sent_5_times_creates_one_user_and_gets_5_identical_answers()
 {
    let app = spawn_app().await;
    let body = json!({"first_name": "Ann", "email": "ann@example.com"});
    let key = [("idempotency-key", "retry-me-1")];

    let first = app.post_user_with(&body, &key).await;
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first = answer(first).await;
    assert_eq!(first.0, 201);
    for _ in 0..4 {
        let again = app.post_user_with(&body, &key).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(
            answer(again).await,
            first,
            "the same answer, the same generated user_id"
        );
    }

    assert_eq!(app.db.count(), 1, "one row");
    let id: Uuid = first.2["user_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.db.stored(id).unwrap().version, 1, "no second effect");
    assert_eq!(keys(&app), 1);
}

#[tokio::test]
async fn five_concurrent_keyed_posts_create_one_user_and_each_gets_the_first_answer_or_409() {
    let app = Arc::new(spawn_busy_app().await);
    let body = json!({"first_name": "Ann"});

    let senders: Vec<_> = (0..5)
        .map(|_| {
            let app = app.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let response = app
                    .post_user_with(&body, &[("idempotency-key", "concurrent-key")])
                    .await;
                if response.status() == 409 {
                    assert!(response.headers().contains_key("retry-after"));
                    problem(response, 409).await;
                    None
                } else {
                    Some(answer(response).await)
                }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for sender in senders {
        answers.extend(sender.await.unwrap());
    }

    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );
    assert_eq!(answers[0].0, 201);
    assert_eq!(app.db.count(), 1, "one row");
}

#[tokio::test]
async fn a_retry_while_the_first_request_is_in_flight_is_409_and_then_gets_the_first_answer() {
    let app = spawn_busy_app().await;
    let id = Uuid::new_v4();
    app.post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    // Hold the user's row so the first keyed request waits inside its transaction.
    let mut blocker = app.db.connect();
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM user_info WHERE user_id = '{id}' FOR UPDATE"
        ))
        .unwrap();
    let body = json!({"user_id": id, "first_name": "B"});
    let key = [("idempotency-key", "in-flight")];

    let first = {
        let (address, body) = (app.address.clone(), body.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{address}/user"))
                .header("content-type", "application/json")
                .header("idempotency-key", "in-flight")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        })
    };
    let waiting = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
        app.db.name
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.db.count_where(&waiting) >= 1
        })
        .await
    );

    problem(app.post_user_with(&body, &key).await, 409).await;

    blocker.batch_execute("COMMIT").unwrap();
    let first = answer(first.await.unwrap()).await;
    assert_eq!((first.0, first.1.as_deref()), (200, Some("\"2\"")));
    assert_eq!(answer(app.post_user_with(&body, &key).await).await, first);
    assert_eq!(app.db.stored(id).unwrap().version, 2, "applied once");
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let key = [("idempotency-key", "reused")];
    let first = answer(
        app.post_user_with(&json!({"first_name": "Ann"}), &key)
            .await,
    )
    .await;
    assert_eq!(first.0, 201);

    let other = app
        .post_user_with(&json!({"first_name": "Bob"}), &key)
        .await;
    let body = problem(other, 422).await;
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    assert_eq!(app.db.count(), 1);
    let id: Uuid = first.2["user_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.db.stored(id).unwrap().first_name, "Ann");

    // Another key is another request.
    let another = app
        .post_user_with(
            &json!({"first_name": "Bob"}),
            &[("idempotency-key", "fresh")],
        )
        .await;
    assert_eq!(another.status(), 201);
    assert_eq!(app.db.count(), 2);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    for key in [long.as_str(), "two words"] {
        let response = app
            .post_user_with(&json!({"first_name": "Ann"}), &[("idempotency-key", key)])
            .await;
        problem(response, 400).await;
    }
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn an_expired_key_is_purged_by_the_service_and_then_forgotten() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.idempotency_key_ttl = Duration::from_secs(1);
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let body = json!({"first_name": "Ann"});
    let key = [("idempotency-key", "short-lived")];

    let first = answer(app.post_user_with(&body, &key).await).await;
    assert_eq!(first.0, 201);
    assert_eq!(keys(&app), 1);

    let purged = eventually(Duration::from_secs(20), || async { keys(&app) == 0 }).await;
    assert!(purged, "the service purges expired keys by itself");

    let again = answer(app.post_user_with(&body, &key).await).await;
    assert_eq!(again.0, 201, "an expired key is a new request");
    assert_ne!(again.2["user_id"], first.2["user_id"]);
    assert_eq!(app.db.count(), 2);
}

#[tokio::test]
async fn an_expired_key_counts_as_absent_even_before_it_is_purged() {
    // The default TTL (24 h): the purge runs once a minute, the key is expired by hand.
    let app = spawn_app().await;
    let body = json!({"first_name": "Ann"});
    let key = [("idempotency-key", "expired-by-hand")];
    let first = answer(app.post_user_with(&body, &key).await).await;
    app.db
        .execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'");

    let again = answer(app.post_user_with(&body, &key).await).await;

    assert_eq!(again.0, 201, "an expired key is a new request");
    assert_ne!(again.2["user_id"], first.2["user_id"]);
    assert_eq!(app.db.count(), 2);
    assert_eq!(keys(&app), 1, "the expired row was replaced");
    let replay = answer(app.post_user_with(&body, &key).await).await;
    assert_eq!(replay, again, "the new answer is the one kept");
}

#[tokio::test]
async fn five_keyed_posts_without_user_id_sent_while_the_first_is_held_in_flight_create_one_user() {
    let app = Arc::new(spawn_busy_app().await);
    // Holds every keyed request at the moment it would keep its answer - after
    // it has created its user - so the five surely overlap.
    let mut blocker = app.db.connect();
    blocker
        .batch_execute("BEGIN; LOCK TABLE idempotency_keys IN EXCLUSIVE MODE")
        .unwrap();
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..5)
        .map(|_| {
            let (app, finished) = (app.clone(), finished.clone());
            tokio::spawn(async move {
                let response = app
                    .post_user_with(
                        &json!({"first_name": "Ann"}),
                        &[("idempotency-key", "held")],
                    )
                    .await;
                let answer = answer(response).await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        })
        .collect();
    let waiting = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
        app.db.name
    );
    // Four answered while the first waits, or (were the key not claimed) all
    // five waiting: either way every request has reached the database.
    let settled = eventually(Duration::from_secs(20), || async {
        let waiting = app.db.count_where(&waiting);
        waiting >= 1 && finished.load(std::sync::atomic::Ordering::SeqCst) + waiting as usize >= 5
    })
    .await;
    assert!(settled);
    blocker.batch_execute("COMMIT").unwrap();

    let mut answers = Vec::new();
    for sender in senders {
        answers.push(sender.await.unwrap());
    }
    let created: Vec<_> = answers.iter().filter(|answer| answer.0 == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|answer| answer.0 == 201 || answer.0 == 409),
        "{answers:?}"
    );
    assert_eq!(app.db.count(), 1, "one row");
    assert_eq!(
        answer(
            app.post_user_with(
                &json!({"first_name": "Ann"}),
                &[("idempotency-key", "held")]
            )
            .await
        )
        .await,
        *created[0]
    );
}

#[tokio::test]
async fn deleting_a_user_erases_its_kept_answers_and_a_retry_answers_as_a_new_request() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let body = json!({"user_id": id, "first_name": "Erasable", "email": "erase.me@example.com"});
    let key = [("idempotency-key", "erasure")];
    let first = answer(app.post_user_with(&body, &key).await).await;
    assert_eq!(first.0, 201);
    // An answer without personal data (a 412 for another user) is kept as it is.
    let other = [("idempotency-key", "precondition")];
    let refused = app
        .post_user_with(
            &json!({"user_id": Uuid::new_v4(), "first_name": "X"}),
            &[other[0], ("if-match", "\"7\"")],
        )
        .await;
    assert_eq!(refused.status(), 412);
    assert_eq!(keys(&app), 2);

    let deleted = app.delete(&format!("/user?user_id={id}")).await;

    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.db.count_where(
            "SELECT count(*) AS n FROM idempotency_keys WHERE response_body LIKE '%erase.me%'"
        ),
        0,
        "the deleted user's data outlived it in a kept answer"
    );
    assert_eq!(keys(&app), 1, "the answer without personal data stays");
    let retried = answer(app.post_user_with(&body, &key).await).await;
    assert_eq!(retried.0, 201, "a retry after the erasure is a new request");
    assert_eq!(
        app.db.count_where(&format!(
            "SELECT count(*) AS n FROM user_info WHERE user_id = '{id}'"
        )),
        1
    );
}

#[tokio::test]
async fn a_user_deleted_by_hand_takes_its_kept_answers_with_it() {
    let app = spawn_app().await;
    let body = json!({"first_name": "Tombstoned", "email": "gone@example.com"});
    let first = answer(
        app.post_user_with(&body, &[("idempotency-key", "by-hand")])
            .await,
    )
    .await;
    assert_eq!(first.0, 201);

    // As a Kafka tombstone or an operator would: the row goes, whatever deleted it.
    app.db.execute("DELETE FROM user_info");

    assert_eq!(keys(&app), 0);
}

#[tokio::test]
async fn one_caller_s_key_never_replays_another_caller_s_answer() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.api_tokens =
        service_kit::http::ApiTokens::parse("caller-a-token-0123,caller-b-token-0123").unwrap();
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let post = |token: &'static str| {
        app.client
            .post(format!("{}/user", app.address))
            .bearer_auth(token)
            .header("idempotency-key", "order-1")
            .json(&json!({"first_name": "Same body"}))
            .send()
    };

    let a = answer(post("caller-a-token-0123").await.unwrap()).await;
    let b = answer(post("caller-b-token-0123").await.unwrap()).await;
    let a_again = answer(post("caller-a-token-0123").await.unwrap()).await;

    assert_eq!((a.0, b.0), (201, 201), "each caller's first use is its own");
    assert_ne!(a.2["user_id"], b.2["user_id"], "B got A's answer");
    assert_eq!(a_again.2, a.2, "A's retry replays A's answer");
    assert_eq!(app.db.count(), 2);
    assert_eq!(
        app.db
            .count_where("SELECT count(*) AS n FROM idempotency_keys WHERE key LIKE '%caller-%'"),
        0,
        "a token was stored"
    );
}

#[tokio::test]
async fn expired_keys_are_purged_in_batches_and_not_while_another_replica_purges() {
    let app = spawn_app().await;
    app.wait_until_ready().await;
    let backlog = user_store::PURGE_BATCH * 2 + 500;
    app.db.execute(&format!(
        "INSERT INTO idempotency_keys (key, fingerprint, status, response_body, expires_at) \
         SELECT 'old-' || g, '\\x00', 412, '{{}}', now() - interval '1 hour' \
         FROM generate_series(1, {backlog}) AS g"
    ));
    let store = Database::start(&settings(&app.db.url).database, "test-purge").unwrap();
    assert!(eventually(Duration::from_secs(20), || async { store.is_migrated() }).await);

    // Another replica purging: it holds the purge's lock.
    let mut other = app.db.connect();
    other
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('idempotency_keys purge', 0))",
        )
        .unwrap();
    assert_eq!(store.purge_expired_keys().await.unwrap(), 0);
    assert_eq!(keys(&app), backlog as i64);
    other.batch_execute("COMMIT").unwrap();

    assert_eq!(store.purge_expired_keys().await.unwrap(), backlog);
    assert_eq!(keys(&app), 0);
}
