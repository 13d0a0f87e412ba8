//! The one middleware every app wraps itself in.

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use super::auth::{ApiTokens, OPEN_PATHS};
use super::problem::{Problem, problem_response};

/// Request heads (request line and headers, as sent) larger than this are
/// refused with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// In order: 431 for a head over [`MAX_HEAD_BYTES`]; 401 (with
/// `WWW-Authenticate: Bearer`) when the app has [`ApiTokens`] in its data, they
/// are enabled, the path is not one of [`OPEN_PATHS`] and the request carries
/// none of them; then the request itself. Every answer carries the request id
/// that `tracing-actix-web` gave the request, as `x-request-id`, so a client
/// can quote it and an operator find its log lines.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let id = req
        .extensions()
        .get::<tracing_actix_web::RequestId>()
        .and_then(|id| HeaderValue::from_str(&id.to_string()).ok());
    let refusal = if head_size(&req) > MAX_HEAD_BYTES {
        Some(Problem::typed(
            431,
            "request-head-too-large",
            "Request Header Fields Too Large",
            format!("the request head is larger than {MAX_HEAD_BYTES} bytes"),
        ))
    } else if !authorised(&req) {
        Some(Problem::typed(
            401,
            "unauthorized",
            "Unauthorized",
            "a valid bearer token is required",
        ))
    } else {
        None
    };
    let mut res = match refusal {
        Some(problem) => {
            let mut response = problem_response(&problem);
            if problem.status == 401 {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            req.into_response(response).map_into_right_body()
        }
        None => next.call(req).await?.map_into_left_body(),
    };
    if let Some(id) = id {
        res.headers_mut().insert(X_REQUEST_ID, id);
    }
    Ok(res)
}

fn authorised(req: &ServiceRequest) -> bool {
    match req.app_data::<web::Data<ApiTokens>>() {
        Some(tokens) if tokens.is_enabled() && !OPEN_PATHS.contains(&req.path()) => {
            tokens.accepts(req.headers().get(header::AUTHORIZATION))
        }
        _ => true,
    }
}

/// The size of the request head as a client sent it over HTTP/1.1:
/// `METHOD SP target SP HTTP/1.1 CRLF`, `name: value CRLF` per header, `CRLF`.
pub fn head_size(req: &ServiceRequest) -> usize {
    let target = req.uri().path_and_query().map_or_else(
        || req.uri().to_string().len(),
        |target| target.as_str().len(),
    );
    let request_line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    request_line + headers + "\r\n".len()
}
