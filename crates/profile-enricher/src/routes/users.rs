use actix_web::{HttpRequest, HttpResponse, web};
use domain::Profile;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::enrichment::EnrichmentClient;
use crate::error::ApiError;
use crate::limits::read_json_body;

#[derive(Serialize)]
struct Enriched<'a> {
    user: &'a Profile,
    enrichment: &'a RawValue,
}

/// Only the user id is recorded: the rest of a profile is personal data.
#[tracing::instrument(
    name = "enrich user",
    skip_all,
    fields(user_id = tracing::field::Empty)
)]
pub async fn enrich_user(
    request: HttpRequest,
    body: web::Payload,
    client: web::Data<EnrichmentClient>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(&request, body).await?;
    let profile = Profile::from_json(&body)?;
    tracing::Span::current().record("user_id", profile.user_id());
    let enrichment = client.enrich(&profile).await?;
    Ok(HttpResponse::Ok().json(Enriched {
        user: &profile,
        enrichment: &enrichment,
    }))
}
