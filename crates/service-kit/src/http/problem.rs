//! RFC 9457 problem details: the one error body every service answers with.

use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use domain::{FieldError, ParseError};
use serde::{Deserialize, Serialize};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An `application/problem+json` document. `type` is always `/problems/<slug>`,
/// a URI reference resolving against the service's own address, so clients can
/// switch on it; `errors` lists every failing field of a validation problem and
/// is omitted otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<slug>`, naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field, for validation problems only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of the type `/problems/<slug>`.
    pub fn typed(
        status: u16,
        slug: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A problem whose status says it all: its title is the status's reason
    /// phrase and its slug that phrase in kebab case (`/problems/not-found`).
    pub fn of_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = reason(status);
        let slug = if status.is_server_error() {
            "internal-error".to_owned()
        } else {
            title.to_ascii_lowercase().replace(' ', "-")
        };
        Self::typed(status.as_u16(), &slug, title, detail)
    }

    /// The answer to input that could not be parsed: 400 for malformed JSON,
    /// 422 for the wrong shape or invalid values, listing every field.
    pub fn from_parse_error(error: &ParseError) -> Self {
        match error {
            ParseError::Syntax(detail) => {
                Self::typed(400, "malformed-json", "Malformed JSON", detail.clone())
            }
            ParseError::Shape(_) | ParseError::Invalid(_) => Self {
                errors: error.field_errors(),
                ..Self::typed(
                    422,
                    "validation-error",
                    "Validation failed",
                    error.to_string(),
                )
            },
        }
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The answer carrying `problem`, with its status.
pub fn problem_response(problem: &Problem) -> HttpResponse {
    HttpResponse::build(problem.status_code())
        .content_type(PROBLEM_JSON)
        .json(problem)
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least one (a shorter
/// hint cannot be expressed).
pub fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// `ErrorHandlers` default handler: rewrites any error answer that is not yet a
/// problem document (actix's 404, 405, 413, query errors, ...) into one,
/// keeping its status and headers. Server errors are logged.
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
    let request = res.request();
    let detail = match res.response().error() {
        Some(error) if status.is_server_error() => {
            tracing::error!(error = %error, "unexpected error");
            "the request could not be handled".to_owned()
        }
        Some(error) => error.to_string(),
        None if status == StatusCode::NOT_FOUND => format!("no route for {}", request.path()),
        None if status == StatusCode::METHOD_NOT_ALLOWED => {
            format!("{} is not allowed on {}", request.method(), request.path())
        }
        None => reason(status).to_owned(),
    };
    let problem = Problem::of_status(status, detail);
    let (req, old) = res.into_parts();
    let mut new = problem_response(&problem);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<EitherBody<B, BoxBody>> =
        ServiceResponse::new(req, new).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// Lets a problem be returned from a handler as it is.
impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        problem_response(self)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problems_list_every_field_and_plain_ones_omit_errors() {
        let error = ParseError::Invalid(vec![
            FieldError::new("email", "must be a valid e-mail address"),
            FieldError::new("address.zip_code", "must be 1-20 characters"),
        ]);
        let body = serde_json::to_value(Problem::from_parse_error(&error)).unwrap();
        assert_eq!(body["status"], 422);
        assert_eq!(body["type"], "/problems/validation-error");
        assert_eq!(body["errors"][1]["field"], "address.zip_code");

        let body = serde_json::to_value(Problem::of_status(StatusCode::NOT_FOUND, "no")).unwrap();
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn a_plain_status_gets_a_slug_of_its_reason_phrase() {
        let kinds = [
            (StatusCode::NOT_FOUND, "/problems/not-found"),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "/problems/method-not-allowed",
            ),
            (StatusCode::PAYLOAD_TOO_LARGE, "/problems/payload-too-large"),
            (StatusCode::BAD_GATEWAY, "/problems/internal-error"),
        ];
        for (status, kind) in kinds {
            assert_eq!(Problem::of_status(status, "").kind, kind);
        }
    }

    #[test]
    fn malformed_json_is_a_400() {
        let problem = Problem::from_parse_error(&ParseError::Syntax("EOF".into()));
        assert_eq!(problem.status, 400);
        assert_eq!(problem.kind, "/problems/malformed-json");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after(Duration::from_secs(3)), "3");
    }
}
