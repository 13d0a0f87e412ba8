//! Personal data never reaches the logs at the default level: the binary runs as
//! in production, its output is captured, and the values sent must not be in it.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{Server, TestDatabase, free_port};

async fn captured_logs(log_format: &str) -> String {
    let db = TestDatabase::create();
    let port = free_port();
    let log = std::env::temp_dir().join(format!("user-info-logs-{}.log", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&log).unwrap();
    let (server, base) = Server::start_ready(
        Command::new(env!("CARGO_BIN_EXE_user-info"))
            .env_remove("RUST_LOG")
            .env("LOG_FORMAT", log_format)
            .env("API_TOKENS", "")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
            .env("USER_INFO_HOST", "127.0.0.1")
            .env("USER_INFO_PORT", port.to_string())
            .env("DATABASE_URL", &db.url)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file)),
        port,
    )
    .await;
    let client = reqwest::Client::new();

    let id = uuid::Uuid::new_v4();
    let user = json!({"user_id": id, "first_name": "Zebulon", "last_name": "Quixotic",
                      "email": "zebulon.secret@example.com", "phone_number": "+1 555 867 5309"});
    let created = client
        .post(format!("{base}/user"))
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let rejected =
        json!({"user_id": id, "email": "rejected.secret@", "phone_number": "867-HIDDEN"});
    let invalid = client
        .post(format!("{base}/user"))
        .json(&rejected)
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    client
        .get(format!("{base}/user?user_id={id}"))
        .send()
        .await
        .unwrap();
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains(&id.to_string()),
        "the user id is logged: {text}"
    );
    text
}

#[tokio::test]
async fn personal_data_never_appears_in_the_logs_at_the_default_level() {
    for format in ["json", "pretty"] {
        let logs = captured_logs(format).await;
        for secret in [
            "Zebulon",
            "Quixotic",
            "zebulon.secret",
            "867 5309",
            "rejected.secret",
            "867-HIDDEN",
        ] {
            assert!(
                !logs.contains(secret),
                "{secret} leaked into the {format} logs"
            );
        }
    }
}

#[tokio::test]
async fn authentication_off_is_logged_as_a_warning_naming_api_tokens() {
    let logs = captured_logs("json").await;
    let warnings: Vec<serde_json::Value> = logs
        .lines()
        .filter(|line| line.contains("API_TOKENS"))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert_eq!(warnings[0]["level"], "WARN", "{logs}");
}

#[tokio::test]
async fn without_traces_the_log_lines_name_no_trace() {
    // Traces off (no OTLP endpoint): no span carries a trace id, not even an
    // all-zero one.
    let logs = captured_logs("json").await;
    assert!(logs.contains("HTTP request"), "{logs}");
    assert!(!logs.contains("trace_id"), "{logs}");
}
