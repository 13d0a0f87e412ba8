use actix_web::{HttpResponse, web};
use serde::Serialize;
use service_kit::http::Problem;
use utoipa::ToSchema;

/// The deployment name (`ENV`) that `/health` reports.
pub struct Environment(pub String);

/// The answer of `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health<'a> {
    /// Always `ok`.
    status: &'static str,
    /// The deployment name (`ENV`).
    env: &'a str,
}

/// Liveness only: it must answer even when the upstream is down.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses(
        (status = 200, description = "The process is alive", body = Health),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn health(environment: web::Data<Environment>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        env: &environment.0,
    })
}

/// The answer of `GET /ready`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
}

/// Readiness: ready whenever the process serves HTTP - it needs nothing else
/// (an upstream that is down is answered per request). In the Kafka mode too: a
/// broker outage must not take `POST /users` out of its Service; the Kafka
/// side's health is in `/metrics` (`enricher_kafka_in_group`,
/// `enricher_kafka_produce_failures_total`).
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses(
        (status = 200, description = "Ready to serve (the Kafka side, in the Kafka mode, is not part of it: see /metrics)", body = Ready),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready() -> HttpResponse {
    HttpResponse::Ok().json(Ready { status: "ready" })
}
