//! The database coming and going: the service starts without it, answers 503
//! problem documents while it is away, and recovers by itself.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    TcpProxy, TestDatabase, eventually, postgres_address, problem, settings, spawn_app_on,
    spawn_configured,
};

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
    // Opens the read connection the worker's GETs share.
    assert_eq!(app.get_user(&id).await.status(), 200);

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
    problem(app.get_user(&id).await, 503).await;

    proxy.start();
    app.wait_until_ready().await;
    an_update_lands_again(&app, &id).await;
    // Every worker's read connection died with the outage: each opens a new one.
    for _ in 0..8 {
        assert_eq!(
            app.get_user(&id).await.status(),
            200,
            "reads must recover too"
        );
    }
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

#[tokio::test]
async fn a_database_that_stops_answering_gives_503_within_the_query_timeout_then_recovers() {
    let mut proxy = TcpProxy::reserve(postgres_address());
    proxy.start();
    let db = TestDatabase::create();
    let mut config = settings(&db.url_via(proxy.address));
    config.database.query_timeout = std::time::Duration::from_secs(1);
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let id = Uuid::new_v4().to_string();
    let created = app
        .post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    assert_eq!(created.status(), 201);

    // Connections stay open but nothing comes back: without the query timeout
    // these requests would hang until the client gave up.
    proxy.freeze();
    problem(
        app.post_user(&json!({"user_id": id, "first_name": "B"}))
            .await,
        503,
    )
    .await;
    problem(app.get_user(&id).await, 503).await;
    problem(app.get("/ready").await, 503).await;

    proxy.thaw();
    an_update_lands_again(&app, &id).await;
}

#[tokio::test]
async fn sslmode_require_encrypts_every_connection_and_verify_full_checks_the_certificate() {
    // The local cluster serves a self-signed certificate (Debian's snakeoil): good
    // enough for `require`, which encrypts without checking, refused by
    // `verify-full`, which checks the chain against the system's roots.
    let db = TestDatabase::create();
    let name = db.name.clone();
    let app = spawn_app_on_url(db, "sslmode=require").await;
    app.wait_until_ready().await;
    let id = Uuid::new_v4().to_string();
    let created = app
        .post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    assert_eq!(created.status(), 201);
    let plain = app.db.count_where(&format!(
        "SELECT count(*) AS n FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
         WHERE datname = '{name}' AND application_name = 'user-info' AND NOT ssl"
    ));
    let encrypted = app.db.count_where(&format!(
        "SELECT count(*) AS n FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
         WHERE datname = '{name}' AND application_name = 'user-info' AND ssl"
    ));
    assert_eq!(plain, 0, "no connection of the service may be unencrypted");
    assert!(encrypted >= 1, "the service's connections must use TLS");

    let verify_full = format!("{}?sslmode=verify-full", app.db.url);
    let refused = user_store::connect::Connector::parse(&verify_full, "test")
        .unwrap()
        .connect()
        .await
        .err()
        .map(|error| error.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|error| error.contains("certificate")),
        "verify-full must refuse an untrusted certificate, got {refused:?}"
    );
}

async fn spawn_app_on_url(db: TestDatabase, parameters: &str) -> crate::helpers::TestApp {
    let url = format!("{}?{parameters}", db.url);
    spawn_configured(db, settings(&url)).await
}

/// Once the database is back, the service recovers by itself: an update of the
/// existing user `id` is answered 200 again and is in the database.
async fn an_update_lands_again(app: &crate::helpers::TestApp, id: &str) {
    let recovered = eventually(Duration::from_secs(20), || async {
        app.post_user(&json!({"user_id": id, "first_name": "C"}))
            .await
            .status()
            == 200
    })
    .await;
    assert!(
        recovered,
        "the service must recover once the database answers again"
    );
    assert_eq!(app.db.stored(id.parse().unwrap()).unwrap().first_name, "C");
}

#[tokio::test]
async fn a_write_an_operator_s_check_constraint_refuses_is_a_422_naming_it_not_a_503() {
    let app = crate::helpers::spawn_app().await;
    app.db.execute(
        "ALTER TABLE user_info ADD CONSTRAINT first_name_short CHECK (length(first_name) < 10)",
    );

    let refused = app
        .post_user(&json!({"user_id": Uuid::new_v4(), "first_name": "Bartholomew"}))
        .await;

    assert!(!refused.headers().contains_key("retry-after"));
    let body = problem(refused, 422).await;
    assert_eq!(body["type"], "/problems/constraint-violated");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("first_name_short"), "{detail}");
    assert!(!detail.contains("Bartholomew"), "{detail}");
    assert_eq!(app.db.count(), 0);
    let allowed = app
        .post_user(&json!({"user_id": Uuid::new_v4(), "first_name": "Bart"}))
        .await;
    assert_eq!(allowed.status(), 201);
}

