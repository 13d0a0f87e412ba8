use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{README_EXAMPLE, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let app = spawn_app().await;

    let problem = assert_problem(app.get("/nowhere").await, 404).await;
    assert_eq!(problem["type"], "/problems/not-found");

    let response = app
        .post("/users/extra", "application/json", README_EXAMPLE)
        .await;
    assert_problem(response, 404).await;
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_naming_the_allowed_one() {
    let app = spawn_app().await;
    let cases = [
        (reqwest::Method::GET, "/users", "POST"),
        (reqwest::Method::DELETE, "/users", "POST"),
        (reqwest::Method::GET, "/dummy-enrich", "POST"),
        (reqwest::Method::POST, "/health", "GET"),
        (reqwest::Method::PUT, "/metrics", "GET"),
        (reqwest::Method::POST, "/docs", "GET"),
    ];
    for (method, path, allowed) in cases {
        let response = app
            .http
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();

        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
        let problem = assert_problem(response, 405).await;
        assert_eq!(problem["type"], "/problems/method-not-allowed");
    }
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_a_431_problem() {
    let app = spawn_app().await;
    let get_with_header = |size: usize| {
        app.http
            .get(format!("{}/health", app.address))
            .header("x-padding", "a".repeat(size))
            .send()
    };

    let small = get_with_header(15 * 1024).await.unwrap();
    let large = get_with_header(17 * 1024).await.unwrap();

    assert_eq!(small.status(), 200);
    let problem = assert_problem(large, 431).await;
    assert_eq!(problem["type"], "/problems/request-head-too-large");
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_a_408_problem() {
    let app = spawn_app_with(|settings| {
        settings.http.body_timeout = Duration::from_millis(200);
    })
    .await;
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.unwrap();
    // Promises 100 bytes, sends 10, then stalls.
    let head = "POST /users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nconnection: close\r\n\r\n{\"userId\":";
    socket.write_all(head.as_bytes()).await.unwrap();

    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut answer))
        .await
        .expect("the server answered")
        .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    let app = spawn_app_with(|settings| {
        settings.http.head_timeout = Duration::from_millis(200);
    })
    .await;
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost: te")
        .await
        .unwrap();

    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;

    assert!(closed.is_ok(), "the connection was left open");
}
