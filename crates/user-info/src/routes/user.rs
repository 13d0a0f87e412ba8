use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use domain::{FieldError, ParseError, UserChange, parse_user_id};
use serde::Deserialize;
use service_kit::http::{JsonBody, MergePatchBody, PROBLEM_JSON, Problem};
use sha2::Digest;
use user_store::{Keyed, Outcome, StoredAnswer, User};
use uuid::Uuid;

use crate::conditional::{etag, preconditions};
use crate::error::ApiError;
use crate::openapi::{UserChangeBody, UserPatchBody};
use crate::startup::AppState;

/// Marks an answer given again for a repeated `Idempotency-Key`.
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The whole stored user, with its version as the strong ETag.
fn user_response(status: StatusCode, user: &User) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(user.version)))
        .json(user)
}

/// The request's `Idempotency-Key`, if any, scoped to the caller: prefixed with
/// the digest of its bearer token (when it sends one), so that one client's key
/// never replays another's answer. 400 when it is not 1-255 visible ASCII
/// characters (or sent twice).
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let key = unscoped_idempotency_key(req)?;
    let scope = service_kit::http::caller_scope(req.headers().get(header::AUTHORIZATION));
    Ok(match (key, scope) {
        (Some(key), Some(scope)) => Some(format!("{scope}/{key}")),
        (key, _) => key,
    })
}

