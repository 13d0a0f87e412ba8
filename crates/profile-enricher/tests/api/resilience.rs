//! What the enricher does when an upstream misbehaves: hostile `Retry-After`
//! values, a full outage (retry budget and circuit breaker), identical requests in
//! flight at once (coalescing) and the optional answer cache.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::{
    README_EXAMPLE, Script, TestApp, assert_problem, json_answer, spawn_app_with,
};

/// The floor of the default retry budget: 3 retries a second over its 10 s window.
const BUDGET_FLOOR: usize = 3 * 10;

/// Sends `count` profiles (distinct user ids, so nothing is shared) 16 at a time
/// and returns the answers' statuses.
async fn send_distinct(app: &TestApp, count: usize) -> Vec<u16> {
    futures::stream::iter(0..count)
        .map(|n| async move {
            let body =
                README_EXAMPLE.replace(r#""userId":"12345""#, &format!(r#""userId":"u{n}""#));
            app.post_users(body).await.status().as_u16()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// `Retry-After` values too large for any clock: each must be a 504 (the wait
/// would pass the deadline), never a panic, and the app goes on serving - the
/// source itself paused for at most a day (a 503's `Retry-After` is the whole
/// source's), other requests told so at once.
#[tokio::test]
async fn a_retry_after_too_large_for_the_clock_is_a_504_and_the_app_keeps_serving() {
    for hostile in [
        "10000000000000000000",
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let app =
            spawn_app_with(|settings| settings.upstream.deadline = Duration::from_secs(2)).await;
        let (script, arrivals) = Script::new(vec![
            ResponseTemplate::new(503).insert_header("retry-after", hostile),
            json_answer(json!({"ok": true})),
        ]);
        app.upstream_answers(script).await;

        let problem = assert_problem(app.post_users(README_EXAMPLE).await, 504).await;
        assert_eq!(
            problem["type"], "/problems/upstream-deadline-exceeded",
            "{hostile}"
        );
        assert_eq!(arrivals.lock().unwrap().len(), 1, "{hostile}");

        let next = app.post_users(README_EXAMPLE).await;
        assert_eq!(next.status(), 503, "after {hostile}");
        let wait: u64 = next.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (86_000..=86_400).contains(&wait),
            "{hostile}: paused {wait} s"
        );
        let problem = assert_problem(next, 503).await;
        assert_eq!(problem["type"], "/problems/upstream-paused", "{hostile}");
        assert_eq!(arrivals.lock().unwrap().len(), 1, "{hostile}");
        assert_eq!(app.get("/health").await.status(), 200);
    }
}

/// A `Retry-After` that is neither delta-seconds nor an HTTP date is ignored: the
/// normal backoff applies and the retry succeeds.
#[tokio::test]
async fn a_garbage_retry_after_is_ignored_and_the_normal_backoff_applies() {
    for garbage in [
        "-1",
        "-10000000000000000000",
        "1.5",
        "99999999999999999999999999",
        "soon",
        "",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Sun, 99 Foo 2023 25:61:61 GMT",
    ] {
        let app =
            spawn_app_with(|settings| settings.upstream.deadline = Duration::from_secs(5)).await;
        let (script, arrivals) = Script::new(vec![
            ResponseTemplate::new(503).insert_header("retry-after", garbage),
            json_answer(json!({"ok": true})),
        ]);
        app.upstream_answers(script).await;

        let response = app.post_users(README_EXAMPLE).await;

        assert_eq!(response.status(), 200, "{garbage:?}");
        assert_eq!(arrivals.lock().unwrap().len(), 2, "{garbage:?}");
    }
}

/// A full outage: without a budget each request would cost `MAX_RETRIES + 1` = 4
/// calls (800); the budget allows 20 % of first attempts plus its floor.
#[tokio::test]
async fn in_a_full_outage_the_retry_budget_bounds_upstream_calls_to_1_2_per_request() {
    let app = spawn_app_with(|settings| {
        settings.upstream.max_retries = 3;
        // The breaker would stop the calls first; this test is about the budget.
        settings.upstream.circuit_breaker_min_calls = 0;
    })
    .await;
    app.upstream_answers(ResponseTemplate::new(503)).await;

    let statuses = send_distinct(&app, 200).await;

    assert!(statuses.iter().all(|status| *status == 502), "{statuses:?}");
    let calls = app.upstream_requests().await.len();
    assert!(
        calls <= 240 + BUDGET_FLOOR,
        "{calls} upstream calls for 200 requests"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"enricher_retry_budget_exhausted_total{source="default"}"#),
        "{metrics}"
    );
}

/// A full outage with the default breaker (20 calls, 50 %), open for 2 s: the
/// breaker opens, requests are refused without calls (503 + Retry-After), and
/// once the upstream is back a half-open probe succeeds and closes it.
#[tokio::test]
async fn in_a_full_outage_the_breaker_opens_stops_the_calls_and_closes_after_recovery() {
    let app = spawn_app_with(|settings| {
        settings.upstream.circuit_breaker_open_duration = Duration::from_secs(2);
    })
    .await;
    app.upstream_answers(ResponseTemplate::new(503)).await;

    let statuses = send_distinct(&app, 200).await;

    let calls = app.upstream_requests().await.len();
    assert!(
        statuses.iter().all(|status| [502, 503].contains(status)),
        "{statuses:?}"
    );
    // Each request that reached the upstream cost at least one call: far fewer
    // calls than requests means the breaker refused the rest.
    assert!(calls < 100, "{calls} upstream calls for 200 requests");
    assert!(calls <= 240 + BUDGET_FLOOR);
    let refused = app.post_users(README_EXAMPLE).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let problem = assert_problem(refused, 503).await;
    assert_eq!(problem["type"], "/problems/upstream-circuit-open");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"enricher_circuit_state{source="default"} 1"#),
        "{metrics}"
    );

    app.upstream.reset().await;
    app.upstream_answers(json_answer(json!({"back": true})))
        .await;
    let recovered = poll_until_ok(&app, Duration::from_secs(15)).await;
    assert!(
        recovered,
        "no request succeeded after the upstream recovered"
    );

    assert_eq!(app.post_users(README_EXAMPLE).await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"enricher_circuit_state{source="default"} 0"#,
        r#"enricher_circuit_transitions_total{source="default",state="half_open"}"#,
        r#"enricher_circuit_transitions_total{source="default",state="closed"} 1"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
}

/// Sends the example every 50 ms until one is answered 200, at most `patience`.
async fn poll_until_ok(app: &TestApp, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if app.post_users(README_EXAMPLE).await.status() == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
