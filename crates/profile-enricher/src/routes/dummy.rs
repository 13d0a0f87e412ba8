//! The built-in reference enrichment API, so the service works with no other process.
//!
//! Every value is derived from the profile alone, with SHA-256 rather than std's
//! randomly seeded hasher: the same profile gets the same answer in any process,
//! after any restart.

use actix_web::HttpResponse;
use domain::Profile;
use serde::Serialize;
use service_kit::http::{JsonBody, Problem};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::ApiError;

/// The answer of `POST /dummy-enrich`.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct ReferenceEnrichment<'a> {
    /// In `0..=1`, four decimals.
    #[schema(minimum = 0, maximum = 1)]
    pub risk_score: f64,
    /// Age 18 or over; false when the age is absent.
    pub is_adult: bool,
    /// In `0..=9999`, from a stable hash of the postal code; null without one.
    #[schema(minimum = 0, maximum = 9999)]
    pub postal_hash: Option<u16>,
    pub user_category: UserCategory,
    /// The profile's `userId`.
    pub source_user_id: &'a str,
}

/// `high_value` above age 25, `standard` otherwise (also without an age).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserCategory {
    HighValue,
    Standard,
}

pub fn reference_enrichment(profile: &Profile) -> ReferenceEnrichment<'_> {
    let age = profile.age();
    let risk = leading_u64(&format!("risk-score:{}", profile.user_id()));
    ReferenceEnrichment {
        risk_score: (risk as f64 / u64::MAX as f64 * 10_000.0).round() / 10_000.0,
        is_adult: age.is_some_and(|age| age >= 18),
        postal_hash: profile
            .postal_code()
            .map(|code| (leading_u64(code) % 10_000) as u16),
        user_category: if age.is_some_and(|age| age > 25) {
            UserCategory::HighValue
        } else {
            UserCategory::Standard
        },
        source_user_id: profile.user_id(),
    }
}

/// The first eight bytes of the SHA-256 digest, big-endian.
fn leading_u64(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut leading = [0u8; 8];
    leading.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(leading)
}

/// Accepts exactly what `POST /users` accepts, so the service can be its own upstream.
#[utoipa::path(post, path = "/dummy-enrich", tag = "enrichment",
    request_body(content = crate::openapi::ProfileBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The reference enrichment, derived deterministically from the profile", body = ReferenceEnrichment),
        (status = 400, description = "Malformed JSON, or a body that could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape or invalid fields, every one listed", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(
    name = "reference enrichment",
    skip_all,
    fields(user_id = tracing::field::Empty)
)]
pub async fn dummy_enrich(JsonBody(body): JsonBody) -> Result<HttpResponse, ApiError> {
    let profile = Profile::from_json(&body)?;
    tracing::Span::current().record("user_id", profile.user_id());
    Ok(HttpResponse::Ok().json(reference_enrichment(&profile)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> Profile {
        Profile::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn the_readme_example_is_an_adult_high_value_user() {
        let profile = profile(
            r#"{"userId":"12345","username":"testuser","email":"testuser@example.com","age":30,
            "address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"}}"#,
        );
        let enrichment = reference_enrichment(&profile);
        assert!(enrichment.is_adult);
        assert_eq!(enrichment.user_category, UserCategory::HighValue);
        assert_eq!(enrichment.source_user_id, "12345");
        assert!((0.0..=1.0).contains(&enrichment.risk_score));
        assert!(enrichment.postal_hash.is_some_and(|hash| hash <= 9999));
        assert_eq!(enrichment, reference_enrichment(&profile));
    }

    #[test]
    fn age_decides_adulthood_and_category() {
        let at = |age: &str| {
            let json = format!(r#"{{"userId":"u1","username":"abc","email":"a@b.co"{age}}}"#);
            let p = profile(&json);
            let e = reference_enrichment(&p);
            (e.is_adult, e.user_category)
        };
        assert_eq!(at(""), (false, UserCategory::Standard));
        assert_eq!(at(r#","age":17"#), (false, UserCategory::Standard));
        assert_eq!(at(r#","age":18"#), (true, UserCategory::Standard));
        assert_eq!(at(r#","age":25"#), (true, UserCategory::Standard));
        assert_eq!(at(r#","age":26"#), (true, UserCategory::HighValue));
    }

    #[test]
    fn postal_hash_is_null_without_a_postal_code_and_fixed_with_one() {
        let without = profile(r#"{"userId":"u1","username":"abc","email":"a@b.co"}"#);
        assert_eq!(reference_enrichment(&without).postal_hash, None);
    }

    #[test]
    fn answers_are_pinned_because_clients_may_have_stored_them() {
        let p = profile(
            r#"{"userId":"12345","username":"abc","email":"a@b.co",
            "address":{"street":"1 Main St","city":"Town","postalCode":"12345"}}"#,
        );
        let enrichment = reference_enrichment(&p);
        assert_eq!(enrichment.postal_hash, Some(4506));
        assert_eq!(enrichment.risk_score, 0.4196);
        assert_eq!(
            serde_json::to_value(&enrichment).unwrap()["user_category"],
            "standard"
        );
    }
}
