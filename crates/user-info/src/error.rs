//! The service's one error type, mapped to status codes and problem documents in
//! one place.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use domain::ParseError;
use service_kit::error_chain;
use service_kit::http::{Problem, problem_response, retry_after};
use user_store::{ConstraintRefusal, StoreError};

/// How long a client is asked to wait after a 503 (`Retry-After`).
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{0}")]
    BadQuery(&'static str),
    #[error("{0}")]
    BadHeader(String),
    #[error("no user with this user_id")]
    UserNotFound,
    /// `If-Match` / `If-None-Match` do not hold for the stored version
    /// (`None`: no such user). Names the version, never the values.
    #[error("{}", precondition_detail(*.current))]
    PreconditionFailed { current: Option<i64> },
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    KeyInFlight,
    #[error("this Idempotency-Key was first used with another body")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the metrics could not be rendered")]
    Metrics(#[source] prometheus::Error),
}

fn precondition_detail(current: Option<i64>) -> String {
    match current {
        Some(version) => format!(
            "the precondition does not hold: the user's current version is {version} (ETag \"{version}\")"
        ),
        None => "the precondition does not hold: there is no user with this user_id".to_owned(),
    }
}

impl ApiError {
    /// The problem document of this error (also kept as an idempotent answer).
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Parse(error) => Problem::from_parse_error(error),
            ApiError::BadQuery(detail) => Problem::typed(400, "bad-query", "Bad Request", *detail),
            ApiError::BadHeader(detail) => {
                Problem::typed(400, "bad-header", "Bad Request", detail.clone())
            }
            ApiError::UserNotFound => {
                Problem::typed(404, "user-not-found", "User not found", self.to_string())
            }
            ApiError::PreconditionFailed { .. } => Problem::typed(
                412,
                "precondition-failed",
                "Precondition failed",
                self.to_string(),
            ),
            ApiError::KeyInFlight => Problem::typed(
                409,
                "idempotency-key-in-flight",
                "Request in progress",
                self.to_string(),
            ),
            ApiError::KeyReused => Problem::typed(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                self.to_string(),
            ),
            ApiError::Store(error) => match error.constraint_refusal() {
                Some(refusal) => refused(refusal),
                None => {
                    // The cause chain can be long; it is logged here once, never answered.
                    tracing::error!(error = error_chain(error), "database error");
                    let detail = match error {
                        StoreError::NotReady => error.to_string(),
                        _ => "the database cannot be reached right now; retry later".to_owned(),
                    };
                    Problem::typed(503, "database-unavailable", "Database unavailable", detail)
                }
            },
            ApiError::Metrics(_) => {
                // Unexpected: logged with its cause chain, answered opaquely.
                tracing::error!(error = error_chain(self), "unexpected error");
                Problem::typed(
                    500,
                    "internal-error",
                    "Internal Server Error",
                    "something went wrong on our side",
                )
            }
        }
    }
}

/// A constraint's refusal: 409 when the data conflicts with other rows, 422 when
/// it is refused in itself; naming the constraint (a schema name), never a value.
fn refused(refusal: ConstraintRefusal) -> Problem {
    let constraint = refusal.constraint.as_deref().unwrap_or("(unnamed)");
    tracing::warn!(
        constraint,
        kind = refusal.kind,
        "the database refused a change"
    );
    let detail = format!(
        "the database refused the change: it breaks the {} constraint `{constraint}`",
        refusal.kind
    );
    if refusal.conflict {
        Problem::typed(409, "constraint-conflict", "Conflict", detail)
    } else {
        Problem::typed(422, "constraint-violated", "Unprocessable Content", detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Parse(ParseError::Syntax(_))
            | ApiError::BadQuery(_)
            | ApiError::BadHeader(_) => StatusCode::BAD_REQUEST,
            ApiError::Parse(_) | ApiError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UserNotFound => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::KeyInFlight => StatusCode::CONFLICT,
            ApiError::Store(error) => match error.constraint_refusal() {
                Some(refusal) if refusal.conflict => StatusCode::CONFLICT,
                Some(_) => StatusCode::UNPROCESSABLE_ENTITY,
                None => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = problem_response(&self.problem());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE
            || matches!(self, ApiError::KeyInFlight)
        {
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after(DATABASE_RETRY_AFTER));
        }
        response
    }
}
