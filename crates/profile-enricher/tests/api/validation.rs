use serde_json::{Value, json};

use crate::helpers::{README_EXAMPLE, assert_problem, json_answer, readme_example, spawn_app};

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets `value` at `path` in the README example (`None` removes the member).
fn example_with(path: &[&str], value: Option<Value>) -> String {
    let mut doc = readme_example();
    let mut target = &mut doc;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    let last = path[path.len() - 1];
    match value {
        Some(value) => target[last] = value,
        None => {
            target.as_object_mut().unwrap().remove(last);
        }
    }
    doc.to_string()
}

#[tokio::test]
async fn an_empty_object_lists_every_missing_required_field() {
    let app = spawn_app().await;
    let problem = assert_problem(app.post_users("{}").await, 422).await;
    assert_eq!(fields(&problem), ["email", "userId", "username"]);
    assert!(app.upstream_requests().await.is_empty());
}

#[tokio::test]
async fn invalid_utf8_inside_an_ignored_field_is_a_400() {
    let app = spawn_app().await;
    let mut body = README_EXAMPLE
        .trim_end()
        .trim_end_matches('}')
        .to_owned()
        .into_bytes();
    body.extend_from_slice(b",\"ignored\":\"\xff\xfe\"}");
    let problem = assert_problem(app.post_users(body).await, 400).await;
    assert_eq!(problem["type"], "/problems/malformed-json");
    assert!(app.upstream_requests().await.is_empty());
}

#[tokio::test]
async fn post_users_returns_422_naming_the_field_for_each_rule() {
    let app = spawn_app().await;
    let cases: Vec<(&[&str], Option<Value>, &str)> = vec![
        (&["userId"], Some(json!("")), "userId"),
        (&["userId"], Some(json!("x".repeat(65))), "userId"),
        (&["userId"], None, "userId"),
        (&["userId"], Some(json!("a\u{0}b")), "userId"),
        (&["username"], Some(json!("ab")), "username"),
        (&["username"], Some(json!("has space")), "username"),
        (&["username"], Some(json!("u".repeat(33))), "username"),
        (&["email"], Some(json!("not-an-email")), "email"),
        (&["email"], None, "email"),
        (&["age"], Some(json!(0)), "age"),
        (&["age"], Some(json!(130)), "age"),
        (&["age"], Some(json!("thirty")), "age"),
        (&["address"], Some(json!(["1 Main St", "Town"])), "address"),
        (&["address", "street"], Some(json!(" ")), "address.street"),
        (&["address", "city"], Some(json!("")), "address.city"),
        (
            &["address", "zip_code"],
            Some(json!("123_45")),
            "address.zip_code",
        ),
        (
            &["address", "zip_code"],
            Some(json!("9".repeat(21))),
            "address.zip_code",
        ),
        (
            &["address", "postalCode"],
            Some(json!("!!")),
            "address.postalCode",
        ),
        (&["signupTs"], Some(json!("yesterday")), "signupTs"),
    ];
    for (path, value, field) in cases {
        let body = example_with(path, value.clone());

        let response = app.post_users(body).await;

        let problem = assert_problem(response, 422).await;
        assert!(
            fields(&problem).contains(&field.to_owned()),
            "{path:?}={value:?}: {problem}"
        );
    }
    assert!(app.upstream_requests().await.is_empty());
}

#[tokio::test]
async fn optional_members_may_be_absent_or_null() {
    let app = spawn_app().await;
    app.upstream_answers(json_answer(json!({}))).await;
    for body in [
        json!({"userId": "u1", "username": "abc", "email": "a@b.co"}).to_string(),
        example_with(&["age"], Some(Value::Null)),
        example_with(&["address"], Some(Value::Null)),
        example_with(&["address", "state"], None),
        example_with(&["address", "zip_code"], None),
    ] {
        assert_eq!(app.post_users(body.clone()).await.status(), 200, "{body}");
    }
}

#[tokio::test]
async fn a_body_with_three_bad_fields_lists_three_errors() {
    let app = spawn_app().await;
    let body = json!({"userId": "", "username": "x", "email": "nope"});

    let problem = assert_problem(app.post_users(body.to_string()).await, 422).await;

    let mut failing = fields(&problem);
    failing.sort();
    assert_eq!(failing, ["email", "userId", "username"]);
}

#[tokio::test]
async fn rejected_values_are_not_echoed_in_the_problem() {
    let app = spawn_app().await;
    let body = example_with(&["age"], Some(json!("secret@example.com")));

    let response = app.post_users(body).await;

    let text = response.text().await.unwrap();
    assert!(!text.contains("secret@example.com"), "{text}");
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    for body in [r#"{"userId":"#, "not json", "", "\u{feff}{}", "{,}"] {
        let response = app.post_users(body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["type"], "/problems/malformed-json", "{body}");
    }
}

#[tokio::test]
async fn json_that_is_not_an_object_is_a_422_problem() {
    let app = spawn_app().await;
    for body in ["[]", "null", "42", r#""text""#] {
        assert_problem(app.post_users(body).await, 422).await;
    }
}

#[tokio::test]
async fn json_nested_deeper_than_64_levels_is_refused_with_400() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"userId":"u1","username":"abc","email":"a@b.co","extra":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );

    assert_problem(app.post_users(body).await, 400).await;
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    for content_type in [
        "text/plain",
        "application/xml",
        "application/jsonx",
        "application/problem+json",
        "nonsense",
    ] {
        let response = app.post("/users", content_type, README_EXAMPLE).await;
        assert_problem(response, 415).await;
    }
    let response = app
        .http
        .post(format!("{}/users", app.address))
        .body(README_EXAMPLE)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
}

#[tokio::test]
async fn application_json_with_parameters_is_accepted() {
    let app = spawn_app().await;
    app.upstream_answers(json_answer(json!({}))).await;
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ] {
        let response = app.post("/users", content_type, README_EXAMPLE).await;
        assert_eq!(response.status(), 200, "{content_type}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413_problem_and_64_kib_is_fine() {
    let app = spawn_app().await;
    app.upstream_answers(json_answer(json!({}))).await;
    let padded = |size: usize| {
        format!(
            "{README_EXAMPLE}{}",
            " ".repeat(size - README_EXAMPLE.len())
        )
    };

    let at_limit = app.post_users(padded(65_536)).await;
    let over_limit = app.post_users(padded(65_537)).await;

    assert_eq!(at_limit.status(), 200);
    let problem = assert_problem(over_limit, 413).await;
    assert_eq!(problem["type"], "/problems/payload-too-large");
}
