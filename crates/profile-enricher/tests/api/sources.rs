//! Several named sources (`ENRICHMENT_SOURCES`): called at once, merged in declared
//! order, each reported in `sources`; optional ones may fail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use profile_enricher::config::SourceSettings;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{README_EXAMPLE, Script, assert_problem, json_answer, spawn_app_with};

type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// A fake source answering `answer` to every `POST /enrich`, noting arrivals.
async fn source(answer: ResponseTemplate) -> (MockServer, Arrivals) {
    let server = MockServer::start().await;
    let (script, arrivals) = Script::new(vec![answer]);
    Mock::given(method("POST"))
        .and(path("/enrich"))
        .respond_with(script)
        .mount(&server)
        .await;
    (server, arrivals)
}

fn declared(name: &str, server: &MockServer, required: bool) -> SourceSettings {
    SourceSettings {
        url: Some(format!("{}/enrich", server.uri()).parse().unwrap()),
        required,
        ..SourceSettings::named(name)
    }
}

/// `geo` and `risk` required, `ads` optional.
async fn three_sources(
    geo: ResponseTemplate,
    risk: ResponseTemplate,
    ads: ResponseTemplate,
) -> (crate::helpers::TestApp, [(MockServer, Arrivals); 3]) {
    let servers = [source(geo).await, source(risk).await, source(ads).await];
    let sources = vec![
        declared("geo", &servers[0].0, true),
        declared("risk", &servers[1].0, true),
        declared("ads", &servers[2].0, false),
    ];
    let app = spawn_app_with(move |settings| settings.upstream.sources = sources).await;
    (app, servers)
}

#[tokio::test]
async fn three_sources_are_merged_in_declared_order_an_earlier_key_winning() {
    let (app, servers) = three_sources(
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"country": "FR", "score": 1}"#, "application/json"),
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"score": 2, "risk": 0.30}"#, "application/json"),
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"segment": "x", "country": "DE"}"#, "application/json"),
    )
    .await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#""enrichment":{"country":"FR","score":1,"risk":0.30,"segment":"x"}"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""sources":{"geo":"ok","risk":"ok","ads":"ok"}}"#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    for (server, _) in &servers {
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 1);
        let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
        assert_eq!(sent, body["user"]);
    }
}

#[tokio::test]
async fn the_sources_are_called_at_once_not_one_after_the_other() {
    let delay = Duration::from_secs(1);
    let (app, servers) = three_sources(
        json_answer(json!({"a": 1})).set_delay(delay),
        json_answer(json!({"b": 2})).set_delay(delay),
        json_answer(json!({"c": 3})).set_delay(delay),
    )
    .await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let arrivals: Vec<Instant> = servers
        .iter()
        .map(|(_, arrivals)| arrivals.lock().unwrap()[0])
        .collect();
    let first = *arrivals.iter().min().unwrap();
    let last = *arrivals.iter().max().unwrap();
    // Called one after the other, a source would only be asked once the one
    // before had answered, `delay` after its own request arrived.
    assert!(
        last < first + delay,
        "the last source was asked {:?} after the first",
        last - first
    );
}

#[tokio::test]
async fn a_failing_optional_source_is_reported_failed_in_a_200() {
    let (app, servers) = three_sources(
        json_answer(json!({"a": 1})),
        json_answer(json!({"b": 2})),
        ResponseTemplate::new(500),
    )
    .await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enrichment"], json!({"a": 1, "b": 2}));
    assert_eq!(
        body["sources"],
        json!({"geo": "ok", "risk": "ok", "ads": "failed"})
    );
    // The optional source was retried like any other.
    assert_eq!(servers[2].1.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_failing_required_source_is_a_502_naming_it() {
    let (app, _servers) = three_sources(
        json_answer(json!({"a": 1})),
        ResponseTemplate::new(400),
        json_answer(json!({"c": 3})),
    )
    .await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

    assert_eq!(problem["type"], "/problems/upstream-rejected");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("source `risk`") && detail.contains("400"),
        "{detail}"
    );
}

#[tokio::test]
async fn when_several_required_sources_fail_the_broken_one_outranks_the_slow_one() {
    // geo's Retry-After would pass the deadline (504); risk refuses (502).
    let (app, _servers) = three_sources(
        ResponseTemplate::new(503).insert_header("retry-after", "3600"),
        ResponseTemplate::new(400),
        json_answer(json!({})),
    )
    .await;

    let problem = assert_problem(app.post_users(README_EXAMPLE).await, 502).await;

    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("source `risk`"),
        "{problem}"
    );
}

#[tokio::test]
async fn one_declared_source_answers_exactly_as_the_single_upstream_does() {
    let (server, _) = source(
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"zeta": 1, "alpha": [2.50]}"#, "application/json"),
    )
    .await;
    let only = declared("geo", &server, true);
    let app = spawn_app_with(move |settings| settings.upstream.sources = vec![only]).await;

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.ends_with(r#","enrichment":{"zeta": 1, "alpha": [2.50]}}"#),
        "{text}"
    );
    assert!(!text.contains("\"sources\""), "{text}");
}

#[tokio::test]
async fn the_answer_schema_documents_sources() {
    let app = spawn_app_with(|_| {}).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    let sources = &doc["components"]["schemas"]["Enriched"]["properties"]["sources"];
    assert!(sources.is_object(), "{sources}");
    assert_eq!(
        doc["components"]["schemas"]["SourceStatus"]["enum"],
        json!(["ok", "not_found", "failed", "skipped"])
    );
}

#[tokio::test]
async fn an_optional_source_whose_breaker_is_open_is_skipped_without_a_call() {
    let servers = [
        source(json_answer(json!({"a": 1}))).await,
        source(json_answer(json!({"b": 2}))).await,
        source(ResponseTemplate::new(500)).await,
    ];
    let sources = vec![
        declared("geo", &servers[0].0, true),
        declared("risk", &servers[1].0, true),
        declared("ads", &servers[2].0, false),
    ];
    let app = spawn_app_with(move |settings| {
        settings.upstream.sources = sources;
        // ads' 4 failed attempts of the first request open its breaker.
        settings.upstream.circuit_breaker_min_calls = 4;
    })
    .await;
    let first: Value = app.post_users(README_EXAMPLE).await.json().await.unwrap();
    assert_eq!(first["sources"]["ads"], "failed");
    let ads_calls = servers[2].1.lock().unwrap().len();

    let response = app.post_users(README_EXAMPLE).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["sources"],
        json!({"geo": "ok", "risk": "ok", "ads": "skipped"})
    );
    assert_eq!(body["enrichment"], json!({"a": 1, "b": 2}));
    assert_eq!(servers[2].1.lock().unwrap().len(), ads_calls);
}