fn unscoped_idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadHeader(
            "Idempotency-Key must be one value of 1-255 visible ASCII characters".to_owned(),
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let key = value.to_str().map_err(|_| bad())?;
    let valid = (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        Ok(Some(key.to_owned()))
    } else {
        Err(bad())
    }
}

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
/// safely retry a 503; without one, an `Idempotency-Key` makes it so.
/// `If-Match` applies the change only to the named version (never creates);
/// `If-None-Match: *` only creates.
#[utoipa::path(post, path = "/user", tag = "users",
    params(IfMatch, IfNoneMatch, IdempotencyKey),
    request_body(content = UserChangeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated: the whole stored user", body = User, headers(("ETag" = String, description = "The user's version, `\"<version>\"`"))),
        (status = 201, description = "Created: the whole stored user", body = User, headers(("ETag" = String, description = "The user's version, `\"<version>\"`"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this Idempotency-Key is still in progress (retry); or a UNIQUE or foreign-key constraint of the database refused the change (`constraint-conflict`, naming it; do not retry)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match or If-None-Match does not hold; the detail names the current version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape or invalid fields, every one listed; an Idempotency-Key first used with another body; or a CHECK or NOT NULL constraint of the database refused the change (`constraint-violated`, naming it)", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "post_user", skip_all, fields(user_id, created))]
pub async fn post_user(
    req: HttpRequest,
    JsonBody(body): JsonBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let preconditions = preconditions(req.headers());
    let key = idempotency_key(&req)?;
    let change = UserChange::from_json(&body)?;
    let id = change.user_id.unwrap_or_else(Uuid::new_v4);
    let span = tracing::Span::current();
    span.record("user_id", tracing::field::display(id));
    let database = &state.database;
    if let Some(key) = key {
        let fingerprint = sha2::Sha256::digest(&body);
        let keyed = database
            .merge_once(
                &key,
                &fingerprint,
                state.idempotency_key_ttl,
                (id, &change.fields, &preconditions),
                answer_to_keep,
            )
            .await?;
        return match keyed {
            Keyed::First(answer) => {
                tracing::info!(user_id = %id, status = answer.status, "user saved under an idempotency key");
                Ok(replay(&answer))
            }
            Keyed::Replay(answer) => {
                tracing::info!(user_id = %id, status = answer.status, "idempotent answer replayed");
                let mut response = replay(&answer);
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                Ok(response)
            }
            Keyed::InFlight => Err(ApiError::KeyInFlight),
            Keyed::OtherBody => Err(ApiError::KeyReused),
        };
    }
    let (user, created) = if preconditions.is_empty() {
        database.merge(id, &change.fields).await?
    } else {
        match database
            .merge_if(id, &change.fields, &preconditions, true)
            .await?
        {
            Outcome::Done(saved) => saved,
            Outcome::PreconditionFailed { current } => {
                return Err(ApiError::PreconditionFailed { current });
            }
            Outcome::NotFound => return Err(ApiError::UserNotFound),
        }
    };
    span.record("created", created);
    tracing::info!(user_id = %id, created, version = user.version, "user saved");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(user_response(status, &user))
}

/// The answer to a keyed `POST /user`, as it is kept and replayed.
fn answer_to_keep(outcome: &Outcome<(User, bool)>) -> StoredAnswer {
    let (status, body, etag) = match outcome {
        Outcome::Done((user, created)) => (
            if *created { 201 } else { 200 },
            serde_json::to_string(user),
            Some(format!("\"{}\"", user.version)),
        ),
        Outcome::PreconditionFailed { current } => {
            let error = ApiError::PreconditionFailed { current: *current };
            (412, serde_json::to_string(&error.problem()), None)
        }
        Outcome::NotFound => (
            404,
            serde_json::to_string(&ApiError::UserNotFound.problem()),
            None,
        ),
    };
    StoredAnswer {
        status,
        // Plain structs of strings and numbers always serialise.
        body: body.unwrap_or_default(),
        etag,
    }
}

/// A kept answer, as it was first given.
fn replay(answer: &StoredAnswer) -> HttpResponse {
    let status = u16::try_from(answer.status)
        .ok()
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response = HttpResponse::build(status);
    response.content_type(content_type);
    if let Some(value) = answer
        .etag
        .as_deref()
        .and_then(|etag| HeaderValue::from_str(etag).ok())
    {
        response.insert_header((header::ETAG, value));
    }
    response.body(answer.body.clone())
}

/// Merges a JSON merge patch (RFC 7396) into an existing user, with the rule of
/// `POST /user`: absent fields stay, `null`/`""` clear. Never creates a user.
/// `If-Match` applies it only to the named version.
#[utoipa::path(patch, path = "/user", tag = "users",
    params(UserIdQuery, IfMatch, IfNoneMatch),
    request_body(content = UserPatchBody, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Patched: the whole stored user", body = User, headers(("ETag" = String, description = "The user's version, `\"<version>\"`"))),
        (status = 400, description = "Malformed JSON, user_id missing or not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A UNIQUE or foreign-key constraint of the database refused the change (`constraint-conflict`, naming it)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match or If-None-Match does not hold; the detail names the current version", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type is not application/merge-patch+json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape or invalid fields, every one listed (a user_id in the body must be the query's); or a CHECK or NOT NULL constraint of the database refused the change (`constraint-violated`, naming it)", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "patch_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn patch_user(
    req: HttpRequest,
    query: web::Query<UserIdQuery>,
    MergePatchBody(body): MergePatchBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let preconditions = preconditions(req.headers());
    let change = UserChange::from_json(&body)?;
    if change.user_id.is_some_and(|other| other != id) {
        return Err(ApiError::Parse(ParseError::Invalid(vec![FieldError::new(
            "user_id",
            "must be the user_id of the query (a user's id cannot change)",
        )])));
    }
    match state
        .database
        .merge_if(id, &change.fields, &preconditions, false)
        .await?
    {
        Outcome::Done((user, _)) => {
            tracing::info!(user_id = %id, version = user.version, "user patched");
            Ok(user_response(StatusCode::OK, &user))
        }
        Outcome::PreconditionFailed { current } => Err(ApiError::PreconditionFailed { current }),
        Outcome::NotFound => Err(ApiError::UserNotFound),
    }
}

/// The user, with its version as the ETag; 412 when `If-Match` does not name
/// that version (strong comparison; `*` names any), as on the writes; then 304
/// (no body) when `If-None-Match` names it (weak comparison) or is `*`.
#[utoipa::path(get, path = "/user", tag = "users", params(UserIdQuery, IfMatch, IfNoneMatch),
    responses(
        (status = 200, description = "The user", body = User, headers(("ETag" = String, description = "The user's version, `\"<version>\"`"))),
        (status = 304, description = "Not modified: If-None-Match names the current version", headers(("ETag" = String, description = "The user's version, `\"<version>\"`"))),
        (status = 400, description = "user_id missing or not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not hold; the detail names the current version", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "get_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn get_user(
    req: HttpRequest,
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let preconditions = preconditions(req.headers());
    let user = state.database.get(id).await?;
    tracing::debug!(user_id = %id, found = user.is_some(), "user read");
    let user = user.ok_or(ApiError::UserNotFound)?;
    // RFC 9110, section 13.2.2: If-Match first, then If-None-Match.
    let current = Some(user.version);
    if preconditions
        .if_match
        .as_ref()
        .is_some_and(|versions| !versions.names(current))
    {
        return Err(ApiError::PreconditionFailed { current });
    }
    let not_modified = preconditions
        .if_none_match
        .as_ref()
        .is_some_and(|versions| versions.names(current));
    if not_modified {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(user.version)))
            .finish());
    }
    Ok(user_response(StatusCode::OK, &user))
}

/// Deletes the user; with `If-Match`, only the named version.
#[utoipa::path(delete, path = "/user", tag = "users", params(UserIdQuery, IfMatch, IfNoneMatch),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "user_id missing or not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token (when API_TOKENS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A foreign key of the database that references the user refused the delete (`constraint-conflict`, naming it)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match or If-None-Match does not hold; the detail names the current version", body = Problem, content_type = "application/problem+json"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])))]
#[tracing::instrument(name = "delete_user", skip_all, fields(user_id = ?query.user_id))]
pub async fn delete_user(
    req: HttpRequest,
    query: web::Query<UserIdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = query.parse()?;
    let preconditions = preconditions(req.headers());
    let deleted = if preconditions.is_empty() {
        state.database.delete(id).await?
    } else {
        match state.database.delete_if(id, &preconditions).await? {
            Outcome::Done(()) => true,
            Outcome::NotFound => false,
            Outcome::PreconditionFailed { current } => {
                return Err(ApiError::PreconditionFailed { current });
            }
        }
    };
    tracing::info!(user_id = %id, deleted, "user delete");
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::UserNotFound)
    }
}

/// `If-Match`: answer (read, apply the change) only when the user is at one of
/// these versions (strong comparison; `*`: any existing user); 412 otherwise.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfMatch {
    /// `*` or entity tags (`"3"`, `"3", "4"`); a weak tag, or anything that
    /// is not an entity tag, never matches.
    #[param(rename = "If-Match")]
    if_match: String,
}

/// `If-None-Match`: on `GET`, 304 when it names the current version (weak
/// comparison) or is `*`; on a write, apply it only when it names none of the
/// user's version (`*`: only when there is no such user - create only); 412
/// otherwise.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IfNoneMatch {
    /// `*` or entity tags (`"3"`, `W/"3"`); anything that is not an entity tag
    /// matches nothing.
    #[param(rename = "If-None-Match")]
    if_none_match: String,
}

/// `Idempotency-Key`: the first answer to this request is kept (see
/// `IDEMPOTENCY_KEY_TTL`, 24 h by default); a retry with the same key and the
/// same body gets it again - the same generated `user_id` - with no second
/// effect. Another body with the key: 422; while the first is in progress: 409.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// 1-255 visible ASCII characters, e.g. a UUID.
    #[param(
        rename = "Idempotency-Key",
        pattern = r"^[\x21-\x7e]{1,255}$",
        min_length = 1,
        max_length = 255
    )]
    idempotency_key: String,
}
