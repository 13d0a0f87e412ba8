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
