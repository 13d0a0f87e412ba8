//! Limits on what a client may send: the request head, the body's type, size and
//! pace. Past a limit the client gets a problem document, never a stalled worker.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpMessage, HttpRequest, ResponseError, mime};
use futures::StreamExt;

use crate::error::ApiError;

/// SPEC: bodies over 64 KiB are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// SPEC: request heads over 16 KiB are refused with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a body may take to arrive; set from `HTTP_BODY_TIMEOUT`.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Reads a JSON body: 415 unless it is declared `application/json` (parameters such
/// as `charset` are fine), 413 past [`MAX_BODY_BYTES`], 408 if it arrives too slowly.
pub async fn read_json_body(
    request: &HttpRequest,
    mut payload: Payload,
) -> Result<Bytes, ApiError> {
    if !is_json(request) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge);
    }
    let timeout = request
        .app_data::<BodyTimeout>()
        .map_or(Duration::from_secs(30), |timeout| timeout.0);
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(ApiError::BodyRead)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

fn is_json(request: &HttpRequest) -> bool {
    matches!(
        request.mime_type(),
        Ok(Some(media_type))
            if media_type.type_() == mime::APPLICATION
                && media_type.subtype() == mime::JSON
                && media_type.suffix().is_none()
    )
}

/// Middleware answering 431 to a request whose head (request line and headers,
/// as sent) is larger than [`MAX_HEAD_BYTES`].
pub async fn limit_request_head(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if head_size(&request) > MAX_HEAD_BYTES {
        let response = ApiError::HeadTooLarge.error_response();
        return Ok(request.into_response(response).map_into_right_body());
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn head_size(request: &ServiceRequest) -> usize {
    // "METHOD URI HTTP/1.1\r\n", then "name: value\r\n" per header, then "\r\n".
    let request_line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + headers + 2
}