#[tokio::test]
async fn a_write_an_operator_s_unique_index_refuses_is_a_409_naming_it() {
    let app = crate::helpers::spawn_app().await;
    app.db
        .execute("CREATE UNIQUE INDEX user_info_email_unique ON user_info (lower(email))");
    let first = app
        .post_user(&json!({"user_id": Uuid::new_v4(), "email": "ann@example.com"}))
        .await;
    assert_eq!(first.status(), 201);

    let twin = app
        .post_user(&json!({"user_id": Uuid::new_v4(), "email": "ANN@example.com"}))
        .await;

    assert!(!twin.headers().contains_key("retry-after"));
    let body = problem(twin, 409).await;
    assert_eq!(body["type"], "/problems/constraint-conflict");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("user_info_email_unique"), "{detail}");
    assert!(!detail.contains("ann@"), "{detail}");
    assert_eq!(app.db.count(), 1);
}

/// Every migration's `down.sql` reverts its `up.sql` (all of them down, then up
/// again), and the erasure migration ties the answers kept before it to their
/// users - dropping those whose user is already gone.
#[tokio::test]
async fn migrations_revert_and_answers_kept_before_the_erasure_migration_follow_their_user() {
    use diesel_migrations::MigrationHarness;
    let db = TestDatabase::create();
    let mut conn = db.connect();
    // Up to the erasure migration.
    let erasure = |conn: &mut diesel::PgConnection| {
        conn.pending_migrations(user_store::migrate::MIGRATIONS)
            .unwrap()
            .first()
            .is_some_and(|next| next.name().to_string().contains("erase_idempotent_answers"))
    };
    while !erasure(&mut conn) {
        conn.run_next_migration(user_store::migrate::MIGRATIONS)
            .unwrap();
    }
    let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
    db.execute(&format!(
        "INSERT INTO user_info (user_id, first_name) VALUES ('{kept}', 'Kept');
         INSERT INTO idempotency_keys (key, fingerprint, status, response_body, expires_at) VALUES
           ('of-kept', '\\x00', 201, '{{\"user_id\":\"{kept}\",\"first_name\":\"Kept\"}}', now() + interval '1 day'),
           ('of-gone', '\\x00', 201, '{{\"user_id\":\"{gone}\",\"email\":\"gone@example.com\"}}', now() + interval '1 day'),
           ('a-412', '\\x00', 412, '{{\"status\":412}}', now() + interval '1 day');"
    ));

    conn.run_next_migration(user_store::migrate::MIGRATIONS)
        .unwrap();

    let count = |sql: &str| {
        db.count_where(&format!(
            "SELECT count(*) AS n FROM idempotency_keys WHERE {sql}"
        ))
    };
    assert_eq!(count(&format!("key = 'of-kept' AND user_id = '{kept}'")), 1);
    assert_eq!(
        count("key = 'of-gone'"),
        0,
        "an answer outlived its deleted user"
    );
    assert_eq!(count("key = 'a-412' AND user_id IS NULL"), 1);
    db.execute(&format!("DELETE FROM user_info WHERE user_id = '{kept}'"));
    assert_eq!(count("key = 'of-kept'"), 0);
    conn.run_pending_migrations(user_store::migrate::MIGRATIONS)
        .unwrap();

    conn.revert_all_migrations(user_store::migrate::MIGRATIONS)
        .unwrap();
    assert_eq!(
        db.count_where(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations'"
        ),
        0,
        "a down.sql left a table behind"
    );
    conn.run_pending_migrations(user_store::migrate::MIGRATIONS)
        .unwrap();
}

/// DATABASE_POOL_SIZE bounds every connection the service opens - pools, read
/// connections and the purge task's - whatever the core count: here 8 workers
/// asked for and a pool of 5, under 200 concurrent reads and writes.
#[tokio::test]
async fn database_pool_size_bounds_every_connection_whatever_the_workers() {
    let db = TestDatabase::create();
    let name = db.name.clone();
    let mut config = settings(&db.url);
    config.database.pool_size = 5;
    config.http_workers = 8;
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let id = Uuid::new_v4();
    app.post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;

    let requests = (0..200).map(|n| {
        let app = &app;
        async move {
            if n % 2 == 0 {
                app.get_user(&id.to_string()).await.status()
            } else {
                app.post_user(&json!({"user_id": Uuid::new_v4(), "first_name": "B"}))
                    .await
                    .status()
            }
        }
    });
    let statuses = futures::future::join_all(requests).await;

    assert!(
        statuses.iter().all(|status| status.is_success()),
        "{statuses:?}"
    );
    let open = app.db.count_where(&format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}' \
         AND application_name = 'user-info'"
    ));
    assert!((1..=5).contains(&open), "{open} connections open");
}
