//! Versions and conditional requests: every change moves `version` (HTTP or the
//! consumer's batch path), answered as the strong ETag; `If-None-Match` gives
//! 304 on GET; `If-Match` / `If-None-Match: *` make writes conditional, checked
//! by the statement that writes.

use std::time::Duration;

use domain::{Folded, UserChange};
use reqwest::Method;
use serde_json::{Value, json};
use user_store::{BatchWrite, Database};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, problem, settings, spawn_app, spawn_busy_app};

fn etag_of(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn create(app: &TestApp, first_name: &str) -> Uuid {
    let id = Uuid::new_v4();
    let response = app
        .post_user(&json!({"user_id": id, "first_name": first_name, "email": "a@example.com"}))
        .await;
    assert_eq!(response.status(), 201);
    id
}

/// The store as the Kafka consumer uses it, on the application's database.
async fn consumer_store(app: &TestApp) -> Database {
    let store = Database::start(&settings(&app.db.url).database, "test-consumer").unwrap();
    assert!(eventually(Duration::from_secs(20), || async { store.is_migrated() }).await);
    store
}

#[tokio::test]
async fn a_user_starts_at_version_1_and_every_change_moves_its_version_and_etag() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();

    let created = app
        .post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(etag_of(&created), "\"1\"");
    assert_eq!(created.json::<Value>().await.unwrap()["version"], 1);

    let updated = app
        .post_user(&json!({"user_id": id, "last_name": "B"}))
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(etag_of(&updated), "\"2\"");

    let read = app.get_user(&id.to_string()).await;
    assert_eq!(etag_of(&read), "\"2\"");
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["version"], 2);
    assert_eq!(app.db.stored(id).unwrap().version, 2);
}

#[tokio::test]
async fn get_answers_304_with_the_current_etag_and_200_once_the_consumer_changed_the_user() {
    let app = spawn_app().await;
    let id = create(&app, "A").await;
    let path = format!("/user?user_id={id}");

    let fresh = app
        .request(Method::GET, &path)
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 304);
    assert_eq!(etag_of(&fresh), "\"1\"");
    assert!(fresh.bytes().await.unwrap().is_empty());

    // The Kafka consumer's path: the store's batch apply, no broker.
    let store = consumer_store(&app).await;
    let record = json!({"user_id": id, "first_name": "From Kafka"}).to_string();
    let (record_id, fields) = UserChange::from_record(record.as_bytes()).unwrap();
    store
        .apply_batch(
            "versions-test",
            &[],
            &BatchWrite {
                folded: &[(record_id, Folded::Upsert(fields))],
                ..BatchWrite::default()
            },
        )
        .await
        .unwrap();

    let stale = app
        .request(Method::GET, &path)
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(etag_of(&stale), "\"2\"");
    let body: Value = stale.json().await.unwrap();
    assert_eq!(
        (body["first_name"].as_str(), body["version"].as_i64()),
        (Some("From Kafka"), Some(2))
    );

    let weak = app
        .request(Method::GET, &path)
        .header("if-none-match", "\"7\", W/\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 304, "If-None-Match compares weakly");
}

