//! A minimal enrichment upstream for the benchmark (`bench/run.sh`): answers every
//! POST with a fixed JSON object, after `DELAY_MS` milliseconds (default 0) - or,
//! with `STATUS` set (e.g. `STATUS=500`), with that status and no body: a failing
//! source.
//!
//! The delay is slept on a blocking thread (`nanosleep`, accurate to well under a
//! millisecond), not with tokio's timer, whose 1 ms ticks round every sleep up:
//! a "50 ms" upstream would otherwise answer after 50-51 ms, and the benchmark's
//! ceiling of 8 / 0.05 s would measure the stub's timer, not the enricher.
//!
//! ```sh
//! PORT=18200 DELAY_MS=50 cargo run --release --example stub_upstream
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};

const ANSWER: &str = r#"{"risk_score":0.42,"is_adult":true,"postal_hash":1234,"user_category":"high_value","source_user_id":"12345"}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").map_or(18200, |p| p.parse().expect("PORT"));
    let delay = Duration::from_millis(
        std::env::var("DELAY_MS").map_or(0, |d| d.parse().expect("DELAY_MS")),
    );
    let failure = std::env::var("STATUS")
        .ok()
        .map(|s| actix_web::http::StatusCode::from_bytes(s.as_bytes()).expect("STATUS"));
    HttpServer::new(move || {
        App::new().default_service(web::to(move |_: web::Bytes| async move {
            if !delay.is_zero() {
                tokio::task::spawn_blocking(move || std::thread::sleep(delay))
                    .await
                    .unwrap();
            }
            match failure {
                Some(status) => HttpResponse::build(status).finish(),
                None => HttpResponse::Ok()
                    .content_type("application/json")
                    .body(ANSWER),
            }
        }))
    })
    .backlog(4096)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
