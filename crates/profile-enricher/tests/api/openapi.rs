//! `GET /openapi.json` describes every endpoint and status of the contract, and
//! the service's answers conform to it.

use serde_json::{Value, json};
use service_kit::http::ApiTokens;

use crate::helpers::{README_EXAMPLE, TestApp, json_answer, spawn_app, spawn_app_with};

const PROBLEM_REF: &str = "#/components/schemas/Problem";

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("the document is JSON")
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_and_status() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let body_errors = ["400", "401", "408", "413", "415", "422", "431"];
    let upstream_errors = ["502", "503", "504"];
    let users: Vec<&str> = ["200"]
        .into_iter()
        .chain(body_errors)
        .chain(upstream_errors)
        .collect();
    let dummy: Vec<&str> = ["200"].into_iter().chain(body_errors).collect();
    let expected: [(&str, &str, &[&str]); 6] = [
        ("/users", "post", &users),
        ("/dummy-enrich", "post", &dummy),
        ("/health", "get", &["200", "431"]),
        ("/metrics", "get", &["200", "431"]),
        ("/openapi.json", "get", &["200", "431"]),
        ("/docs", "get", &["200", "431"]),
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
                assert_eq!(schema, PROBLEM_REF, "{method} {path} {status}");
            }
        }
    }
    let users = &doc["paths"]["/users"]["post"];
    assert!(users["responses"]["503"]["headers"]["Retry-After"].is_object());
    assert!(users["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
    assert!(users["requestBody"]["content"]["application/json"]["schema"].is_object());
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object()
    );

    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "errors"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }
}

#[tokio::test]
async fn only_the_enrichment_endpoints_declare_the_optional_bearer_token() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    for path in ["/users", "/dummy-enrich"] {
        assert_eq!(
            doc["paths"][path]["post"]["security"],
            json!([{}, {"bearer": []}]),
            "{path}"
        );
    }
    for path in ["/health", "/metrics", "/openapi.json", "/docs"] {
        assert!(
            doc["paths"][path]["get"].get("security").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_token_when_api_tokens_is_set() {
    let app = spawn_app_with(|settings| {
        settings.api_tokens = ApiTokens::parse("secret-token-0123456").unwrap()
    })
    .await;

    let doc = document(&app).await;

    assert!(doc["paths"]["/users"].is_object());
    assert_eq!(app.post_users(README_EXAMPLE).await.status(), 401);
}

#[tokio::test]
async fn answers_conform_to_the_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    app.upstream_answers(json_answer(json!({"score": 0.5, "tags": ["a"]})))
        .await;
    let schema = |path: &str, method: &str, status: &str, content_type: &str| {
        doc["paths"][path][method]["responses"][status]["content"][content_type]["schema"].clone()
    };

    let profiles = [
        README_EXAMPLE.to_owned(),
        json!({"userId": "u-2", "username": "abc", "email": " A@B.co "}).to_string(),
        json!({"userId": "u-3", "username": "abc", "email": "a@b.co", "age": 17,
               "signupTs": "2024-02-29T23:00:00+02:00",
               "address": {"street": "1 Rue", "city": "Paris", "state": "",
                           "postalCode": "75001"}})
        .to_string(),
    ];
    for profile in &profiles {
        for (path, expected) in [("/users", "users"), ("/dummy-enrich", "dummy")] {
            let response = app.post(path, "application/json", profile.clone()).await;
            assert_eq!(response.status(), 200, "{path} {profile}");
            let answer: Value = response.json().await.unwrap();
            let answer_schema = schema(path, "post", "200", "application/json");
            assert!(answer_schema.is_object(), "{path} documents its answer");
            if let Err(error) = conforms(&doc, &answer_schema, &answer) {
                panic!("{expected}: {answer} does not conform: {error}");
            }
        }
        let request = schema_of_request(&doc, "/users");
        let sent: Value = serde_json::from_str(profile).unwrap();
        if let Err(error) = conforms(&doc, &request, &sent) {
            panic!("{sent} is not a valid request body: {error}");
        }
    }

    // The check itself is not vacuous.
    let users = schema("/users", "post", "200", "application/json");
    for wrong in [
        json!({"user": {"userId": "u", "username": "abc"}, "enrichment": {}}),
        json!({"user": {"userId": "u", "username": "abc", "email": "a@b.co"}, "enrichment": []}),
        json!({"user": {"userId": "u", "username": "abc", "email": "a@b.co", "age": 200},
               "enrichment": {}}),
        json!({"user": {"userId": "u", "username": "abc", "email": "a@b.co", "nick": "x"},
               "enrichment": {}}),
    ] {
        assert!(conforms(&doc, &users, &wrong).is_err(), "{wrong}");
    }
    let dummy = schema("/dummy-enrich", "post", "200", "application/json");
    let category = json!({"risk_score": 0.5, "is_adult": true, "postal_hash": null,
                          "user_category": "vip", "source_user_id": "u"});
    assert!(conforms(&doc, &dummy, &category).is_err());

    let invalid = app
        .post_users(json!({"userId": "", "username": "x", "email": "no"}).to_string())
        .await;
    assert_eq!(invalid.status(), 422);
    let problem: Value = invalid.json().await.unwrap();
    let problem_schema = schema("/users", "post", "422", "application/problem+json");
    assert!(problem_schema.is_object());
    conforms(&doc, &problem_schema, &problem).unwrap();

    let health: Value = app.get("/health").await.json().await.unwrap();
    let health_schema = schema("/health", "get", "200", "application/json");
    assert!(health_schema.is_object());
    conforms(&doc, &health_schema, &health).unwrap();
}

#[tokio::test]
async fn the_schemas_carry_the_validation_rules() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];

    let profile = &schemas["ProfileBody"];
    assert_eq!(profile["required"], json!(["userId", "username", "email"]));
    let user_id = &profile["properties"]["userId"];
    assert_eq!(
        (&user_id["minLength"], &user_id["maxLength"]),
        (&json!(1), &json!(64))
    );
    let username = &profile["properties"]["username"];
    assert_eq!(
        (&username["minLength"], &username["maxLength"]),
        (&json!(3), &json!(32))
    );
    assert!(username["pattern"].is_string());
    assert_eq!(profile["properties"]["email"]["format"], "email");
    assert_eq!(profile["properties"]["age"]["minimum"], 1);
    assert_eq!(profile["properties"]["age"]["maximum"], 129);
    assert_eq!(profile["properties"]["signupTs"]["format"], "date-time");
    let address = &schemas["AddressBody"];
    assert_eq!(address["required"], json!(["street", "city"]));
    for key in ["zip_code", "postalCode"] {
        assert_eq!(address["properties"][key]["maxLength"], 20, "{key}");
    }

    let enrichment = &schemas["ReferenceEnrichment"]["properties"];
    assert_eq!(enrichment["risk_score"]["minimum"], 0);
    assert_eq!(enrichment["risk_score"]["maximum"], 1);
    assert_eq!(enrichment["postal_hash"]["maximum"], 9999);
    assert_eq!(
        schemas["UserCategory"]["enum"],
        json!(["high_value", "standard"])
    );
}

