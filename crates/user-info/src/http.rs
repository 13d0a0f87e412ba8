//! HTTP plumbing shared by every route: reading JSON bodies within limits, and
//! making sure that every error answer - ours or actix's own (404, 405, ...) - is
//! an `application/problem+json` document.

use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpRequest, HttpResponse};
use domain::{PROBLEM_JSON, Problem};
use futures::StreamExt;

use crate::error::{ApiError, reason};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads a JSON request body: 415 unless the content type is JSON (parameters
/// such as `charset` are fine), 413 past [`MAX_BODY_BYTES`], 408 when the body
/// does not arrive within `timeout`.
pub async fn read_json_body(
    req: &HttpRequest,
    mut payload: Payload,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(ApiError::BodyRead)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(problem.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(PROBLEM_JSON)
        .json(problem)
}

/// `ErrorHandlers` default handler: rewrites any error answer that is not yet a
/// problem document (actix's 404, 405, query errors, ...) into one, keeping its
/// status and headers.
pub fn render_problem<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let already = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if already {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = match res.response().error() {
        Some(error) => error.to_string(),
        None if status == actix_web::http::StatusCode::NOT_FOUND => {
            format!("no route for {}", res.request().path())
        }
        None if status == actix_web::http::StatusCode::METHOD_NOT_ALLOWED => format!(
            "{} is not allowed on {}",
            res.request().method(),
            res.request().path()
        ),
        None => reason(status).to_owned(),
    };
    let problem = Problem::new(status.as_u16(), reason(status), detail);
    let (req, old) = res.into_parts();
    let mut new = problem_response(&problem);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<EitherBody<B, BoxBody>> =
        ServiceResponse::new(req, new).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

/// Echoes the request id that `tracing-actix-web` assigned, so a client can quote
/// it and an operator can find the request's log lines.
pub fn request_id_header(req: &actix_web::dev::ServiceRequest) -> Option<HeaderValue> {
    use actix_web::HttpMessage;
    req.extensions()
        .get::<tracing_actix_web::RequestId>()
        .and_then(|id| HeaderValue::from_str(&id.to_string()).ok())
}
