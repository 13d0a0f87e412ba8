use actix_web::{HttpResponse, web};
use serde_json::json;
use service_kit::http::Problem;

use crate::error::ApiError;
use crate::startup::AppState;

/// Liveness: the process answers; says nothing about the database.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "The process is alive", body = crate::openapi::Status)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: migrations applied and the database answering.
#[utoipa::path(get, path = "/ready", tag = "probes", responses(
    (status = 200, description = "Ready to serve", body = crate::openapi::Status),
    (status = 503, description = "Database unreachable or not migrated", body = Problem, content_type = "application/problem+json"),
))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.database.ping().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
