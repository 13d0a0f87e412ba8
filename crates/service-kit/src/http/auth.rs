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

/// The fewest characters a token of `API_TOKENS` may have. A shorter one can
/// be guessed - or is a template's placeholder left in place (`CHANGE_ME`) - so
/// every process refuses it at start rather than letting it guard anything.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// `API_TOKENS` holds a token shorter than [`MIN_TOKEN_LENGTH`]. Says which one
/// by its place in the list, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "API_TOKENS: token {position} of the list has {length} characters; a token must have at least {MIN_TOKEN_LENGTH} (a random one, e.g. `openssl rand -hex 32`)"
)]
pub struct TokenTooShort {
    /// 1 for the first token of the list.
    pub position: usize,
    pub length: usize,
}

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
    /// entries are ignored. A token shorter than [`MIN_TOKEN_LENGTH`]
    /// characters is refused.
    pub fn parse(list: &str) -> Result<Self, TokenTooShort> {
        let tokens: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .collect();
        for (index, token) in tokens.iter().enumerate() {
            let length = token.chars().count();
            if length < MIN_TOKEN_LENGTH {
                return Err(TokenTooShort {
                    position: index + 1,
                    length,
                });
            }
        }
        Ok(Self {
            digests: tokens.iter().map(|token| digest(token)).collect(),
            first: tokens.first().map(|token| Arc::from(*token)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Logs a warning when authentication is off. Each process calls it as it
    /// starts, so that an `API_TOKENS` forgotten in a deployment - every
    /// endpoint then open to whoever reaches the port - shows in its logs.
    pub fn warn_when_off(&self) {
        if !self.is_enabled() {
            tracing::warn!(
                "authentication is off: API_TOKENS is unset or empty, so every endpoint is open to anyone who can reach this process"
            );
        }
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

/// Who is calling, as far as a bearer token says: the first 16 bytes of its
/// SHA-256 in hex (never the token itself), or `None` without a bearer token.
/// For state kept per caller, such as idempotency keys.
pub fn caller_scope(authorization: Option<&HeaderValue>) -> Option<String> {
    let (scheme, token) = authorization
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let digest = digest(token.trim());
    Some(
        digest[..16]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect(),
    )
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} redacted)", self.digests.len())
    }
}

/// From the `API_TOKENS` variable; unset or blank = authentication off. A
/// token that is too short is a settings error, so every process reading
/// settings refuses it at start the same way.
impl<'de> Deserialize<'de> for ApiTokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(value))
    }

    #[test]
    fn a_caller_s_scope_is_its_token_s_digest_never_the_token() {
        let alpha = caller_scope(header("Bearer alpha-0123456789").as_ref()).unwrap();
        assert_eq!(alpha.len(), 32);
        assert!(!alpha.contains("alpha"));
        assert_eq!(
            caller_scope(header("bearer  alpha-0123456789 ").as_ref()),
            Some(alpha.clone())
        );
        assert_ne!(
            caller_scope(header("Bearer bravo-0123456789").as_ref()),
            Some(alpha)
        );
        assert_eq!(
            caller_scope(header("Basic YWxhZGRpbjpvcGVu").as_ref()),
            None
        );
        assert_eq!(caller_scope(None), None);
    }

    #[test]
    fn tokens_are_trimmed_and_the_scheme_is_case_insensitive() {
        let tokens = ApiTokens::parse(" alpha-0123456789 , bravo-0123456789,, ").unwrap();
        assert!(tokens.is_enabled());
        assert_eq!(tokens.first(), Some("alpha-0123456789"));
        assert!(tokens.accepts(header("Bearer alpha-0123456789").as_ref()));
        assert!(tokens.accepts(header("bEaReR   bravo-0123456789").as_ref()));
        assert!(!tokens.accepts(header("Bearer gamma-0123456789x").as_ref()));
        assert!(!tokens.accepts(header("Bearer alpha-012345678").as_ref()));
        assert!(!tokens.accepts(header("Basic alpha-0123456789").as_ref()));
        assert!(!tokens.accepts(header("alpha-0123456789").as_ref()));
        assert!(!tokens.accepts(None));
    }

    #[test]
    fn an_empty_list_disables_authentication() {
        assert!(!ApiTokens::parse(" , ").unwrap().is_enabled());
        assert!(!ApiTokens::parse("").unwrap().is_enabled());
        assert!(!ApiTokens::default().is_enabled());
    }

    #[test]
    fn a_token_under_16_characters_is_refused_naming_api_tokens_never_the_token() {
        assert_eq!(MIN_TOKEN_LENGTH, 16);
        let sixteen = "0123456789abcdef";
        assert!(ApiTokens::parse(sixteen).unwrap().is_enabled());
        // Characters, not bytes: 16 two-byte characters are 16.
        assert!(ApiTokens::parse(&"é".repeat(16)).is_ok());
        for (list, position, length) in [
            ("0123456789abcde", 1, 15),
            ("CHANGE_ME", 1, 9),
            ("0123456789abcdef, guessable-12345", 2, 15),
            (&"é".repeat(15), 1, 15),
        ] {
            let error = ApiTokens::parse(list).unwrap_err();
            assert_eq!((error.position, error.length), (position, length), "{list}");
            let message = error.to_string();
            assert!(message.contains("API_TOKENS"), "{message}");
            assert!(message.contains("16"), "{message}");
            for token in list.split(',') {
                assert!(!message.contains(token.trim()), "{message}");
            }
        }
    }

    #[test]
    fn tokens_are_compared_as_digests_of_equal_length() {
        // What makes the comparison constant-time: whatever is presented, the
        // bytes compared have one length.
        let tokens =
            ApiTokens::parse("sixteen-chars-ok,a-much-longer-token-than-the-other").unwrap();
        assert!(tokens.digests.iter().all(|d| d.len() == 32));
        assert_eq!(digest("x").len(), digest(&"y".repeat(10_000)).len());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let shown = format!("{:?}", ApiTokens::parse("secret-secret-secret").unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }

    /// What `warn_when_off` logs, through a subscriber of its own.
    fn logged(tokens: &ApiTokens) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || tokens.warn_when_off());
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn authentication_off_is_a_warning_naming_api_tokens() {
        let off = logged(&ApiTokens::default());
        assert!(off.contains("WARN"), "{off}");
        assert!(off.contains("API_TOKENS"), "{off}");
        let on = logged(&ApiTokens::parse("0123456789abcdef").unwrap());
        assert!(on.is_empty(), "{on}");
    }
}
