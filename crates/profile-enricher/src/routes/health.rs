use actix_web::{HttpResponse, web};
use serde::Serialize;
use service_kit::http::{Problem, problem_response};

use crate::kafka::KafkaStatus;
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

/// Readiness: always ready over HTTP alone (the upstream being down is answered
/// per request); in the Kafka mode (`ENRICHER_INPUT_TOPIC`), only while the
/// consumer is in its group and the last produce was acknowledged.
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses(
        (status = 200, description = "Ready to serve (and, in the Kafka mode, to consume)", body = Ready),
        (status = 503, description = "The Kafka mode is on and the consumer is not in its group, or producing fails", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(kafka: Option<web::Data<KafkaStatus>>) -> HttpResponse {
    match kafka {
        Some(status) if !status.is_ready() => problem_response(&Problem::typed(
            503,
            "kafka-not-ready",
            "Service Unavailable",
            "the Kafka consumer is not in its group yet, or producing fails",
        )),
        _ => HttpResponse::Ok().json(Ready { status: "ready" }),
    }
}
