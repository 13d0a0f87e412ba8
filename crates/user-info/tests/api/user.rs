use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_app};

fn john(id: &str) -> Value {
    json!({"user_id": id, "first_name": "John", "last_name": "Doe",
           "email": "john.doe@example.com", "phone_number": "+1234567890"})
}

#[tokio::test]
async fn the_spec_example_is_created_then_read_back() {
    let app = spawn_app().await;
    let id = "e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1";

    let response = app.post_user(&john(id)).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    for (key, value) in john(id).as_object().unwrap() {
        assert_eq!(&created[key], value, "{key}");
    }

    let response = app.get_user(id).await;
    assert_eq!(response.status(), 200);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);

    let row = app.db.stored(id.parse().unwrap()).unwrap();
    assert_eq!(row.first_name, "John");
    assert_eq!(row.email, "john.doe@example.com");
    assert_eq!(row.phone_number, "+1234567890");
}

#[tokio::test]
async fn post_user_without_user_id_creates_a_user_with_a_generated_v4_id() {
    let app = spawn_app().await;

    let response = app.post_user(&json!({"first_name": "Ann"})).await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id: Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 4);
    let row = app.db.stored(id).unwrap();
    assert_eq!(
        (
            row.first_name.as_str(),
            row.last_name.as_str(),
            row.email.as_str(),
            row.phone_number.as_str()
        ),
        ("Ann", "", "", "")
    );
    assert_eq!(body["last_name"], "");
}

#[tokio::test]
async fn post_user_accepts_an_upper_case_id_and_answers_it_in_lower_case() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();

    let response = app
        .post_user(&json!({"user_id": id.to_string().to_uppercase(), "first_name": "Ann"}))
        .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user_id"], id.to_string());
    assert!(app.db.stored(id).is_some());
}

#[tokio::test]
async fn post_user_for_an_existing_user_returns_200_and_changes_only_the_fields_sent() {
    let app = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    app.post_user(&john(&id)).await;
    let before = app.db.stored(id.parse().unwrap()).unwrap();

    let response = app
        .post_user(&json!({"user_id": id, "email": "new@example.org"}))
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "new@example.org");
    assert_eq!(body["first_name"], "John");
    let after = app.db.stored(id.parse().unwrap()).unwrap();
    assert_eq!(after.email, "new@example.org");
    assert_eq!(
        (
            after.first_name.as_str(),
            after.last_name.as_str(),
            after.phone_number.as_str()
        ),
        ("John", "Doe", "+1234567890")
    );
    assert_eq!(after.created_at, before.created_at);
    assert!(
        after.updated_at > before.updated_at,
        "updated_at must move on a change"
    );
    assert_eq!(app.db.count(), 1);
}

#[tokio::test]
async fn empty_strings_and_nulls_clear_fields() {
    let app = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    app.post_user(&john(&id)).await;

    let response = app
        .post_user(&json!({"user_id": id, "first_name": "", "phone_number": null}))
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["first_name"], "");
    assert_eq!(body["phone_number"], "");
    let row = app.db.stored(id.parse().unwrap()).unwrap();
    assert_eq!(row.first_name, "");
    assert_eq!(row.phone_number, "");
    assert_eq!(row.last_name, "Doe");
}

#[tokio::test]
async fn get_user_answers_404_for_an_unknown_user() {
    let app = spawn_app().await;
    let body = problem(app.get_user(&Uuid::new_v4().to_string()).await, 404).await;
    assert_eq!(body["title"], "User not found");
}

#[tokio::test]
async fn get_user_answers_400_when_user_id_is_missing_or_not_a_uuid() {
    let app = spawn_app().await;
    problem(app.get("/user").await, 400).await;
    problem(app.get_user("12345").await, 400).await;
    problem(app.get_user("").await, 400).await;
}

#[tokio::test]
async fn delete_user_removes_the_row_and_then_answers_404() {
    let app = spawn_app().await;
    let id = Uuid::new_v4().to_string();
    app.post_user(&john(&id)).await;

    let response = app.delete(&format!("/user?user_id={id}")).await;
    assert_eq!(response.status(), 204);
    assert!(app.db.stored(id.parse().unwrap()).is_none());

    problem(app.delete(&format!("/user?user_id={id}")).await, 404).await;
    problem(app.get_user(&id).await, 404).await;
}

#[tokio::test]
async fn delete_user_answers_400_when_user_id_is_missing_or_not_a_uuid() {
    let app = spawn_app().await;
    problem(app.delete("/user").await, 400).await;
    problem(app.delete("/user?user_id=nope").await, 400).await;
}

#[tokio::test]
async fn every_invalid_field_is_listed_and_nothing_is_stored() {
    let app = spawn_app().await;
    let long = "x".repeat(151);

    let response = app
        .post_user(
            &json!({"user_id": "not-a-uuid", "first_name": long, "last_name": long,
                           "email": "nope", "phone_number": "abc"}),
        )
        .await;

    let body = problem(response, 422).await;
    assert_eq!(
        error_fields(&body),
        [
            "email",
            "first_name",
            "last_name",
            "phone_number",
            "user_id"
        ]
    );
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn each_rule_is_enforced_at_its_limit() {
    let app = spawn_app().await;
    let ok_name = "n".repeat(150);
    let accepted = [
        json!({"first_name": ok_name, "last_name": ok_name}),
        json!({"phone_number": "+1 (555) 123-4567"}),
        json!({"phone_number": "123"}),
        json!({"email": "a.b+c@example.co.uk"}),
        json!({"email": ""}),
    ];
    for body in accepted {
        assert_eq!(app.post_user(&body).await.status(), 201, "{body}");
    }
    let rejected = [
        (json!({"first_name": "n".repeat(151)}), "first_name"),
        (json!({"last_name": "n".repeat(151)}), "last_name"),
        (json!({"email": "john@"}), "email"),
        (json!({"email": too_long_email()}), "email"),
        (json!({"phone_number": "12"}), "phone_number"),
        (json!({"phone_number": "1".repeat(33)}), "phone_number"),
        (json!({"phone_number": "12-ab-34"}), "phone_number"),
        (json!({"first_name": "nul\u{0}byte"}), "first_name"),
        (json!({"user_id": "e4b5f7fe-0937-4d7b-b6b4"}), "user_id"),
    ];
    for (body, field) in rejected {
        let problem = problem(app.post_user(&body).await, 422).await;
        assert_eq!(error_fields(&problem), [field], "{body}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(!message.is_empty());
    }
    assert_eq!(app.db.count(), 5);
}

/// 255 characters, well-formed otherwise (labels of at most 63 characters).
fn too_long_email() -> String {
    let email = format!(
        "{}@{}.{}.{}.comx",
        "a".repeat(64),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(63)
    );
    assert_eq!(email.len(), 255);
    email
}
