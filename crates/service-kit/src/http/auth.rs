//! Optional bearer-token authentication, the same in every process.

use std::fmt;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use serde::{Deserialize, Deserializer};
use sha2::Digest;
use subtle::ConstantTimeEq;

/// Paths open without a token: probes, metrics, the API description and its
/// explorer.
pub const OPEN_PATHS: [&str; 5] = ["/health", "/ready", "/metrics", "/openapi.json", "/docs"];

/// The bearer tokens of `API_TOKENS`; none means authentication is off.
///
/// Kept as SHA-256 digests: comparing two digests takes the same time whatever
/// the presented token - its length included - so nothing about a token leaks
/// through timing. `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct ApiTokens {
    digests: Arc<[[u8; 32]]>,
    /// The first token as configured, for a service that calls itself.
    first: Option<Arc<str>>,
}

impl ApiTokens {
    /// Parses a comma-separated list; whitespace around each token and blank
    /// entries are ignored.
    pub fn parse(list: &str) -> Self {
        let tokens: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .collect();
        Self {
            digests: tokens.iter().map(|token| digest(token)).collect(),
            first: tokens.first().map(|token| Arc::from(*token)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// The first configured token.
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// Whether an `Authorization` header carries one of the tokens, with the
    /// `Bearer` scheme in any letter case.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((scheme, token)) = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
        else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented = digest(token.trim());
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} redacted)", self.digests.len())
    }
}

/// From the `API_TOKENS` variable; unset or blank = authentication off.
impl<'de> Deserialize<'de> for ApiTokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(value))
    }

    #[test]
    fn tokens_are_trimmed_and_the_scheme_is_case_insensitive() {
        let tokens = ApiTokens::parse(" alpha , beta,, ");
        assert!(tokens.is_enabled());
        assert_eq!(tokens.first(), Some("alpha"));
        assert!(tokens.accepts(header("Bearer alpha").as_ref()));
        assert!(tokens.accepts(header("bEaReR   beta").as_ref()));
        assert!(!tokens.accepts(header("Bearer gamma").as_ref()));
        assert!(!tokens.accepts(header("Bearer alph").as_ref()));
        assert!(!tokens.accepts(header("Basic alpha").as_ref()));
        assert!(!tokens.accepts(header("alpha").as_ref()));
        assert!(!tokens.accepts(None));
    }

    #[test]
    fn an_empty_list_disables_authentication() {
        assert!(!ApiTokens::parse(" , ").is_enabled());
        assert!(!ApiTokens::parse("").is_enabled());
        assert!(!ApiTokens::default().is_enabled());
    }

    #[test]
    fn tokens_are_compared_as_digests_of_equal_length() {
        // What makes the comparison constant-time: whatever is presented, the
        // bytes compared have one length.
        let tokens = ApiTokens::parse("short,a-much-longer-token-than-the-other");
        assert!(tokens.digests.iter().all(|d| d.len() == 32));
        assert_eq!(digest("x").len(), digest(&"y".repeat(10_000)).len());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let shown = format!("{:?}", ApiTokens::parse("secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
