//! `GET /openapi.json` describes every endpoint and status of the contract.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_and_status() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let expected: [(&str, &str, &[&str]); 5] = [
        (
            "/user",
            "post",
            &["200", "201", "400", "401", "413", "415", "422", "503"],
        ),
        ("/user", "get", &["200", "400", "401", "404", "503"]),
        ("/user", "delete", &["204", "400", "401", "404", "503"]),
        ("/health", "get", &["200"]),
        ("/ready", "get", &["200", "503"]),
    ];
    for (path, method, statuses) in expected {
        let responses = &doc["paths"][path][method]["responses"];
        for status in statuses {
            assert!(
                responses.get(*status).is_some(),
                "{method} {path} documents {status}"
            );
            if status.starts_with(['4', '5']) {
                let schema =
                    &responses[*status]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "errors"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }
}
