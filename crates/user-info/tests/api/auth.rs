//! Optional bearer-token authentication (`API_TOKENS`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Server, TestDatabase, free_port, problem, settings, spawn_configured};

#[tokio::test]
async fn with_api_tokens_set_data_endpoints_need_a_bearer_token_and_probes_stay_open() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.api_tokens =
        service_kit::http::ApiTokens::parse(" first-token-0123456 , second-token-012345 ").unwrap();
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let url = format!("{}/user", app.address);
    let body = json!({"first_name": "A"});

    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, 401).await;
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(wrong, 401).await;
    let get = app
        .client
        .get(format!(
            "{url}?user_id=e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"
        ))
        .send()
        .await
        .unwrap();
    problem(get, 401).await;
    assert_eq!(app.db.count(), 0, "nothing stored without a token");

    let good = app
        .client
        .post(&url)
        .header("authorization", "bearer second-token-012345")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 201);
    for open in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
}

#[tokio::test]
async fn a_token_under_16_characters_stops_the_binary_at_start_naming_api_tokens_and_16_pass() {
    let port = free_port();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_user-info"))
            .env("USER_INFO_HOST", "127.0.0.1")
            .env("USER_INFO_PORT", port.to_string())
            .env("API_TOKENS", "fifteen-chars-x")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "user-info started with a 15-character token"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut output = String::new();
    let mut stderr = server.0.stderr.take().unwrap();
    stderr.read_to_string(&mut output).unwrap();
    assert!(output.contains("API_TOKENS"), "{output}");
    assert!(!output.contains("fifteen-chars-x"), "{output}");

    let db = TestDatabase::create();
    let port = free_port();
    let (_server, base) = Server::start_ready(
        Command::new(env!("CARGO_BIN_EXE_user-info"))
            .env("USER_INFO_HOST", "127.0.0.1")
            .env("USER_INFO_PORT", port.to_string())
            .env("DATABASE_URL", &db.url)
            .env("API_TOKENS", "sixteen-chars-xx")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        port,
    )
    .await;
    let read = reqwest::Client::new()
        .get(format!(
            "{base}/user?user_id=e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"
        ))
        .bearer_auth("sixteen-chars-xx")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 404, "a 16-character token is accepted");
}
