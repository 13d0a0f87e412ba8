//! Optional bearer-token authentication (SPEC "Security").

use std::fmt;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use serde::{Deserialize, Deserializer};
use subtle::{Choice, ConstantTimeEq};

use crate::error::ApiError;

/// The accepted tokens from `API_TOKENS`. None means authentication is off.
/// `Debug` redacts them, so settings can be logged.
#[derive(Clone, Default)]
pub struct ApiTokens(Arc<[String]>);

impl ApiTokens {
    /// Splits a comma-separated list; blank entries are ignored.
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub fn is_enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The token the service presents to its own `/dummy-enrich`.
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// Compares against every token in constant time, so neither the token's
    /// content nor which token matched leaks through timing.
    fn accepts(&self, presented: &str) -> bool {
        let matched = self.0.iter().fold(Choice::from(0), |found, token| {
            found | token.as_bytes().ct_eq(presented.as_bytes())
        });
        matched.into()
    }

    fn authorises(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.accepts(token.trim())
    }
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} redacted)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for ApiTokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

/// Middleware for the protected resources: answers 401 unless the request carries
/// one of the configured tokens. Does nothing when no token is configured.
pub async fn require_bearer_token(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let authorised = match request.app_data::<web::Data<ApiTokens>>() {
        Some(tokens) if tokens.is_enabled() => tokens.authorises(
            request
                .headers()
                .get(AUTHORIZATION)
                .map(|value| value.as_bytes()),
        ),
        _ => true,
    };
    if !authorised {
        let response = ApiError::Unauthorized.error_response();
        return Ok(request.into_response(response).map_into_right_body());
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_blank_entries_dropped() {
        let tokens = ApiTokens::parse(" alpha , ,beta,");
        assert_eq!(tokens.first(), Some("alpha"));
        assert!(tokens.accepts("beta"));
        assert!(!tokens.accepts("gamma"));
        assert!(!ApiTokens::parse(" , ").is_enabled());
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_required() {
        let tokens = ApiTokens::parse("secret");
        assert!(tokens.authorises(Some(b"Bearer secret")));
        assert!(tokens.authorises(Some(b"bEaReR   secret")));
        assert!(!tokens.authorises(Some(b"Basic secret")));
        assert!(!tokens.authorises(Some(b"secret")));
        assert!(!tokens.authorises(Some(b"Bearer secre")));
        assert!(!tokens.authorises(None));
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let shown = format!("{:?}", ApiTokens::parse("secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
