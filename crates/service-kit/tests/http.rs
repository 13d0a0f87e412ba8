//! The HTTP plumbing as a client meets it, through a real server: every
//! process wraps its app in the same [`guard`], so these answers hold for all.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use service_kit::http::{
    ApiTokens, JsonBody, MAX_HEAD_BYTES, MergePatchBody, guard, render_problem,
};
use service_kit::settings::HttpSettings;
use tracing_actix_web::TracingLogger;

async fn echo(body: JsonBody) -> HttpResponse {
    HttpResponse::Ok().body(body.0)
}

async fn echo_patch(body: MergePatchBody) -> HttpResponse {
    HttpResponse::Ok().body(body.0)
}

/// Serves `/health` (open) and `/echo` (protected when `tokens` are set) on a
/// free port; returns the port.
fn serve(tokens: &str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tokens = web::Data::new(ApiTokens::parse(tokens).unwrap());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(render_problem))
            .wrap(from_fn(guard))
            .wrap(TracingLogger::default())
            .app_data(tokens.clone())
            .app_data(HttpSettings::default())
            .route("/health", web::get().to(HttpResponse::Ok))
            .route("/echo", web::post().to(echo))
            .route("/patch", web::post().to(echo_patch))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    port
}

/// Sends `request` as raw bytes; returns the status and the whole answer.
async fn exchange(port: u16, request: Vec<u8>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(&request).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer[9..12].parse().unwrap();
        (status, answer)
    })
    .await
    .unwrap()
}

/// A GET whose head is exactly `size` bytes, padded with one header.
fn head_of(size: usize) -> Vec<u8> {
    let fixed = "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: \r\n\r\n";
    let pad = "a".repeat(size - fixed.len());
    let head =
        format!("GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: {pad}\r\n\r\n");
    assert_eq!(head.len(), size);
    head.into_bytes()
}

#[actix_web::test]
async fn a_head_of_16_kib_is_served_and_one_byte_more_is_a_431_problem() {
    let port = serve("");
    let (status, _) = exchange(port, head_of(MAX_HEAD_BYTES)).await;
    assert_eq!(status, 200);
    let (status, answer) = exchange(port, head_of(MAX_HEAD_BYTES + 1)).await;
    assert_eq!(status, 431);
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("/problems/request-head-too-large"),
        "{answer}"
    );
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[actix_web::test]
async fn with_tokens_only_open_paths_pass_without_one() {
    let port = serve("alpha-0123456789, bravo-0123456789");
    let json = "content-type: application/json\r\n";
    let (status, answer) = exchange(port, post("/echo", json, b"{}")).await;
    assert_eq!(status, 401);
    assert!(
        answer.to_lowercase().contains("www-authenticate: bearer"),
        "{answer}"
    );
    let with_token = format!("{json}authorization: bearer bravo-0123456789\r\n");
    let (status, _) = exchange(port, post("/echo", &with_token, b"{}")).await;
    assert_eq!(status, 200);
    let (status, _) = exchange(
        port,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn every_answer_carries_a_request_id() {
    let port = serve("");
    let (_, ok) = exchange(
        port,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
    )
    .await;
    let (_, refused) = exchange(port, head_of(MAX_HEAD_BYTES + 1)).await;
    for answer in [ok, refused] {
        assert!(answer.to_lowercase().contains("x-request-id: "), "{answer}");
    }
}

#[actix_web::test]
async fn merge_patches_must_say_so_and_json_is_not_one() {
    let port = serve("");
    let patch = "content-type: application/merge-patch+json; charset=utf-8\r\n";
    let (status, answer) = exchange(port, post("/patch", patch, b"{\"a\":null}")).await;
    assert_eq!(status, 200);
    assert!(answer.ends_with("{\"a\":null}"), "{answer}");
    let json = "content-type: application/json\r\n";
    let (status, answer) = exchange(port, post("/patch", json, b"{}")).await;
    assert_eq!(status, 415);
    assert!(answer.contains("application/merge-patch+json"), "{answer}");
    let (status, _) = exchange(port, post("/echo", patch, b"{}")).await;
    assert_eq!(status, 415, "a merge patch is not plain JSON");
    let big = vec![b' '; 64 * 1024 + 1];
    let (status, _) = exchange(port, post("/patch", patch, &big)).await;
    assert_eq!(status, 413);
}

#[actix_web::test]
async fn bodies_must_be_json_and_at_most_64_kib() {
    let port = serve("");
    let (status, _) = exchange(port, post("/echo", "content-type: text/plain\r\n", b"{}")).await;
    assert_eq!(status, 415);
    let charset = "content-type: application/json; charset=utf-8\r\n";
    let (status, _) = exchange(port, post("/echo", charset, b"{}")).await;
    assert_eq!(status, 200);
    let big = vec![b' '; 64 * 1024 + 1];
    let (status, answer) = exchange(port, post("/echo", charset, &big)).await;
    assert_eq!(status, 413);
    assert!(answer.contains("/problems/payload-too-large"), "{answer}");
}

#[actix_web::test]
async fn framework_errors_are_typed_problems() {
    let port = serve("");
    let (status, answer) = exchange(
        port,
        b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        answer.contains("application/problem+json") && answer.contains("/problems/not-found"),
        "{answer}"
    );
}
