use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{README_EXAMPLE, assert_problem, spawn_app};

/// A running `profile-enricher` binary, killed when dropped - also when the test
/// fails half-way.
struct Process {
    child: Child,
    address: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_binary(http: &reqwest::Client) -> Process {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_profile-enricher"))
        .env("ENRICHER_HOST", "127.0.0.1")
        .env("ENRICHER_PORT", port.to_string())
        // Set, not removed: a developer's `.env` must not fill them in.
        .env("EXTERNAL_API_URL", "")
        .env("API_TOKENS", "")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start profile-enricher");
    let mut process = Process {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("profile-enricher exited early: {status}");
        }
        let health = http.get(format!("{}/health", process.address)).send().await;
        if health.is_ok_and(|response| response.status() == 200) {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("profile-enricher did not become healthy");
}

async fn dummy_enrich(http: &reqwest::Client, process: &Process, body: &str) -> String {
    let response = http
        .post(format!("{}/dummy-enrich", process.address))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{body}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn dummy_enrich_answers_the_same_in_two_processes() {
    let http = reqwest::Client::new();
    let first = start_binary(&http).await;
    let second = start_binary(&http).await;
    let inputs = [
        README_EXAMPLE.to_owned(),
        json!({"userId": "u-2", "username": "abc", "email": "a@b.co"}).to_string(),
        json!({"userId": "u-3", "username": "abc", "email": "a@b.co", "age": 17,
               "address": {"street": "1 Rue", "city": "Paris", "postalCode": "75001"}})
        .to_string(),
    ];
    for input in &inputs {
        let a = dummy_enrich(&http, &first, input).await;
        let b = dummy_enrich(&http, &second, input).await;
        assert_eq!(a, b);
    }
    let readme: Value =
        serde_json::from_str(&dummy_enrich(&http, &first, README_EXAMPLE).await).unwrap();
    assert_eq!(readme["source_user_id"], "12345");
    assert_eq!(readme["is_adult"], true);
    assert_eq!(readme["user_category"], "high_value");
    let without_address: Value =
        serde_json::from_str(&dummy_enrich(&http, &second, &inputs[1]).await).unwrap();
    assert_eq!(without_address["postal_hash"], Value::Null);
    assert_eq!(without_address["is_adult"], false);
    assert_eq!(without_address["user_category"], "standard");
}

#[tokio::test]
async fn dummy_enrich_validates_the_profile_like_post_users() {
    let app = spawn_app().await;

    let invalid = app
        .post("/dummy-enrich", "application/json", r#"{"userId":""}"#)
        .await;
    let malformed = app.post("/dummy-enrich", "application/json", "{").await;
    let wrong_type = app
        .post("/dummy-enrich", "text/plain", README_EXAMPLE)
        .await;

    assert_problem(invalid, 422).await;
    assert_problem(malformed, 400).await;
    assert_problem(wrong_type, 415).await;
}
