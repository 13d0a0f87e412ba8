use serde_json::{Value, json};

use crate::helpers::{
    Process, README_EXAMPLE, assert_problem, binary, free_port, spawn_app, start,
};

async fn start_binary() -> Process {
    let port = free_port();
    start(binary(port), port).await
}

async fn dummy_enrich(http: &reqwest::Client, process: &Process, body: &str) -> String {
    let response = http
        .post(format!("{}/dummy-enrich", process.address()))
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
    let first = start_binary().await;
    let second = start_binary().await;
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
