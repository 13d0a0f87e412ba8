//! The real binary, configured only through its environment: log format and
//! level, and the empty values that `.env.example` ships.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{README_EXAMPLE, binary, free_port, line_containing, spawn, stdout_lines};

#[test]
fn logs_are_compact_lines_at_info_when_log_format_and_rust_log_are_empty() {
    let port = free_port();
    let mut command = binary(port);
    command
        .env("RUST_LOG", "")
        .env("LOG_FORMAT", "")
        .stdout(Stdio::piped());
    let mut server = spawn(command, port);
    let lines = stdout_lines(&mut server);

    let line = line_containing(&lines, "profile-enricher listening");

    // One line, `key=value` fields, no colour codes (stdout is not a terminal).
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains(&format!("address=127.0.0.1:{port}")),
        "{line}"
    );
    assert!(!line.contains('\u{1b}'), "{line:?}");
    // `binary` sets API_TOKENS to "": authentication is off, and says so.
    let warning = line_containing(&lines, "API_TOKENS");
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("authentication is off"), "{warning}");
}

#[test]
fn a_token_under_16_characters_stops_the_binary_at_start_naming_api_tokens() {
    let port = free_port();
    let mut command = binary(port);
    command
        .env("API_TOKENS", "fifteen-chars-x")
        .stderr(Stdio::piped());
    let mut server = spawn(command, port);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "profile-enricher started with a 15-character token"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("API_TOKENS"), "{stderr}");
    assert!(!stderr.contains("fifteen-chars-x"), "{stderr}");
}

#[tokio::test]
async fn a_16_character_token_is_accepted_and_required() {
    let port = free_port();
    let mut command = binary(port);
    command.env("API_TOKENS", "sixteen-chars-xx");
    let server = crate::helpers::start(command, port).await;
    let client = reqwest::Client::new();
    let send = |token: Option<&str>| {
        let mut request = client
            .post(format!("{}/users", server.address()))
            .header("content-type", "application/json")
            .body(README_EXAMPLE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(send(Some("sixteen-chars-xx")).await.unwrap().status(), 200);
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let port = free_port();
    let mut command = binary(port);
    command
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped());
    let mut server = spawn(command, port);
    let lines = stdout_lines(&mut server);

    let line = line_containing(&lines, "profile-enricher listening");

    let event: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["message"], "profile-enricher listening");
    assert_eq!(event["address"], format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn empty_external_api_url_and_api_tokens_mean_the_built_in_upstream_and_no_authentication() {
    let port = free_port();
    // `binary` sets both to "", as `.env.example` does.
    let server = crate::helpers::start(binary(port), port).await;

    let response = reqwest::Client::new()
        .post(format!("{}/users", server.address()))
        .header("content-type", "application/json")
        .body(README_EXAMPLE)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"]["source_user_id"], "12345");
    assert_eq!(body["enrichment"]["user_category"], "high_value");
}

#[tokio::test]
async fn personal_data_never_appears_in_the_logs_at_the_default_level() {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("enricher-logs-{port}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = binary(port);
    command
        .env_remove("RUST_LOG")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    let server = crate::helpers::start(command, port).await;
    let client = reqwest::Client::new();
    let profile = serde_json::json!({"userId": "user-7731", "username": "zebulon_q",
        "email": "zebulon.secret@example.com", "age": 41,
        "address": {"street": "17 Hidden Lane", "city": "Quietville", "zip_code": "90210"}});
    let enriched = client
        .post(format!("{}/users", server.address()))
        .json(&profile)
        .send()
        .await
        .unwrap();
    assert_eq!(enriched.status(), 200);
    let rejected = serde_json::json!({"userId": "user-7732", "username": "x",
        "email": "rejected.secret@", "address": {"street": "", "city": "Murmurton", "postalCode": "!!SECRET!!"}});
    let invalid = client
        .post(format!("{}/users", server.address()))
        .json(&rejected)
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    drop(server);

    let logs = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(logs.contains("user-7731"), "the user id is logged: {logs}");
    for secret in [
        "zebulon",
        "Hidden Lane",
        "Quietville",
        "90210",
        "rejected.secret",
        "Murmurton",
        "SECRET",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