#[tokio::test]
async fn twenty_clients_read_modify_write_one_user_with_if_match_and_no_increment_is_lost() {
    let app = std::sync::Arc::new(spawn_busy_app().await);
    let id = create(&app, "").await;

    let clients: Vec<_> = (0..20)
        .map(|client| {
            let app = app.clone();
            tokio::spawn(async move {
                let token = format!("{client:02}.");
                loop {
                    let read = app.get_user(&id.to_string()).await;
                    assert_eq!(read.status(), 200);
                    let etag = etag_of(&read);
                    let user: Value = read.json().await.unwrap();
                    let first_name = format!("{}{token}", user["first_name"].as_str().unwrap());
                    let write = app
                        .post_user_with(
                            &json!({"user_id": id, "first_name": first_name}),
                            &[("if-match", &etag)],
                        )
                        .await;
                    match write.status().as_u16() {
                        200 => return,
                        412 => continue,
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }

    let stored = app.db.stored(id).unwrap();
    for client in 0..20 {
        assert!(
            stored.first_name.contains(&format!("{client:02}.")),
            "client {client}'s increment was lost: {}",
            stored.first_name
        );
    }
    assert_eq!(stored.first_name.len(), 60);
    assert_eq!(stored.version, 21);
}

#[tokio::test]
async fn a_stale_if_match_is_412_naming_the_current_version_and_nothing_changes() {
    let app = spawn_app().await;
    let id = create(&app, "Secretname").await;
    app.post_user(&json!({"user_id": id, "last_name": "B"}))
        .await;

    let refused = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "C"}),
            &[("if-match", "\"1\"")],
        )
        .await;
    let body = problem(refused, 412).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("\"2\""), "{detail}");
    assert!(!body.to_string().contains("Secretname"), "never the values");
    let row = app.db.stored(id).unwrap();
    assert_eq!((row.first_name.as_str(), row.version), ("Secretname", 2));

    let patch = app
        .request(Method::PATCH, &format!("/user?user_id={id}"))
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"1\", W/\"2\"")
        .body(r#"{"first_name":"C"}"#)
        .send()
        .await
        .unwrap();
    problem(patch, 412).await;

    let delete = app
        .request(Method::DELETE, &format!("/user?user_id={id}"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    problem(delete, 412).await;
    assert!(app.db.stored(id).is_some());

    let applied = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "C"}),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(applied.status(), 200);
    assert_eq!(etag_of(&applied), "\"3\"");
    let deleted = app
        .request(Method::DELETE, &format!("/user?user_id={id}"))
        .header("if-match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(app.db.stored(id).is_none());
}

#[tokio::test]
async fn if_match_star_applies_only_to_an_existing_user() {
    let app = spawn_app().await;
    let unknown = Uuid::new_v4();
    let refused = app
        .post_user_with(
            &json!({"user_id": unknown, "first_name": "A"}),
            &[("if-match", "*")],
        )
        .await;
    problem(refused, 412).await;
    assert!(app.db.stored(unknown).is_none(), "If-Match never creates");

    let id = create(&app, "A").await;
    let applied = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "B"}),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(applied.status(), 200);
    assert_eq!(app.db.stored(id).unwrap().first_name, "B");
}

#[tokio::test]
async fn if_none_match_star_under_10_concurrent_creators_gives_exactly_one_201() {
    let app = std::sync::Arc::new(spawn_busy_app().await);
    let id = Uuid::new_v4();

    let creators: Vec<_> = (0..10)
        .map(|creator| {
            let app = app.clone();
            tokio::spawn(async move {
                let response = app
                    .post_user_with(
                        &json!({"user_id": id, "first_name": format!("creator {creator}")}),
                        &[("if-none-match", "*")],
                    )
                    .await;
                (creator, response.status().as_u16())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for creator in creators {
        let (creator, status) = creator.await.unwrap();
        match status {
            201 => winners.push(creator),
            412 => {}
            other => panic!("unexpected {other}"),
        }
    }

    assert_eq!(winners.len(), 1, "exactly one creator wins");
    let row = app.db.stored(id).unwrap();
    assert_eq!(row.first_name, format!("creator {}", winners[0]));
    assert_eq!(row.version, 1, "the losers changed nothing");
}

#[tokio::test]
async fn conditions_that_are_not_entity_tags_match_nothing() {
    let app = spawn_app().await;
    let id = create(&app, "A").await;
    for value in ["1", "*, \"1\"", "W/\"1\""] {
        let response = app
            .post_user_with(
                &json!({"user_id": id, "first_name": "B"}),
                &[("if-match", value)],
            )
            .await;
        problem(response, 412).await;
    }
    assert_eq!(app.db.stored(id).unwrap().version, 1, "If-Match never held");

    let response = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "B"}),
            &[("if-none-match", "1")],
        )
        .await;
    assert_eq!(response.status(), 200, "If-None-Match held");
    assert_eq!(app.db.stored(id).unwrap().version, 2);
}

#[tokio::test]
async fn an_etag_names_a_version_only_character_for_character_on_get_and_post() {
    let app = spawn_app().await;
    let id = create(&app, "A").await;
    let path = format!("/user?user_id={id}");
    let get_if_match = |value: &'static str| {
        app.request(Method::GET, &path)
            .header("if-match", value)
            .send()
    };

    let refused = get_if_match("\"01\"").await.unwrap();
    let body = problem(refused, 412).await;
    assert!(body["detail"].as_str().unwrap().contains("\"1\""), "{body}");
    for value in ["\"+1\"", "W/\"1\"", "\"2\""] {
        problem(get_if_match(value).await.unwrap(), 412).await;
    }
    for value in ["\"1\"", "*", "\"7\", \"1\""] {
        let read = get_if_match(value).await.unwrap();
        assert_eq!(read.status(), 200, "If-Match: {value}");
        assert_eq!(etag_of(&read), "\"1\"");
        assert_eq!(read.json::<Value>().await.unwrap()["first_name"], "A");
    }
    let fresh = app
        .request(Method::GET, &path)
        .header("if-match", "\"1\"")
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 304, "If-Match holds, then If-None-Match");

    let write = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "B"}),
            &[("if-match", "\"01\"")],
        )
        .await;
    problem(write, 412).await;
    let row = app.db.stored(id).unwrap();
    assert_eq!((row.first_name.as_str(), row.version), ("A", 1));
}

