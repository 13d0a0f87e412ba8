use actix_web::{HttpResponse, web};
use service_kit::http::Problem;

use crate::error::ApiError;
use crate::kafka::KafkaStatus;
use crate::metrics::Metrics;

/// Prometheus text exposition; open without a token.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(
    metrics: web::Data<Metrics>,
    kafka: Option<web::Data<KafkaStatus>>,
) -> Result<HttpResponse, ApiError> {
    if let Some(kafka) = kafka {
        kafka.publish();
    }
    let body = metrics.registry().render().map_err(ApiError::Metrics)?;
    Ok(HttpResponse::Ok()
        .content_type(service_kit::metrics::TEXT_FORMAT)
        .body(body))
}
