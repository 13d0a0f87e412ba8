use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::ApiError;
use crate::startup::AppState;

/// Liveness: the process answers; says nothing about the database.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: migrations applied and the database answering.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.database.ping().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
