//! The real binary, configured only through its environment: log format and
//! level, and the empty values that `.env.example` ships.

use std::process::Stdio;

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
    assert!(line.contains("authentication=false"), "{line}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
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
