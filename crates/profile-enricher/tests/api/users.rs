use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{README_EXAMPLE, json_answer, readme_example, spawn_app, spawn_app_with};

#[tokio::test]
async fn post_users_answers_the_readme_example_with_the_upstream_object_verbatim() {
    let app = spawn_app().await;
    // Key order and spacing are the upstream's own; the answer must keep them.
    let upstream_body = r#"{"zeta": 1, "alpha": {"list": [1, 2.50, "x"]}}"#;
    app.upstream_answers(
        ResponseTemplate::new(200).set_body_raw(upstream_body, "application/json"),
    )
    .await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(&format!(r#""enrichment":{upstream_body}"#)),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["user"], readme_example());
    let received = app.upstream_requests().await;
    assert_eq!(received.len(), 1);
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(sent, body["user"]);
    assert_eq!(
        received[0].headers["content-type"].to_str().unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn the_user_is_answered_normalised() {
    let app = spawn_app().await;
    app.upstream_answers(json_answer(json!({}))).await;
    let mut profile = readme_example();
    profile["email"] = json!("  TestUser@Example.COM ");
    profile["signupTs"] = json!("2023-01-01T14:00:00+02:00");
    profile["unknownField"] = json!("ignored");

    let response = app.post_users(profile.to_string()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "testuser@example.com");
    assert_eq!(body["user"]["signupTs"], "2023-01-01T12:00:00Z");
    assert!(body["user"].get("unknownField").is_none());
}

#[tokio::test]
async fn the_postal_code_alias_is_accepted_and_answered_under_postal_code() {
    let app = spawn_app().await;
    app.upstream_answers(json_answer(json!({"ok": true}))).await;
    let mut profile = readme_example();
    let address = profile["address"].as_object_mut().unwrap();
    address.remove("zip_code");
    address.insert("postalCode".into(), json!("SW1A 1AA"));

    let response = app.post_users(profile.to_string()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["address"]["postalCode"], "SW1A 1AA");
    assert!(body["user"]["address"].get("zip_code").is_none());
    let sent: Value = serde_json::from_slice(&app.upstream_requests().await[0].body).unwrap();
    assert_eq!(sent["address"]["postalCode"], "SW1A 1AA");
}

#[tokio::test]
async fn without_external_api_url_the_built_in_dummy_enrichment_is_used() {
    let app = spawn_app_with(|settings| settings.external_api_url = None).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let enrichment = &body["enrichment"];
    assert_eq!(enrichment["source_user_id"], "12345");
    assert_eq!(enrichment["is_adult"], true);
    assert_eq!(enrichment["user_category"], "high_value");
    assert!((0.0..=1.0).contains(&enrichment["risk_score"].as_f64().unwrap()));
    assert!(enrichment["postal_hash"].as_u64().unwrap() <= 9999);
    assert!(app.upstream_requests().await.is_empty());
}
