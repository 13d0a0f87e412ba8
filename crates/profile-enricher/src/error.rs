//! Every failure the service answers, mapped to its status and problem document in
//! one place.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use domain::ParseError;
use service_kit::error_chain;
use service_kit::http::{Problem, problem_response, retry_after};

use crate::enrichment::EnrichmentError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error("this path only accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error(transparent)]
    Enrichment(#[from] EnrichmentError),
    /// `Prefer: respond-async`: the broker did not acknowledge the profile within
    /// `kafka::MESSAGE_TIMEOUT`, or the producer's buffer is full.
    #[error("the profile could not be queued for asynchronous enrichment: {0}")]
    Queue(#[source] rdkafka::error::KafkaError),
    #[error("the metrics could not be rendered")]
    Metrics(#[source] prometheus::Error),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(ParseError::Syntax(_)) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Enrichment(error) => enrichment_status(error),
            ApiError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let problem = match self {
            ApiError::Invalid(error) => Problem::from_parse_error(error),
            ApiError::MethodNotAllowed { .. } => typed(status, "method-not-allowed", self),
            ApiError::Enrichment(error) => typed(status, enrichment_slug(error), self),
            ApiError::Queue(_) => typed(status, "queue-unavailable", self),
            ApiError::Metrics(_) => typed(status, "internal-error", self),
        };
        if status.is_server_error() && matches!(problem.kind.as_str(), "/problems/internal-error") {
            // Unexpected: logged with the whole cause chain; the client only
            // learns that something went wrong.
            tracing::error!(error = %error_chain(self), "unexpected error");
        }
        let mut response = problem_response(&problem);
        let headers = response.headers_mut();
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
            }
            ApiError::Queue(error) => {
                tracing::warn!(%error, "cannot queue a profile");
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            ApiError::Enrichment(error) if error.retry_after().is_some() => {
                let wait = error.retry_after().unwrap_or_default();
                headers.insert(header::RETRY_AFTER, retry_after(wait));
            }
            _ => {}
        }
        response
    }
}

fn enrichment_status(error: &EnrichmentError) -> StatusCode {
    match error {
        EnrichmentError::Busy { .. }
        | EnrichmentError::CircuitOpen { .. }
        | EnrichmentError::RateLimited { .. }
        | EnrichmentError::Paused { .. } => StatusCode::SERVICE_UNAVAILABLE,
        EnrichmentError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        EnrichmentError::RetriesExhausted { .. }
        | EnrichmentError::RetryBudgetExhausted { .. }
        | EnrichmentError::Rejected { .. }
        | EnrichmentError::Unauthorized { .. }
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
        EnrichmentError::Unauthorized { .. } => "upstream-unauthorized",
        EnrichmentError::RateLimited { .. } => "upstream-rate-limited",
        EnrichmentError::Paused { .. } => "upstream-paused",
        EnrichmentError::NotAnObject | EnrichmentError::AnswerTooLarge => "upstream-invalid-answer",
        EnrichmentError::Unrecoverable(_) => "upstream-unreachable",
        EnrichmentError::Encode(_) => "internal-error",
        EnrichmentError::Source { error, .. } => enrichment_slug(error),
    }
}

fn typed(status: StatusCode, slug: &str, error: &ApiError) -> Problem {
    Problem::typed(
        status.as_u16(),
        slug,
        status.canonical_reason().unwrap_or("Error"),
        error.to_string(),
    )
}
