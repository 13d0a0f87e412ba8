//! OpenTelemetry: a client's W3C trace context is continued by the enricher,
//! sent on to the upstream, exported over OTLP and named in the JSON logs.
//! The binary runs as in production, exporting to a receiver the test runs;
//! SIGTERM makes it export what is left before it exits.

use std::process::Stdio;

use serde_json::json;
use service_kit::testing::otlp::{Receiver, trace_parent};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request};

use crate::helpers::{
    Process, binary, free_port, json_answer, line_containing, readme_example, start, stdout_lines,
    terminate,
};

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// `POST /users` with the client's trace context (`traceparent` and
/// `tracestate`): 200; what the upstream received.
async fn post_in_a_trace(process: &Process, upstream: &MockServer) -> Vec<Request> {
    let response = reqwest::Client::new()
        .post(format!("{}/users", process.address()))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .header("tracestate", "vendor=value")
        .json(&readme_example())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    upstream.received_requests().await.unwrap()
}

/// An upstream answering every profile with the same score.
async fn scoring_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_answer(json!({"score": 7})))
        .mount(&upstream)
        .await;
    upstream
}

#[tokio::test]
async fn a_clients_trace_reaches_the_upstream_the_otlp_receiver_and_the_logs_with_its_trace_id() {
    let upstream = scoring_upstream().await;
    let receiver = Receiver::start().await;
    let port = free_port();
    let mut command = binary(port);
    command
        .env("EXTERNAL_API_URL", format!("{}/enrich", upstream.uri()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.uri())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped());
    let mut process = start(command, port).await;
    let lines = stdout_lines(&mut process);

    let requests = post_in_a_trace(&process, &upstream).await;
    assert_eq!(requests.len(), 1);
    let sent = requests[0].headers["traceparent"].to_str().unwrap();
    let (trace_id, upstream_parent) = trace_parent(sent);
    assert_eq!(trace_id, TRACE_ID, "the upstream call continues the trace");
    assert_ne!(
        upstream_parent, CLIENT_SPAN_ID,
        "the upstream call's parent is the enricher's span, not the client's"
    );
    assert_eq!(requests[0].headers["tracestate"], "vendor=value");

    let logged = line_containing(&lines, "profile enriched");
    let line: serde_json::Value = serde_json::from_str(&logged).unwrap();
    assert_eq!(line["trace_id"], TRACE_ID, "{logged}");
    let span_id = line["span_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(span_id.len(), 16, "the log line names its span: {logged}");

    terminate(&mut process).await;
    let spans = receiver.spans().await;
    let server = spans
        .iter()
        .find(|span| span.trace_id == TRACE_ID && span.parent_span_id == CLIENT_SPAN_ID)
        .unwrap_or_else(|| panic!("no span continues the client's: {spans:#?}"));
    assert_eq!(server.service, "profile-enricher");
    let call = spans
        .iter()
        .find(|span| span.span_id == upstream_parent)
        .unwrap_or_else(|| panic!("the upstream call's span was not exported: {spans:#?}"));
    assert_eq!(call.trace_id, TRACE_ID);
    let logging = spans
        .iter()
        .find(|span| span.span_id == span_id)
        .unwrap_or_else(|| panic!("the log line's span was not exported: {spans:#?}"));
    assert_eq!(logging.trace_id, TRACE_ID);
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_propagated() {
    let upstream = scoring_upstream().await;
    let port = free_port();
    let mut command = binary(port);
    command
        .env("EXTERNAL_API_URL", format!("{}/enrich", upstream.uri()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
    let process = start(command, port).await;
    let requests = post_in_a_trace(&process, &upstream).await;
    assert!(
        requests[0].headers.get("traceparent").is_none(),
        "traces are off: no header is sent"
    );
}
