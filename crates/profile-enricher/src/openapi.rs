//! The OpenAPI 3 document of the service, generated from the handlers'
//! annotations and served at `GET /openapi.json`.

use actix_web::HttpResponse;
use domain::FieldError;
use serde::Serialize;
use service_kit::http::{BearerAuth, Problem};
use utoipa::{OpenApi, ToSchema};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "profile-enricher",
        description = "Validates user profiles and enriches them through an upstream API. Every error is application/problem+json (RFC 9457)."
    ),
    paths(
        routes::users::enrich_user,
        routes::dummy::dummy_enrich,
        routes::health::health,
        routes::health::ready,
        routes::metrics::metrics,
        openapi_json,
        service_kit::http::docs,
    ),
    components(schemas(
        ProfileBody,
        ProfileAnswer,
        AddressBody,
        routes::users::Enriched,
        routes::users::Accepted,
        routes::health::Ready,
        crate::enrichment::SourceStatus,
        routes::ReferenceEnrichment,
        routes::UserCategory,
        routes::health::Health,
        Problem,
        FieldError,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// A profile: the body of `POST /users` and `POST /dummy-enrich`, and the `user` of
/// the answer (normalised: e-mail trimmed and lower-cased, time in UTC; absent
/// optional fields answered as `null`). Unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProfileBody {
    /// 1-64 characters, not all whitespace.
    #[serde(rename = "userId")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    user_id: String,
    /// 3-32 letters, digits, `_`, `.` or `-`.
    #[schema(min_length = 3, max_length = 32, pattern = r"^[A-Za-z0-9_.-]*$")]
    username: String,
    /// Trimmed and lower-cased.
    #[schema(format = Email)]
    email: String,
    #[schema(minimum = 1, maximum = 129)]
    age: Option<u8>,
    address: Option<AddressBody>,
    /// An RFC 3339 timestamp; answered in UTC. (The pattern stops at day 28 so
    /// that every value it describes is a real date; later days are accepted too.)
    #[serde(rename = "signupTs")]
    #[schema(format = DateTime, pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")]
    signup_ts: Option<String>,
}

/// The `user` of an answer: the profile as validated and normalised (text
/// e-mail trimmed and lower-cased, `signupTs` in UTC, absent optional fields `null`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProfileAnswer {
    #[serde(rename = "userId")]
    #[schema(min_length = 1, max_length = 64)]
    user_id: String,
    #[schema(min_length = 3, max_length = 32, pattern = r"^[A-Za-z0-9_.-]*$")]
    username: String,
    #[schema(format = Email)]
    email: String,
    #[schema(minimum = 1, maximum = 129)]
    age: Option<u8>,
    address: Option<AddressBody>,
    #[serde(rename = "signupTs")]
    #[schema(format = DateTime)]
    signup_ts: Option<String>,
}

/// A postal address. The postal code may be sent as `zip_code` or `postalCode` and
/// is answered under the same key (with both, `zip_code` is kept); without one, the
/// answer has `"zip_code": null`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct AddressBody {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    street: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    city: String,
    /// Blank means absent.
    #[schema(max_length = 100, pattern = r"^[^\x00]*$")]
    state: Option<String>,
    /// 1-20 letters, digits, spaces or `-`.
    #[schema(min_length = 1, max_length = 20, pattern = "^[A-Za-z0-9 -]*$")]
    zip_code: Option<String>,
    /// The same as `zip_code`, under the other accepted name.
    #[serde(rename = "postalCode")]
    #[schema(min_length = 1, max_length = 20, pattern = "^[A-Za-z0-9 -]*$")]
    postal_code: Option<String>,
}

/// This document. Open without a token.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
