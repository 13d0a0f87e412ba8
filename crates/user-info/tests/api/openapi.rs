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

    let expected: [(&str, &str, &[&str]); 8] = [
        (
            "/user",
            "post",
            &[
                "200", "201", "400", "401", "409", "412", "413", "415", "422", "503",
            ],
        ),
        (
            "/user",
            "patch",
            &[
                "200", "400", "401", "404", "409", "412", "413", "415", "422", "503",
            ],
        ),
        (
            "/user",
            "get",
            &["200", "304", "400", "401", "404", "412", "503"],
        ),
        (
            "/user",
            "delete",
            &["204", "400", "401", "404", "409", "412", "503"],
        ),
        ("/health", "get", &["200"]),
        ("/ready", "get", &["200", "503"]),
        ("/metrics", "get", &["200"]),
        ("/docs", "get", &["200"]),
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
    let headers = |method: &str| -> Vec<String> {
        doc["paths"]["/user"][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        headers("post"),
        ["If-Match", "If-None-Match", "Idempotency-Key"]
    );
    assert_eq!(headers("patch"), ["If-Match", "If-None-Match"]);
    assert_eq!(headers("get"), ["If-Match", "If-None-Match"]);
    assert_eq!(headers("delete"), ["If-Match", "If-None-Match"]);
    let patch_body = &doc["paths"]["/user"]["patch"]["requestBody"]["content"];
    assert!(patch_body.get("application/merge-patch+json").is_some());
    for (method, status) in [("get", "200"), ("post", "201"), ("patch", "200")] {
        let etag = &doc["paths"]["/user"][method]["responses"][status]["headers"]["ETag"];
        assert!(etag.is_object(), "{method} {status} documents its ETag");
    }
    assert!(doc["components"]["schemas"]["User"]["properties"]["version"].is_object());

    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "errors"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }
}

#[tokio::test]
async fn docs_serves_an_api_explorer_of_the_openapi_document() {
    let app = spawn_app().await;
    let served: Value = app.get("/openapi.json").await.json().await.unwrap();

    let response = app.get("/docs").await;

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("@scalar/api-reference"), "{page}");
    let embedded = service_kit::http::DocsPage::embedded_document(&page)
        .expect("the page embeds the OpenAPI document");
    let embedded: Value = serde_json::from_str(embedded).unwrap();
    assert_eq!(
        embedded, served,
        "the explorer shows what /openapi.json serves"
    );
}
