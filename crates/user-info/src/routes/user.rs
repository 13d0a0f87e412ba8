use actix_web::{HttpResponse, web};
use domain::{UserChange, parse_user_id};
use serde::Deserialize;
use service_kit::http::{JsonBody, Problem};
use user_store::User;
use uuid::Uuid;

use crate::error::ApiError;
use crate::openapi::UserChangeBody;
use crate::startup::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserIdQuery {
    /// The user's id, a UUID in any letter case.
    #[param(required = true, format = Uuid, pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")]
    user_id: Option<String>,
}

impl UserIdQuery {
    fn parse(&self) -> Result<Uuid, ApiError> {
        let text = self.user_id.as_deref().ok_or(ApiError::BadQuery(
            "the query parameter user_id is required",
        ))?;
        parse_user_id(text).ok_or(ApiError::BadQuery("user_id must be a UUID"))
    }
}

/// Creates the user (201) or merges the body into it (200): absent fields stay,
/// `""`/`null` clear. With a `user_id` the call is idempotent, so a client can
/// safely retry a 503.
#[utoipa::path(post, path = "/user", tag = "users",
    request_body(content = UserChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated: the whole stored user", body = User),
        (status = 201, description = "Created: the whole stored user", body = User),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape or invalid fields, every one listed", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "post_user", skip_all, fields(user_id, created))]
pub async fn post_user(
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let change = UserChange::from_json(&body)?;
    let id = change.user_id.unwrap_or_else(Uuid::new_v4);
    let span = tracing::Span::current();
    span.record("user_id", tracing::field::display(id));
    let (user, created) = state.database.merge(id, &change.fields).await?;
    span.record("created", created);
    tracing::info!(user_id = %id, created, "user saved");
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(user))
}

#[utoipa::path(get, path = "/user", tag = "users", params(UserIdQuery),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "user_id missing or not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "get_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn get_user(
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let user = state.database.get(id).await?;
    tracing::debug!(user_id = %id, found = user.is_some(), "user read");
    user.map(|user| HttpResponse::Ok().json(user))
        .ok_or(ApiError::UserNotFound)
}

#[utoipa::path(delete, path = "/user", tag = "users", params(UserIdQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "user_id missing or not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "delete_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn delete_user(
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let deleted = state.database.delete(id).await?;
    tracing::info!(user_id = %id, deleted, "user delete");
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::UserNotFound)
    }
}
