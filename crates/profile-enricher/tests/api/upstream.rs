use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use wiremock::Mock;
use wiremock::ResponseTemplate;
use wiremock::matchers::{body_partial_json, method, path};

use crate::helpers::{
    README_EXAMPLE, Script, assert_problem, counting_upstream, json_answer, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn transient_failures_are_retried_until_the_upstream_answers() {
    let app = spawn_app().await;
    let (script, arrivals) = Script::new(vec![
        ResponseTemplate::new(503),
        ResponseTemplate::new(503),
        json_answer(json!({"score": 7})),
    ]);
    app.upstream_answers(script).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"], json!({"score": 7}));
    assert_eq!(arrivals.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn every_transient_status_is_retried() {
    for status in [408, 429, 500, 502, 503, 504] {
        let app = spawn_app().await;
        let (script, arrivals) =
            Script::new(vec![ResponseTemplate::new(status), json_answer(json!({}))]);
        app.upstream_answers(script).await;

        assert_eq!(
            app.post_users(README_EXAMPLE).await.status(),
            200,
            "{status}"
        );
        assert_eq!(arrivals.lock().unwrap().len(), 2, "{status}");
    }
}

#[tokio::test]
async fn a_client_error_from_the_upstream_is_a_502_after_one_call() {
    // The one source of EXTERNAL_API_URL knows no `not_found`: a 404 is a refusal.
    // (401 and 403 are a 502 too, as wrong credentials: providers.rs.)
    for status in [400, 404, 422] {
        let app = spawn_app().await;
        app.upstream_answers(ResponseTemplate::new(status)).await;

        let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

        assert_eq!(problem["type"], "/problems/upstream-rejected");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(&status.to_string())
        );
        assert_eq!(app.upstream_requests().await.len(), 1, "{status}");
    }
}

#[tokio::test]
async fn an_upstream_that_keeps_failing_is_a_502_after_max_retries_plus_one_calls() {
    let app = spawn_app_with(|settings| settings.upstream.max_retries = 3).await;
    app.upstream_answers(ResponseTemplate::new(500)).await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

    assert_eq!(problem["type"], "/problems/upstream-retries-exhausted");
    assert_eq!(app.upstream_requests().await.len(), 4);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_after_retrying() {
    let app = spawn_app_with(|settings| {
        // Nothing listens on port 1 of the loopback interface.
        settings.external_api_url = Some("http://127.0.0.1:1/enrich".parse().unwrap());
        settings.upstream.max_retries = 2;
    })
    .await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

    assert_eq!(problem["type"], "/problems/upstream-retries-exhausted");
    assert!(
        problem["detail"].as_str().unwrap().contains("3 attempt"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_a_json_object_is_a_502_after_one_call() {
    let answers = [
        ResponseTemplate::new(200).set_body_string("<html>hello</html>"),
        ResponseTemplate::new(200).set_body_json(json!([1, 2, 3])),
        ResponseTemplate::new(200).set_body_json(json!("text")),
        ResponseTemplate::new(200),
    ];
    for answer in answers {
        let app = spawn_app().await;
        app.upstream_answers(answer).await;

        let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

        assert_eq!(problem["type"], "/problems/upstream-invalid-answer");
        assert_eq!(app.upstream_requests().await.len(), 1);
    }
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let app = spawn_app().await;
    let (script, arrivals) = Script::new(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        json_answer(json!({})),
    ]);
    app.upstream_answers(script).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    // Lenient: the contract is "not before Retry-After"; 50 ms of clock slack.
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(950),
        "second attempt after {gap:?}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_a_504_without_waiting_for_it() {
    let app = spawn_app_with(|settings| settings.upstream.deadline = Duration::from_secs(2)).await;
    app.upstream_answers(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 504).await;

    assert_eq!(problem["type"], "/problems/upstream-deadline-exceeded");
    assert_eq!(app.upstream_requests().await.len(), 1);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_at_the_deadline() {
    let app = spawn_app_with(|settings| {
        settings.upstream.attempt_timeout = Duration::from_secs(30);
        settings.upstream.deadline = Duration::from_millis(300);
    })
    .await;
    app.upstream_answers(json_answer(json!({})).set_delay(Duration::from_secs(3)))
        .await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 504).await;

    assert_eq!(problem["type"], "/problems/upstream-deadline-exceeded");
}

#[tokio::test]
async fn attempts_that_time_out_are_retried_within_the_deadline() {
    let app = spawn_app_with(|settings| {
        settings.upstream.attempt_timeout = Duration::from_millis(200);
        settings.upstream.max_retries = 1;
    })
    .await;
    let (script, arrivals) = Script::new(vec![
        json_answer(json!({"late": true})).set_delay(Duration::from_secs(3)),
        json_answer(json!({"late": false})),
    ]);
    app.upstream_answers(script).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"], json!({"late": false}));
    assert_eq!(arrivals.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_requests_never_exceed_max_concurrency_at_the_upstream() {
    let upstream = counting_upstream(Duration::from_millis(100)).await;
    let url = upstream.url.clone();
    let app = spawn_app_with(move |settings| {
        settings.external_api_url = Some(url.parse().unwrap());
        settings.upstream.max_concurrency = 4;
        settings.upstream.max_concurrency_wait = Duration::from_millis(500);
    })
    .await;

    // Distinct profiles: identical ones in flight at once would share one call.
    let requests = (0..40).map(|n| {
        app.post_users(
            README_EXAMPLE.replace(r#""userId":"12345""#, &format!(r#""userId":"u{n}""#)),
        )
    });
    let responses = futures::future::join_all(requests).await;

    let mut succeeded = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => succeeded += 1,
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                let problem = assert_problem(response, 503).await;
                assert_eq!(problem["type"], "/problems/upstream-busy");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let max_in_flight = upstream.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&max_in_flight),
        "{max_in_flight} in flight at once"
    );
    assert!(succeeded >= 1);
    assert_eq!(upstream.calls.load(Ordering::SeqCst), succeeded);
}

#[tokio::test]
async fn a_request_waiting_to_retry_does_not_hold_its_concurrency_slot() {
    let app = spawn_app_with(|settings| {
        settings.upstream.max_concurrency = 1;
        settings.upstream.max_concurrency_wait = Duration::from_millis(500);
    })
    .await;
    // The first attempt for user "sleeper" is told to come back in 2 s; anyone
    // else is answered at once.
    Mock::given(method("POST"))
        .and(path("/enrich"))
        .and(body_partial_json(json!({"userId": "sleeper"})))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.upstream)
        .await;
    app.upstream_answers(json_answer(json!({}))).await;
    let sleeper = README_EXAMPLE.replace(r#""userId":"12345""#, r#""userId":"sleeper""#);
    let sleeping = tokio::spawn({
        let (http, address) = (app.http.clone(), app.address.clone());
        async move {
            http.post(format!("{address}/users"))
                .header("content-type", "application/json")
                .body(sleeper)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    wait_for_upstream_requests(&app, 1).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(
        response.status(),
        200,
        "the only slot was held by a sleeping request"
    );
    assert_eq!(sleeping.await.unwrap(), 200);
}

async fn wait_for_upstream_requests(app: &crate::helpers::TestApp, count: usize) {
    for _ in 0..200 {
        if app.upstream_requests().await.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream never received {count} request(s)");
}
