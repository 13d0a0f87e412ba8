//! Bodies that are not what the API expects: each gets its documented status and
//! a problem document, and nothing is stored.

use serde_json::json;

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for body in [
        &b"{\"first_name\": "[..],
        b"not json",
        b"{\"a\":1} trailing",
        b"\xff\xfe",
    ] {
        let response = app
            .post_raw("/user", "application/json", body.to_vec())
            .await;
        problem(response, 400).await;
    }
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn invalid_utf8_inside_an_ignored_field_is_a_400() {
    let app = spawn_app().await;
    let body = b"{\"first_name\":\"A\",\"ignored\":\"\xff\xfe\"}".to_vec();
    let response = app.post_raw("/user", "application/json", body).await;
    problem(response, 400).await;
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422() {
    let app = spawn_app().await;
    for body in [
        json!([{"first_name": "A"}]),
        json!("text"),
        json!(null),
        json!({"first_name": 5}),
        json!({"user_id": 7}),
    ] {
        let response = app.post_user(&body).await;
        let problem = problem(response, 422).await;
        assert!(
            problem["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_a_415() {
    let app = spawn_app().await;
    let body = br#"{"first_name":"A"}"#.to_vec();
    problem(app.post_raw("/user", "text/plain", body.clone()).await, 415).await;
    problem(
        app.post_raw("/user", "application/x-www-form-urlencoded", body.clone())
            .await,
        415,
    )
    .await;
    let response = app
        .client
        .post(format!("{}/user", app.address))
        .body(body)
        .send()
        .await
        .unwrap();
    problem(response, 415).await;
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/user",
            "application/json; charset=utf-8",
            br#"{"first_name":"A"}"#.to_vec(),
        )
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_65_kib_body_is_a_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(65 * 1024);
    let body = format!(r#"{{"first_name":"A","padding":"{padding}"}}"#);
    problem(
        app.post_raw("/user", "application/json", body.into_bytes())
            .await,
        413,
    )
    .await;
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn json_nested_deeper_than_64_levels_is_rejected() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"first_name":"A","x":{}1{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let response = app
        .post_raw("/user", "application/json", body.into_bytes())
        .await;
    let status = response.status().as_u16();
    assert!(status == 400 || status == 422, "{status}");
    problem(response, status).await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_as_problems() {
    let app = spawn_app().await;
    problem(app.get("/users/unknown").await, 404).await;
    let response = app
        .client
        .put(format!("{}/user", app.address))
        .send()
        .await
        .unwrap();
    problem(response, 405).await;
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;
    let response = app
        .post_user(&json!({"first_name": "A", "nickname": "B"}))
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_a_431() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/user?user_id=x", app.address))
        .header("x-padding", "a".repeat(17 * 1024))
        .send()
        .await
        .unwrap();
    problem(response, 431).await;
    let response = app
        .client
        .get(format!("{}/health", app.address))
        .header("x-padding", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
