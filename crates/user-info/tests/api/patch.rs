//! `PATCH /user?user_id=` with a JSON merge patch (RFC 7396): the merge rule of
//! `POST /user`, never creating a user.

use reqwest::{Method, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, problem, spawn_app};

const MERGE_PATCH: &str = "application/merge-patch+json";

async fn patch(app: &TestApp, id: &str, content_type: &str, body: &str) -> Response {
    app.request(Method::PATCH, &format!("/user?user_id={id}"))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn patch_follows_the_merge_rule_absent_null_empty_and_value() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let john = json!({"user_id": id, "first_name": "John", "last_name": "Doe",
                      "email": "john.doe@example.com", "phone_number": "+1234567890"});
    assert_eq!(app.post_user(&john).await.status(), 201);

    let response = patch(
        &app,
        &id.to_string(),
        MERGE_PATCH,
        r#"{"first_name": null, "last_name": "", "email": "new@example.org"}"#,
    )
    .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body: Value = response.json().await.unwrap();
    // absent: unchanged; null: cleared; "": cleared; a value: replaced.
    let expected = [
        ("phone_number", "+1234567890"),
        ("first_name", ""),
        ("last_name", ""),
        ("email", "new@example.org"),
    ];
    let row = app.db.stored(id).unwrap();
    let stored = [
        ("phone_number", row.phone_number.as_str()),
        ("first_name", row.first_name.as_str()),
        ("last_name", row.last_name.as_str()),
        ("email", row.email.as_str()),
    ];
    assert_eq!(stored, expected);
    for (field, value) in expected {
        assert_eq!(body[field], value, "{field}");
    }
    assert_eq!(row.version, 2);

    // `charset` and letter case of the media type do not matter.
    let response = patch(
        &app,
        &id.to_string(),
        "Application/Merge-Patch+JSON; charset=utf-8",
        "{}",
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn patch_answers_404_for_an_unknown_user_and_never_creates_it() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let body = problem(
        patch(&app, &id.to_string(), MERGE_PATCH, r#"{"first_name":"A"}"#).await,
        404,
    )
    .await;
    assert_eq!(body["title"], "User not found");
    assert!(app.db.stored(id).is_none());
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn patch_answers_415_for_other_media_types() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    app.post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;
    for content_type in ["application/json", "text/plain", "application/merge-patch"] {
        let response = patch(&app, &id.to_string(), content_type, r#"{"first_name":"B"}"#).await;
        problem(response, 415).await;
    }
    assert_eq!(app.db.stored(id).unwrap().first_name, "A");
}

#[tokio::test]
async fn patch_refuses_invalid_fields_another_user_id_and_a_bad_query() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    app.post_user(&json!({"user_id": id, "first_name": "A"}))
        .await;

    let other = json!({"user_id": Uuid::new_v4(), "first_name": "B"}).to_string();
    let body = problem(patch(&app, &id.to_string(), MERGE_PATCH, &other).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "user_id");
    let body = problem(
        patch(&app, &id.to_string(), MERGE_PATCH, r#"{"email":"nope"}"#).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "email");
    problem(patch(&app, &id.to_string(), MERGE_PATCH, "[1]").await, 422).await;
    problem(patch(&app, &id.to_string(), MERGE_PATCH, "{").await, 400).await;
    problem(patch(&app, "nope", MERGE_PATCH, "{}").await, 400).await;

    let same = json!({"user_id": id.to_string().to_uppercase(), "first_name": "C"}).to_string();
    assert_eq!(
        patch(&app, &id.to_string(), MERGE_PATCH, &same)
            .await
            .status(),
        200
    );
    assert_eq!(app.db.stored(id).unwrap().first_name, "C");
}
