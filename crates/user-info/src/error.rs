//! The service's one error type, mapped to status codes and problem documents in
//! one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{ParseError, Problem};

use crate::http::problem_response;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("the body could not be read")]
    BodyRead(#[source] actix_web::error::PayloadError),
    #[error("{0}")]
    BadQuery(&'static str),
    #[error("no user with this user_id")]
    UserNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Parse(ParseError::Syntax(_))
            | ApiError::BadQuery(_)
            | ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::Parse(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UserNotFound => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code().as_u16();
        let problem = match self {
            ApiError::Parse(error) => Problem::from_parse_error(error),
            ApiError::Store(error) => {
                // The cause chain can be long; it is logged here once, never answered.
                tracing::error!(error = error_chain(error), "database error");
                let mut problem = Problem::typed(
                    status,
                    "database-unavailable",
                    "Database unavailable",
                    "the database cannot be reached right now; retry later",
                );
                if matches!(error, StoreError::NotReady) {
                    problem.detail = error.to_string();
                }
                problem
            }
            ApiError::UserNotFound => {
                Problem::typed(status, "user-not-found", "User not found", self.to_string())
            }
            other => Problem::new(status, reason(self.status_code()), other.to_string()),
        };
        let mut response = problem_response(&problem);
        if status == 503 {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// An error and its causes on one line, for logs (`a: b: c`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}
