use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::metrics::Metrics;

pub async fn metrics(metrics: web::Data<Metrics>) -> Result<HttpResponse, ApiError> {
    let body = metrics.render().map_err(ApiError::Metrics)?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(body))
}
