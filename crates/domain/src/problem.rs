//! RFC 9457 problem details: the one error body every service answers with.

use serde::{Deserialize, Serialize};

use crate::json::{FieldError, ParseError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An `application/problem+json` document. `errors` lists every failing field of
/// a validation problem and is omitted otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the kind of problem (`about:blank` for a plain status).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field, for validation problems only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem whose type is `about:blank`: the status says it all.
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A problem of a named type, `/problems/<slug>` (a URI reference that
    /// resolves against the service's own address).
    pub fn typed(
        status: u16,
        slug: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            ..Self::new(status, title, detail)
        }
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
        assert_eq!(body["errors"][1]["field"], "address.zip_code");

        let body = serde_json::to_value(Problem::new(404, "Not Found", "no such user")).unwrap();
        assert_eq!(body["type"], "about:blank");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn malformed_json_is_a_400() {
        let problem = Problem::from_parse_error(&ParseError::Syntax("EOF".into()));
        assert_eq!(problem.status, 400);
    }
}
