//! Slow and idle clients cannot hold connections: a head must arrive within
//! HTTP_HEAD_TIMEOUT, a body within HTTP_BODY_TIMEOUT (else 408).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestDatabase, settings, spawn_configured};

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_a_408_problem_and_nothing_is_stored() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.http.body_timeout = std::time::Duration::from_millis(200);
    let app = spawn_configured(db, config).await;
    app.wait_until_ready().await;
    let mut socket = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    // Promises 100 bytes, sends 14, then stalls.
    let head = "POST /user HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                content-length: 100\r\nconnection: close\r\n\r\n{\"first_name\":";
    socket.write_all(head.as_bytes()).await.unwrap();

    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut answer))
        .await
        .expect("the server answered")
        .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert_eq!(app.db.count(), 0);
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_head_is_closed() {
    let db = TestDatabase::create();
    let mut config = settings(&db.url);
    config.http.head_timeout = std::time::Duration::from_millis(200);
    let app = spawn_configured(db, config).await;
    let mut socket = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost: te")
        .await
        .unwrap();

    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;

    assert!(closed.is_ok(), "the connection was left open");
}
