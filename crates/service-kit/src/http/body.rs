//! Reading a JSON request body within limits: `application/json`
//! ([`JsonBody`]) or a JSON merge patch, `application/merge-patch+json`
//! (RFC 7396, [`MergePatchBody`]).

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures::StreamExt;
use futures::future::LocalBoxFuture;

use super::problem::{Problem, problem_response};
use crate::settings::HttpSettings;

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the default body timeout is when an app registers no [`HttpSettings`].
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body must be {} (Content-Type: {})", .0.name, .0.essence)]
    UnsupportedMediaType(MediaType),
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body did not arrive in time")]
    Timeout,
    #[error("the body could not be read")]
    Read(#[source] PayloadError),
}

impl BodyError {
    pub fn problem(&self) -> Problem {
        let (status, slug) = match self {
            BodyError::UnsupportedMediaType(_) => (415, "unsupported-media-type"),
            BodyError::TooLarge | BodyError::Read(PayloadError::Overflow) => {
                (413, "payload-too-large")
            }
            BodyError::Timeout => (408, "request-timeout"),
            BodyError::Read(_) => (400, "unreadable-body"),
        };
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Error");
        Problem::typed(status, slug, reason, self.to_string())
    }
}

impl ResponseError for BodyError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        problem_response(&self.problem())
    }
}

/// A media type a body extractor accepts, parameters (such as `charset`) aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType {
    /// How errors name it.
    pub name: &'static str,
    /// `type/subtype+suffix`, lower case.
    pub essence: &'static str,
}

impl MediaType {
    pub const JSON: MediaType = MediaType {
        name: "JSON",
        essence: "application/json",
    };
    pub const MERGE_PATCH: MediaType = MediaType {
        name: "a JSON merge patch",
        essence: "application/merge-patch+json",
    };
}

/// A JSON request body, as bytes for the domain's parsers: 415 unless the
/// content type is `application/json` (parameters such as `charset` are fine),
/// 413 past [`MAX_BODY_BYTES`] (declared or actual), 408 when the body does not
/// arrive within the app's `HTTP_BODY_TIMEOUT` ([`HttpSettings`] in app data).
pub struct JsonBody(pub Bytes);

/// A JSON merge patch (RFC 7396), as bytes: as [`JsonBody`], but the content
/// type must be `application/merge-patch+json`.
pub struct MergePatchBody(pub Bytes);

impl FromRequest for JsonBody {
    type Error = BodyError;
    type Future = LocalBoxFuture<'static, Result<Self, BodyError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_body(req, payload, MediaType::JSON);
        Box::pin(async move { read.await.map(JsonBody) })
    }
}

impl FromRequest for MergePatchBody {
    type Error = BodyError;
    type Future = LocalBoxFuture<'static, Result<Self, BodyError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_body(req, payload, MediaType::MERGE_PATCH);
        Box::pin(async move { read.await.map(MergePatchBody) })
    }
}

/// Reads a body of `media_type` within the limits.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    media_type: MediaType,
) -> LocalBoxFuture<'static, Result<Bytes, BodyError>> {
    let checked = check_head(req, media_type);
    let timeout = req
        .app_data::<HttpSettings>()
        .map_or(DEFAULT_BODY_TIMEOUT, |http| http.body_timeout);
    let mut payload = payload.take();
    Box::pin(async move {
        let declared = checked?;
        let read = async {
            let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(BodyError::Read)?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| BodyError::Timeout)?
    })
}

/// The content type and declared length, checked before a byte is read;
/// returns the declared length.
fn check_head(req: &HttpRequest, expected: MediaType) -> Result<Option<usize>, BodyError> {
    let accepted = matches!(
        req.mime_type(),
        Ok(Some(media_type)) if media_type.essence_str().eq_ignore_ascii_case(expected.essence)
    );
    if !accepted {
        return Err(BodyError::UnsupportedMediaType(expected));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(BodyError::TooLarge);
    }
    Ok(declared)
}
