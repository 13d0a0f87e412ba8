//! `GET /metrics`: requests by route pattern and status, the database pools,
//! the process, all under `user_info_`.

use serde_json::json;

use crate::helpers::spawn_app;

/// The value of the series `series` (name and labels as exposed), if shown.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_count_and_time_requests_by_route_pattern_and_status() {
    let app = spawn_app().await;
    let id = "e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1";
    assert_eq!(
        app.post_user(&json!({"user_id": id, "first_name": "A"}))
            .await
            .status(),
        201
    );
    assert_eq!(app.get_user(id).await.status(), 200);
    assert_eq!(app.get("/no/such/path").await.status(), 404);

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for (series, expected) in [
        (
            r#"user_info_http_requests_total{method="POST",route="/user",status="201"}"#,
            1.0,
        ),
        (
            r#"user_info_http_requests_total{method="GET",route="/user",status="200"}"#,
            1.0,
        ),
        (
            r#"user_info_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"user_info_http_request_duration_seconds_count{method="POST",route="/user",status="201"}"#,
            1.0,
        ),
        (
            r#"user_info_http_request_duration_seconds_bucket{method="GET",route="/user",status="200",le="+Inf"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(
        !text.contains(id) && !text.contains("/no/such/path"),
        "labels name route patterns, never raw paths or queries:\n{text}"
    );
    // The pools opened connections for the requests above.
    assert!(
        value(&text, "user_info_db_pool_size").unwrap() >= 1.0,
        "{text}"
    );
    // DATABASE_POOL_SIZE is 4: the purge's connection and the worker's pool
    // (its read connection is not pooled) - within it, never beyond.
    let max_size = value(&text, "user_info_db_pool_max_size").unwrap();
    assert!((2.0..=4.0).contains(&max_size), "{text}");
    for series in ["user_info_db_pool_available", "user_info_db_pool_waiting"] {
        assert!(value(&text, series).is_some(), "{series} in\n{text}");
    }
    // CPU time is counted in whole seconds: maybe 0 yet.
    assert!(
        value(&text, "user_info_process_cpu_seconds_total").is_some(),
        "{text}"
    );
    for series in [
        "user_info_process_resident_memory_bytes",
        "user_info_process_open_fds",
    ] {
        assert!(value(&text, series).unwrap() > 0.0, "{series} in\n{text}");
    }
}
