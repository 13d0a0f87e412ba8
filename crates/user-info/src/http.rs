//! HTTP plumbing shared by every route: reading JSON bodies within limits, and
//! making sure that every error answer - ours or actix's own (404, 405, ...) - is
//! an `application/problem+json` document.

use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpRequest, HttpResponse};
use domain::{PROBLEM_JSON, Problem};
use futures::StreamExt;

use crate::error::{ApiError, reason};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Request heads (request line and headers) larger than this are refused with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

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

/// Middleware: answers 431 to a request whose head exceeds [`MAX_HEAD_BYTES`]
/// (actix itself only refuses far larger ones).
pub async fn limit_head_size<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let head = req.method().as_str().len()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > MAX_HEAD_BYTES {
        let problem = Problem::new(
            431,
            "Request Header Fields Too Large",
            format!("the request head exceeds {MAX_HEAD_BYTES} bytes"),
        );
        return Ok(req
            .into_response(problem_response(&problem))
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The bearer tokens of `API_TOKENS`; none means authentication is off.
/// Kept as SHA-256 digests so that comparing them takes the same time whatever
/// the presented token (its length included) and the tokens never sit in logs.
#[derive(Clone, Default)]
pub struct ApiTokens(Vec<[u8; 32]>);

impl ApiTokens {
    /// Parses a comma-separated list; whitespace around each token is ignored.
    pub fn parse(list: Option<&str>) -> Self {
        Self(
            list.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(digest)
                .collect(),
        )
    }

    pub fn is_enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether an `Authorization` header carries one of the tokens.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(token) = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| digest(token.trim()))
        else {
            return false;
        };
        use subtle::ConstantTimeEq;
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(&token)
            })
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Paths open without a token: probes, metrics and the API description.
pub const OPEN_PATHS: [&str; 4] = ["/health", "/ready", "/metrics", "/openapi.json"];

/// Middleware: with `API_TOKENS` set, every path but [`OPEN_PATHS`] needs
/// `Authorization: Bearer <token>`; otherwise 401 with `WWW-Authenticate`.
pub async fn require_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let tokens = req.app_data::<actix_web::web::Data<ApiTokens>>().cloned();
    let open = OPEN_PATHS.contains(&req.path());
    if let Some(tokens) = tokens.filter(|tokens| tokens.is_enabled() && !open) {
        if !tokens.accepts(req.headers().get(header::AUTHORIZATION)) {
            let problem = Problem::typed(
                401,
                "unauthorized",
                "Unauthorized",
                "a valid bearer token is required",
            );
            let mut response = problem_response(&problem);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_the_scheme_is_case_insensitive() {
        let tokens = ApiTokens::parse(Some(" alpha , beta,, "));
        assert!(tokens.is_enabled());
        assert!(tokens.accepts(Some(&HeaderValue::from_static("Bearer alpha"))));
        assert!(tokens.accepts(Some(&HeaderValue::from_static("bEaReR beta"))));
        assert!(!tokens.accepts(Some(&HeaderValue::from_static("Bearer gamma"))));
        assert!(!tokens.accepts(Some(&HeaderValue::from_static("Basic alpha"))));
        assert!(!tokens.accepts(None));
    }

    #[test]
    fn an_empty_list_disables_authentication() {
        assert!(!ApiTokens::parse(Some(" , ")).is_enabled());
        assert!(!ApiTokens::parse(None).is_enabled());
    }
}
