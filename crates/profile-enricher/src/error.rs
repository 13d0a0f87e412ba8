//! Every failure the service answers, mapped to its status and problem document in
//! one place.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use domain::{PROBLEM_JSON, ParseError, Problem};

use crate::enrichment::EnrichmentError;
use crate::limits::{MAX_BODY_BYTES, MAX_HEAD_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("the body could not be read")]
    BodyRead(#[source] PayloadError),
    #[error("the request head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this path only accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error(transparent)]
    Enrichment(#[from] EnrichmentError),
    #[error("the metrics could not be rendered")]
    Metrics(#[source] prometheus::Error),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(ParseError::Syntax(_)) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge | ApiError::BodyRead(PayloadError::Overflow) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Enrichment(error) => enrichment_status(error),
            ApiError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let problem = match self {
            ApiError::Invalid(error) => Problem::from_parse_error(error),
            ApiError::UnsupportedMediaType => typed(status, "unsupported-media-type", self),
            ApiError::PayloadTooLarge | ApiError::BodyRead(PayloadError::Overflow) => {
                typed(status, "payload-too-large", self)
            }
            ApiError::BodyTimeout => typed(status, "request-timeout", self),
            ApiError::BodyRead(_) => typed(status, "unreadable-body", self),
            ApiError::HeadTooLarge => typed(status, "request-head-too-large", self),
            ApiError::Unauthorized => typed(status, "unauthorized", self),
            ApiError::MethodNotAllowed { .. } => typed(status, "method-not-allowed", self),
            ApiError::Enrichment(error) => typed(status, enrichment_slug(error), self),
            ApiError::Metrics(_) => {
                log_unexpected(self);
                typed(status, "internal-error", self)
            }
        };
        let mut response = problem_response(status);
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Enrichment(error) if error.retry_after().is_some() => {
                let wait = error.retry_after().unwrap_or_default();
                // Whole seconds, at least one: a shorter hint is not expressible.
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                response.insert_header((header::RETRY_AFTER, seconds));
            }
            ApiError::Enrichment(EnrichmentError::Encode(_)) => log_unexpected(self),
            _ => {}
        }
        response.body(to_json(&problem))
    }
}

fn enrichment_status(error: &EnrichmentError) -> StatusCode {
    match error {
        EnrichmentError::Busy { .. } | EnrichmentError::CircuitOpen { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        EnrichmentError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        EnrichmentError::RetriesExhausted { .. }
        | EnrichmentError::RetryBudgetExhausted { .. }
        | EnrichmentError::Rejected { .. }
        | EnrichmentError::NotAnObject
        | EnrichmentError::AnswerTooLarge
        | EnrichmentError::Unrecoverable(_) => StatusCode::BAD_GATEWAY,
        EnrichmentError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        EnrichmentError::Source { error, .. } => enrichment_status(error),
    }
}

fn enrichment_slug(error: &EnrichmentError) -> &'static str {
    match error {
        EnrichmentError::Busy { .. } => "upstream-busy",
        EnrichmentError::CircuitOpen { .. } => "upstream-circuit-open",
        EnrichmentError::DeadlineExceeded { .. } => "upstream-deadline-exceeded",
        EnrichmentError::RetriesExhausted { .. } | EnrichmentError::RetryBudgetExhausted { .. } => {
            "upstream-retries-exhausted"
        }
        EnrichmentError::Rejected { .. } => "upstream-rejected",
        EnrichmentError::NotAnObject | EnrichmentError::AnswerTooLarge => "upstream-invalid-answer",
        EnrichmentError::Unrecoverable(_) => "upstream-unreachable",
        EnrichmentError::Encode(_) => "internal-error",
        EnrichmentError::Source { error, .. } => enrichment_slug(error),
    }
}

fn typed(status: StatusCode, slug: &str, error: &ApiError) -> Problem {
    Problem::typed(status.as_u16(), slug, reason(status), error.to_string())
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

fn problem_response(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
    response
}

fn to_json(problem: &Problem) -> String {
    // A Problem is strings and numbers only; serialising it cannot fail.
    serde_json::to_string(problem).unwrap_or_default()
}

/// Unexpected errors are logged with their whole cause chain; the client only
/// learns that something went wrong.
fn log_unexpected(error: &(dyn std::error::Error + 'static)) {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "unexpected error");
}

/// Rewrites every error answer that is not already problem+json - actix's own 404,
/// 405 and 413 among them - into one, keeping status and headers.
pub fn problem_for_any_error<B: MessageBody>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "there is no resource at this path"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this path does not accept this method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload-too-large", "the body is larger than 65536 bytes")
        }
        _ if status.is_server_error() => ("internal-error", "the request could not be handled"),
        _ => ("bad-request", "the request could not be handled"),
    };
    if status.is_server_error() {
        if let Some(error) = response.response().error() {
            tracing::error!(error = %error, "unexpected error");
        }
    }
    let problem = Problem::typed(status.as_u16(), slug, reason(status), detail);
    let (request, original) = response.into_parts();
    let mut rewritten = problem_response(status);
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.append_header((name.clone(), value.clone()));
        }
    }
    let rewritten = rewritten.body(to_json(&problem));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, rewritten).map_into_right_body::<B>(),
    ))
}
