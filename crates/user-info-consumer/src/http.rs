//! The consumer's small HTTP port: `/health`, `/ready`, `/metrics`, behind the
//! same guard (head limit, request ids) and problem answers as every service.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use service_kit::http::{Problem, RequestSpan, guard, problem_response, render_problem};
use tracing_actix_web::TracingLogger;

use crate::status::Status;

pub fn serve(listener: TcpListener, status: Arc<Status>) -> std::io::Result<Server> {
    let status = web::Data::from(status);
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(render_problem))
            .wrap(from_fn(guard))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(status.clone())
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the consumer is in its group, the database answers and dead
/// letters can be written.
async fn ready(status: web::Data<Status>) -> HttpResponse {
    let database = status.database.ping().await;
    match status.not_ready_reason(database.is_ok()) {
        None => HttpResponse::Ok().json(json!({"status": "ready"})),
        Some(reason) => problem_response(&Problem::typed(503, "not-ready", "Not ready", reason)),
    }
}

async fn metrics(status: web::Data<Status>) -> HttpResponse {
    match status.metrics.registry().render() {
        Ok(body) => HttpResponse::Ok()
            .content_type(service_kit::metrics::TEXT_FORMAT)
            .body(body),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            problem_response(&Problem::typed(
                500,
                "internal-error",
                "Internal Server Error",
                "the metrics could not be rendered",
            ))
        }
    }
}
