//! OpenTelemetry: a client's W3C trace context is continued by user-info's
//! spans, exported over OTLP to a receiver the test runs (SIGTERM exports
//! what is left before the exit).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use service_kit::testing::otlp::Receiver;

use crate::helpers::{Server, TestDatabase, eventually, free_port};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_clients_trace_is_continued_by_the_request_span_exported_over_otlp() {
    let receiver = Receiver::start().await;
    let db = TestDatabase::create();
    let port = free_port();
    let (mut server, base) = Server::start_ready(
        Command::new(env!("CARGO_BIN_EXE_user-info"))
            .env("RUST_LOG", "warn")
            .env("USER_INFO_HOST", "127.0.0.1")
            .env("USER_INFO_PORT", port.to_string())
            .env("DATABASE_URL", &db.url)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.uri())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        port,
    )
    .await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{base}/user?user_id={}", uuid::Uuid::new_v4()))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // `client` keeps its idle keep-alive connection open on purpose: the server
    // waits for it at most its shutdown timeout, and must still exit within 10 s.
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exited = eventually(Duration::from_secs(10), || {
        let done = server.0.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    assert!(
        exited,
        "still running {:?} after SIGTERM",
        signalled.elapsed()
    );

    let spans = receiver.spans().await;
    let request = spans
        .iter()
        .find(|span| span.trace_id == TRACE_ID && span.parent_span_id == CLIENT_SPAN_ID)
        .unwrap_or_else(|| panic!("no span continues the client's: {spans:#?}"));
    assert_eq!(request.service, "user-info");
}
