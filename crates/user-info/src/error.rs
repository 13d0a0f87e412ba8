//! The service's one error type, mapped to status codes and problem documents in
//! one place.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use domain::ParseError;
use service_kit::error_chain;
use service_kit::http::{Problem, problem_response, retry_after};
use user_store::StoreError;

/// How long a client is asked to wait after a 503 (`Retry-After`).
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{0}")]
    BadQuery(&'static str),
    #[error("no user with this user_id")]
    UserNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Parse(error) => Problem::from_parse_error(error),
            ApiError::BadQuery(detail) => Problem::typed(400, "bad-query", "Bad Request", *detail),
            ApiError::UserNotFound => {
                Problem::typed(404, "user-not-found", "User not found", self.to_string())
            }
            ApiError::Store(error) => {
                // The cause chain can be long; it is logged here once, never answered.
                tracing::error!(error = error_chain(error), "database error");
                let detail = match error {
                    StoreError::NotReady => error.to_string(),
                    _ => "the database cannot be reached right now; retry later".to_owned(),
                };
                Problem::typed(503, "database-unavailable", "Database unavailable", detail)
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Parse(ParseError::Syntax(_)) | ApiError::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Parse(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UserNotFound => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = problem_response(&self.problem());
        if matches!(self, ApiError::Store(_)) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after(DATABASE_RETRY_AFTER));
        }
        response
    }
}
