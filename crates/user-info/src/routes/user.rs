use actix_web::{HttpRequest, HttpResponse, web};
use domain::{UserChange, parse_user_id};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::read_json_body;
use crate::startup::AppState;
use crate::store;

#[derive(Deserialize)]
pub struct UserIdQuery {
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
#[tracing::instrument(name = "post_user", skip_all, fields(user_id, created))]
pub async fn post_user(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(&req, payload, state.http.body_timeout()).await?;
    let change = UserChange::from_json(&body)?;
    let id = change.user_id.unwrap_or_else(Uuid::new_v4);
    let span = tracing::Span::current();
    span.record("user_id", tracing::field::display(id));
    let (user, created) = state
        .database
        .run(move |conn| store::merge(conn, id, &change.fields))
        .await?;
    span.record("created", created);
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(user))
}

#[tracing::instrument(name = "get_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn get_user(
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let user = state.database.run(move |conn| store::get(conn, id)).await?;
    user.map(|user| HttpResponse::Ok().json(user))
        .ok_or(ApiError::UserNotFound)
}

#[tracing::instrument(name = "delete_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn delete_user(
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let deleted = state
        .database
        .run(move |conn| store::delete(conn, id))
        .await?;
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::UserNotFound)
    }
}
