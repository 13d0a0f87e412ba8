use actix_web::{HttpRequest, HttpResponse, web};
use domain::Profile;
use serde::Serialize;
use serde_json::value::RawValue;
use service_kit::http::{JsonBody, Problem};
use utoipa::ToSchema;

use crate::enrichment::{Enrichment, EnrichmentClient, SourceStatuses};
use crate::error::ApiError;
use crate::kafka::Intake;
use crate::openapi::ProfileBody;

/// The answer of `POST /users`.
#[derive(Serialize, ToSchema)]
pub struct Enriched<'a> {
    /// The normalised profile, with the client's field names; also the body sent
    /// upstream.
    #[schema(value_type = crate::openapi::ProfileAnswer)]
    user: &'a Profile,
    /// The upstream's JSON object, verbatim; with several sources
    /// (`ENRICHMENT_SOURCES`), their objects merged in declared order, a key set by
    /// an earlier source kept.
    #[schema(value_type = Object)]
    enrichment: &'a RawValue,
    /// With several sources (or one that was `not_found` or `skipped`): how each
    /// went, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, crate::enrichment::SourceStatus>>)]
    sources: Option<&'a SourceStatuses>,
}

/// Validates a profile and enriches it through the upstream API (or every source
/// of `ENRICHMENT_SOURCES`, at once), within `EXTERNAL_API_DEADLINE`, retrying
/// transient failures.
#[utoipa::path(post, path = "/users", tag = "enrichment",
    request_body(content = ProfileBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The normalised profile and the upstream's enrichment", body = Enriched),
        (status = 202, description = "With `Prefer: respond-async` while the Kafka mode is on (ENRICHER_INPUT_TOPIC): the validated profile is on the input topic (acknowledged by the broker); its answer will be on ENRICHER_OUTPUT_TOPIC, keyed by userId", body = Accepted,
            headers(("Preference-Applied" = String, description = "`respond-async`"))),
        (status = 400, description = "Malformed JSON, or a body that could not be read", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape or invalid fields, every one listed", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "A required source refused the request or the enricher's credentials (401/403: `upstream-unauthorized`), answered something other than a JSON object, or still failed after every retry (or the retry budget)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A required source had no slot free within MAX_CONCURRENCY_WAIT, its circuit breaker is open, or its rate limit (`upstream-rate-limited`) or a Retry-After pause it asked for (`upstream-paused`) has no turn before the deadline; with `Prefer: respond-async` (`queue-unavailable`), the broker did not acknowledge the profile within 10 s, or the producer's buffer is full", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 504, description = "EXTERNAL_API_DEADLINE passed before a required source answered, or an upstream's Retry-After would pass it", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
// Only the user id is recorded: the rest of a profile is personal data.
#[tracing::instrument(
    name = "enrich user",
    skip_all,
    fields(user_id = tracing::field::Empty)
)]
pub async fn enrich_user(
    request: HttpRequest,
    JsonBody(body): JsonBody,
    client: web::Data<EnrichmentClient>,
    intake: Option<web::Data<Intake>>,
) -> Result<HttpResponse, ApiError> {
    let profile = Profile::from_json(&body)?;
    tracing::Span::current().record("user_id", profile.user_id());
    if let Some(intake) = intake.filter(|_| prefers_respond_async(&request)) {
        intake
            .send(profile.user_id(), &body)
            .await
            .map_err(ApiError::Queue)?;
        return Ok(HttpResponse::Accepted()
            .insert_header(("Preference-Applied", "respond-async"))
            .json(Accepted {
                user_id: profile.user_id(),
                topic: intake.topic(),
            }));
    }
    let enrichment = client.enrich(&profile).await?;
    Ok(HttpResponse::Ok().json(Enriched::new(&profile, &enrichment)))
}

/// The answer of `POST /users` with `Prefer: respond-async`.
#[derive(Serialize, ToSchema)]
pub struct Accepted<'a> {
    /// The key of the record on the input topic, and of its answer on the output topic.
    #[serde(rename = "userId")]
    user_id: &'a str,
    /// The input topic that holds the profile.
    topic: &'a str,
}

impl<'a> Enriched<'a> {
    pub fn new(user: &'a Profile, enrichment: &'a Enrichment) -> Self {
        Self {
            user,
            enrichment: &enrichment.object,
            sources: enrichment.sources.as_ref(),
        }
    }
}

/// The `POST /users` 200 body, byte for byte, for the Kafka path.
pub fn answer_body(user: &Profile, enrichment: &Enrichment) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Enriched::new(user, enrichment))
}

/// RFC 7240: `Prefer` may be repeated and list several preferences, each
/// possibly with parameters; tokens are case-insensitive.
fn prefers_respond_async(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.split(';').next())
        .any(|token| token.trim().eq_ignore_ascii_case("respond-async"))
}