/// The record as the consumer gets it, applied through the store's batch path.
async fn apply_record(store: &Database, record: Value) {
    let (id, fields) = UserChange::from_record(record.to_string().as_bytes()).unwrap();
    store
        .apply_batch(
            "versions-test",
            &[],
            &BatchWrite {
                folded: &[(id, Folded::Upsert(fields))],
                ..BatchWrite::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_version_the_etag_and_updated_at() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let body = json!({"user_id": id, "first_name": "Same", "email": "same@example.com"});
    let created = app.post_user(&body).await;
    assert_eq!(created.status(), 201);
    let before: Value = created.json().await.unwrap();

    // An identical POST, a body naming only unchanged fields, a replayed record.
    let again = app.post_user(&body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(etag_of(&again), "\"1\"");
    let partial = app
        .post_user(&json!({"user_id": id, "first_name": "Same"}))
        .await;
    assert_eq!(etag_of(&partial), "\"1\"");
    let store = consumer_store(&app).await;
    apply_record(&store, body.clone()).await;

    let after: Value = app.get_user(&id.to_string()).await.json().await.unwrap();
    assert_eq!(after["version"], 1);
    assert_eq!(after["updated_at"], before["updated_at"]);
    // A client holding the ETag still writes with it.
    let conditional = app
        .post_user_with(
            &json!({"user_id": id, "last_name": "Changed"}),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(conditional.status(), 200);
    assert_eq!(etag_of(&conditional), "\"2\"");
}

#[tokio::test]
async fn a_user_created_again_after_a_delete_never_reuses_a_version() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let path = format!("/user?user_id={id}");
    app.post_user(&json!({"user_id": id, "first_name": "First life"}))
        .await;
    app.post_user(&json!({"user_id": id, "first_name": "Still first"}))
        .await;
    assert_eq!(app.delete(&path).await.status(), 204);

    let reborn = app
        .post_user(&json!({"user_id": id, "first_name": "Second life"}))
        .await;
    assert_eq!(reborn.status(), 201);
    assert_eq!(
        etag_of(&reborn),
        "\"3\"",
        "versions 1 and 2 belong to the deleted user"
    );
    // A client holding the old "1" sees new data, and cannot write over it.
    let old_etag = app
        .request(Method::GET, &path)
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(old_etag.status(), 200);
    let stale_write = app
        .post_user_with(
            &json!({"user_id": id, "first_name": "Blind"}),
            &[("if-match", "\"1\"")],
        )
        .await;
    problem(stale_write, 412).await;

    // The consumer's tombstone, then a record: the version goes on from there.
    let store = consumer_store(&app).await;
    store
        .apply_batch(
            "versions-test",
            &[],
            &BatchWrite {
                folded: &[(id, Folded::Delete)],
                ..BatchWrite::default()
            },
        )
        .await
        .unwrap();
    apply_record(&store, json!({"user_id": id, "first_name": "Third life"})).await;
    let third: Value = app.get_user(&id.to_string()).await.json().await.unwrap();
    assert_eq!(third["version"], 4);
    // The tombstone holds no personal data: the id, the version and when.
    assert_eq!(
        app.db.count_where(&format!(
            "SELECT count(*) AS n FROM user_tombstones WHERE user_id = '{id}' AND version = 3"
        )),
        1
    );
}
