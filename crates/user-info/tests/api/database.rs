//! The database coming and going: the service starts without it, answers 503
//! problem documents while it is away, and recovers by itself.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TcpProxy, TestDatabase, eventually, postgres_address, problem, spawn_app_on};

#[tokio::test]
async fn without_a_database_the_service_starts_answers_health_and_503_then_recovers() {
    let mut proxy = TcpProxy::reserve(postgres_address());
    let app = spawn_app_on(TestDatabase::create(), Some(proxy.address)).await;
    let id = Uuid::new_v4().to_string();

    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    problem(app.get("/ready").await, 503).await;
    let unavailable = app
        .post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    assert!(unavailable.headers().contains_key("retry-after"));
    problem(unavailable, 503).await;
    problem(app.get_user(&id).await, 503).await;
    problem(app.delete(&format!("/user?user_id={id}")).await, 503).await;

    proxy.start();
    app.wait_until_ready().await;

    let response = app
        .post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.db.stored(id.parse().unwrap()).unwrap().first_name, "A");
}

#[tokio::test]
async fn a_database_outage_after_start_gives_503_and_the_service_recovers() {
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let app = spawn_app_on(TestDatabase::create(), Some(proxy.address)).await;
    app.wait_until_ready().await;
    let id = Uuid::new_v4().to_string();
    assert_eq!(
        app.post_user(&json!({"user_id": id, "first_name": "A"}))
            .await
            .status(),
        201
    );

    proxy.stop();
    let down = eventually(Duration::from_secs(20), || async {
        app.get("/ready").await.status() == 503
    })
    .await;
    assert!(down, "/ready must notice the outage");
    problem(
        app.post_user(&json!({"user_id": id, "first_name": "B"}))
            .await,
        503,
    )
    .await;

    proxy.start();
    app.wait_until_ready().await;
    let recovered = eventually(Duration::from_secs(20), || async {
        app.post_user(&json!({"user_id": id, "first_name": "C"}))
            .await
            .status()
            == 200
    })
    .await;
    assert!(recovered);
    assert_eq!(app.db.stored(id.parse().unwrap()).unwrap().first_name, "C");
}

#[tokio::test]
async fn two_applications_migrating_the_same_fresh_database_both_start() {
    let db = TestDatabase::create();
    let url_db = TestDatabase {
        name: db.name.clone(),
        url: db.url.clone(),
    };
    let first = spawn_app_on(db, None).await;
    let second = spawn_app_on(url_db, None).await;

    first.wait_until_ready().await;
    second.wait_until_ready().await;

    let id = Uuid::new_v4().to_string();
    assert_eq!(
        first
            .post_user(&json!({"user_id": id, "first_name": "A"}))
            .await
            .status(),
        201
    );
    let read = second.get_user(&id).await;
    assert_eq!(read.status(), 200);
}
