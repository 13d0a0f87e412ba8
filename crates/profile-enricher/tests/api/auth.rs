use serde_json::{Value, json};
use service_kit::http::ApiTokens;

use crate::helpers::{README_EXAMPLE, TestApp, assert_problem, json_answer, spawn_app_with};

async fn app_with_tokens(own_upstream: bool) -> TestApp {
    spawn_app_with(|settings| {
        settings.api_tokens =
            ApiTokens::parse(" first-token-0123456 , second-token-012345 ").unwrap();
        if own_upstream {
            settings.external_api_url = None;
        }
    })
    .await
}

async fn post_users_with(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/users", app.address))
        .header("content-type", "application/json")
        .body(README_EXAMPLE);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn with_api_tokens_a_missing_or_wrong_token_is_a_401_problem() {
    let app = app_with_tokens(false).await;
    for authorization in [
        None,
        Some("Bearer nope"),
        Some("Basic first-token-0123456"),
        Some("first-token-0123456"),
    ] {
        let response = post_users_with(&app, authorization).await;

        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{authorization:?}"
        );
        assert_problem(response, 401).await;
    }
    let response = app
        .post("/dummy-enrich", "application/json", README_EXAMPLE)
        .await;
    assert_problem(response, 401).await;
    assert!(app.upstream_requests().await.is_empty());
}

#[tokio::test]
async fn any_configured_token_is_accepted_with_the_scheme_in_any_case() {
    let app = app_with_tokens(false).await;
    app.upstream_answers(json_answer(json!({}))).await;
    for authorization in [
        "Bearer first-token-0123456",
        "bearer second-token-012345",
        "BEARER first-token-0123456",
    ] {
        let response = post_users_with(&app, Some(authorization)).await;
        assert_eq!(response.status(), 200, "{authorization}");
    }
}

#[tokio::test]
async fn health_metrics_and_the_api_description_need_no_token() {
    let app = app_with_tokens(false).await;
    for open in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
}

#[tokio::test]
async fn the_clients_token_is_never_forwarded_upstream() {
    let app = app_with_tokens(false).await;
    app.upstream_answers(json_answer(json!({}))).await;

    let response = post_users_with(&app, Some("Bearer second-token-012345")).await;

    assert_eq!(response.status(), 200);
    let received = app.upstream_requests().await;
    assert!(!received[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn the_service_calls_its_own_dummy_enrich_with_its_first_token() {
    let app = app_with_tokens(true).await;

    let response = post_users_with(&app, Some("Bearer second-token-012345")).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"]["source_user_id"], "12345");
}