fn schema_of_request(doc: &Value, path: &str) -> Value {
    doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"].clone()
}

/// Whether `value` is valid against `schema`, for the subset of JSON Schema that
/// utoipa emits here: `$ref`, `type` (also a list), `oneOf`, `allOf`, `enum`,
/// `properties`/`required`, `items`, numeric and length bounds. Stricter than JSON
/// Schema in one way: a member missing from `properties` is an error (unless
/// `additionalProperties` allows it), since an answer must be documented.
fn conforms(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("unexpected $ref {reference}"))?;
        return conforms(doc, &doc["components"]["schemas"][name], value);
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let matching = choices
            .iter()
            .filter(|choice| conforms(doc, choice, value).is_ok())
            .count();
        if matching != 1 {
            return Err(format!("{value} matches {matching} of oneOf {schema}"));
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            conforms(doc, part, value)?;
        }
    }
    if let Some(types) = match &schema["type"] {
        Value::String(single) => Some(vec![single.as_str()]),
        Value::Array(many) => Some(many.iter().filter_map(Value::as_str).collect()),
        _ => None,
    } {
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let accepted =
            types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !accepted {
            return Err(format!("{value} is not of type {types:?}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{value} is not one of {allowed:?}"));
    }
    if let Some(number) = value.as_f64()
        && (schema["minimum"].as_f64().is_some_and(|min| number < min)
            || schema["maximum"].as_f64().is_some_and(|max| number > max))
    {
        return Err(format!("{value} is out of the bounds of {schema}"));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min)
            || schema["maxLength"].as_u64().is_some_and(|max| length > max)
        {
            return Err(format!("{value} has the wrong length for {schema}"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                return Err(format!("{key} is missing from {value}"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, member) in object {
                match properties.get(key) {
                    Some(property) => {
                        conforms(doc, property, member).map_err(|e| format!("{key}: {e}"))?;
                    }
                    None if schema
                        .get("additionalProperties")
                        .is_some_and(|a| a != false) => {}
                    None => return Err(format!("{key} is not documented in {schema}")),
                }
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for element in elements {
            conforms(doc, items, element)?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn docs_serves_an_api_explorer_of_the_openapi_document() {
    let app = spawn_app().await;
    let served = document(&app).await;

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
