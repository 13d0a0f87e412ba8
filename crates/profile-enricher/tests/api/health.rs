use serde_json::{Value, json};

use crate::helpers::{README_EXAMPLE, Script, json_answer, spawn_app};

#[tokio::test]
async fn health_reports_ok_and_the_environment() {
    let app = spawn_app().await;

    let response = app.get("/health").await;

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "env": "test"}));
}

#[tokio::test]
async fn metrics_count_requests_attempts_retries_slot_waits_and_latency() {
    let app = spawn_app().await;
    let (script, _) = Script::new(vec![
        wiremock::ResponseTemplate::new(503),
        json_answer(json!({})),
    ]);
    app.upstream_answers(script).await;
    assert_eq!(app.post_users(README_EXAMPLE).await.status(), 200);

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for expected in [
        r#"enricher_http_requests_total{method="POST",route="/users",status="200"} 1"#,
        r#"enricher_http_request_duration_seconds_count{method="POST",route="/users",status="200"} 1"#,
        r#"enricher_upstream_attempts_total{outcome="503"} 1"#,
        r#"enricher_upstream_attempts_total{outcome="200"} 1"#,
        "enricher_upstream_retries_total 1",
        "enricher_slot_wait_seconds_count 2",
        "enricher_upstream_latency_seconds_count 2",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(
        !text.contains("\nhttp_requests_total"),
        "every name has the service's prefix"
    );
    for process in [
        "enricher_process_cpu_seconds_total ",
        "enricher_process_resident_memory_bytes ",
        "enricher_process_open_fds ",
    ] {
        assert!(text.contains(process), "{process} missing from\n{text}");
    }
}
