//! The OpenAPI 3 document of the service, generated from the handlers'
//! annotations and served at `GET /openapi.json`.

use actix_web::HttpResponse;
use domain::FieldError;
use serde::Serialize;
use service_kit::http::{BearerAuth, Problem};
use user_store::User;
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-info",
        description = "Creates, updates, reads and deletes users. Every user has a version, answered as its strong ETag; If-Match / If-None-Match make reads and writes conditional (RFC 9110), PATCH takes a JSON merge patch (RFC 7396), and an Idempotency-Key makes a POST safe to retry. Every error is application/problem+json (RFC 9457)."
    ),
    paths(
        routes::user::post_user,
        routes::user::patch_user,
        routes::user::get_user,
        routes::user::delete_user,
        routes::health::health,
        routes::health::ready,
        routes::metrics::metrics,
        openapi_json,
        service_kit::http::docs,
    ),
    components(schemas(User, UserChangeBody, UserPatchBody, Problem, FieldError, Status)),
    modifiers(&BearerAuth, &OptionalHeaders),
)]
pub struct ApiDoc;

/// A `POST /user` body (and a Kafka record's value). Absent fields stay as
/// stored; `""` or `null` clears them. Values are taken as sent (not trimmed).
/// Unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct UserChangeBody {
    /// Any letter case, hyphenated or 32 digits; generated (v4) when absent.
    #[schema(format = Uuid, nullable, pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    user_id: Option<String>,
    /// At most 150 characters.
    #[schema(max_length = 150, nullable, pattern = r"^[^\x00]*$")]
    first_name: Option<String>,
    /// At most 150 characters.
    #[schema(max_length = 150, nullable, pattern = r"^[^\x00]*$")]
    last_name: Option<String>,
    /// A valid address (dotted domain) of at most 254 characters, or `""`.
    #[schema(
        max_length = 254,
        nullable,
        pattern = r"^$|^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    )]
    email: Option<String>,
    #[schema(schema_with = phone_number_schema)]
    phone_number: Option<String>,
}

/// A `PATCH /user` body, a JSON merge patch (RFC 7396) with the merge rule of
/// `POST /user`: absent fields stay, `""` or `null` clear them. A `user_id`
/// member, if sent, must be the query's (an id cannot change). Unknown fields
/// are ignored.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct UserPatchBody {
    /// At most 150 characters.
    #[schema(max_length = 150, nullable, pattern = r"^[^\x00]*$")]
    first_name: Option<String>,
    /// At most 150 characters.
    #[schema(max_length = 150, nullable, pattern = r"^[^\x00]*$")]
    last_name: Option<String>,
    /// A valid address (dotted domain) of at most 254 characters, or `""`.
    #[schema(
        max_length = 254,
        nullable,
        pattern = r"^$|^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    )]
    email: Option<String>,
    #[schema(schema_with = phone_number_schema)]
    phone_number: Option<String>,
}

/// `null`, `""`, or 3-32 characters of digits (at least one) with an optional
/// leading `+` and separators (space - . ( )).
fn phone_number_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)))
        .item(string().max_length(Some(0)))
        .item(
            string()
                .min_length(Some(3))
                .max_length(Some(32))
                .pattern(Some(r"^\+?[ .()-]*[0-9][0-9 .()-]*$")),
        )
        .description(Some(
            "3-32 characters of digits (at least one) with an optional leading + and \
             separators (space - . ( )); \"\" or null clears",
        ))
        .build()
        .into()
}

/// Every header parameter (`If-Match`, `If-None-Match`, `Idempotency-Key`) is
/// optional but never `null`: utoipa can only say "optional" of an `Option`,
/// which it also makes nullable, so the structs declare plain strings and this
/// marks them optional.
struct OptionalHeaders;

impl Modify for OptionalHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == ParameterIn::Header {
                        parameter.required = Required::False;
                    }
                }
            }
        }
    }
}

/// A probe's answer.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Status {
    status: String,
}

/// This document. Open without a token.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
