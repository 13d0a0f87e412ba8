use actix_web::{HttpResponse, web};
use serde_json::json;

/// The deployment name (`ENV`) that `/health` reports.
pub struct Environment(pub String);

/// Liveness only: it must answer even when the upstream is down.
pub async fn health(environment: web::Data<Environment>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "env": environment.0 }))
}
