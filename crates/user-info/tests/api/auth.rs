//! Optional bearer-token authentication (`API_TOKENS`).

use serde_json::json;

use crate::helpers::{TestDatabase, problem, settings, spawn_configured};

#[tokio::test]
async fn with_api_tokens_set_data_endpoints_need_a_bearer_token_and_probes_stay_open() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.api_tokens = service_kit::http::ApiTokens::parse(" first-token , second-token ");
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let url = format!("{}/user", app.address);
    let body = json!({"first_name": "A"});

    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, 401).await;
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(wrong, 401).await;
    let get = app
        .client
        .get(format!(
            "{url}?user_id=e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"
        ))
        .send()
        .await
        .unwrap();
    problem(get, 401).await;
    assert_eq!(app.db.count(), 0, "nothing stored without a token");

    let good = app
        .client
        .post(&url)
        .header("authorization", "bearer second-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 201);
    for open in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
}
