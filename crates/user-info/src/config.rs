//! Settings, from environment variables (and a `.env` file when present).

use std::time::Duration;

use serde::Deserialize;
use service_kit::http::ApiTokens;
use service_kit::settings::{
    self, FromVariables, HttpSettings, SettingsError, Variables, number, seconds,
};
use user_store::DatabaseSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub database: DatabaseSettings,
    /// `API_TOKENS`, comma-separated bearer tokens; unset or empty = no
    /// authentication.
    pub api_tokens: ApiTokens,
    pub http: HttpSettings,
    /// `IDEMPOTENCY_KEY_TTL`: how long the first answer to a `POST /user` with
    /// an `Idempotency-Key` is kept and replayed.
    pub idempotency_key_ttl: Duration,
    /// `HTTP_WORKERS`: threads serving requests (default: the CPUs this process
    /// may use, its container's CPU limit included), capped so that every
    /// database connection fits in `DATABASE_POOL_SIZE`.
    pub http_workers: usize,
}

/// The variables of this service alone.
#[derive(Deserialize)]
struct Own {
    user_info_host: String,
    #[serde(deserialize_with = "number")]
    user_info_port: u16,
    #[serde(default)]
    api_tokens: ApiTokens,
    #[serde(deserialize_with = "idempotency_key_ttl")]
    idempotency_key_ttl: Duration,
    #[serde(default, deserialize_with = "optional_workers")]
    http_workers: Option<usize>,
}

/// A positive number of threads; unset or blank = the CPUs the process may use.
fn optional_workers<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(workers) if (1..=1024).contains(&workers) => Ok(Some(workers)),
            _ => Err(serde::de::Error::custom(format!(
                "HTTP_WORKERS: `{text}` is not a number of threads from 1 to 1024"
            ))),
        },
    }
}

/// The longest `IDEMPOTENCY_KEY_TTL`: a week of answers is plenty for any retry,
/// and a longer one is surely a unit mistake that would fill the table.
pub const MAX_IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Seconds, above 0 (0 would keep nothing while promising to) and at most
/// [`MAX_IDEMPOTENCY_KEY_TTL`].
fn idempotency_key_ttl<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let ttl = seconds(deserializer)?;
    if ttl.is_zero() || ttl > MAX_IDEMPOTENCY_KEY_TTL {
        return Err(serde::de::Error::custom(format!(
            "IDEMPOTENCY_KEY_TTL must be above 0 and at most {} seconds",
            MAX_IDEMPOTENCY_KEY_TTL.as_secs()
        )));
    }
    Ok(ttl)
}

impl FromVariables for Settings {
    /// The documented variables; unset ones take their defaults.
    fn read(variables: Variables) -> Result<Self, SettingsError> {
        let mut defaults = vec![
            ("user_info_host", "0.0.0.0"),
            ("user_info_port", "9810"),
            ("idempotency_key_ttl", "86400"),
        ];
        defaults.extend(DatabaseSettings::DEFAULTS);
        defaults.extend(HttpSettings::DEFAULTS);
        let source = settings::read(&defaults, variables)?;
        let own: Own = source.get()?;
        Ok(Settings {
            host: own.user_info_host,
            port: own.user_info_port,
            database: source.get()?,
            api_tokens: own.api_tokens,
            http: source.get()?,
            idempotency_key_ttl: own.idempotency_key_ttl,
            http_workers: own.http_workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |cores| cores.get())
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_pairs(pairs)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = with(&[]).unwrap();
        assert_eq!((settings.host.as_str(), settings.port), ("0.0.0.0", 9810));
        assert_eq!(settings.database.pool_size, 10);
        assert_eq!(settings.database.connect_timeout, Duration::from_secs(5));
        assert_eq!(settings.database.query_timeout, Duration::from_secs(10));
        assert_eq!(settings.http.body_timeout, Duration::from_secs(30));
        assert!(!settings.api_tokens.is_enabled());
        assert_eq!(settings.idempotency_key_ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn a_token_under_16_characters_stops_the_service_naming_api_tokens() {
        let error = with(&[("API_TOKENS", "fifteen-chars-x")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("API_TOKENS"), "{error}");
        assert!(!error.contains("fifteen-chars-x"), "{error}");
        let settings = with(&[("API_TOKENS", "sixteen-chars-xx")]).unwrap();
        assert!(settings.api_tokens.is_enabled());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let settings = with(&[
            (
                "DATABASE_URL",
                "postgres://user_info:db-secret-1@db:5432/user_info",
            ),
            ("API_TOKENS", "token-secret-2-0123456789"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        for secret in ["db-secret-1", "token-secret-2"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }

    #[test]
    fn a_nonsense_duration_stops_the_service_naming_the_variable() {
        let error = with(&[("DATABASE_QUERY_TIMEOUT", "-3")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("database_query_timeout"), "{error}");
        let error = with(&[("IDEMPOTENCY_KEY_TTL", "a day")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("idempotency_key_ttl"), "{error}");
    }

    #[test]
    fn http_workers_default_to_the_cpus_and_nonsense_is_refused_naming_it() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(with(&[]).unwrap().http_workers, cores);
        assert_eq!(with(&[("HTTP_WORKERS", " ")]).unwrap().http_workers, cores);
        assert_eq!(with(&[("HTTP_WORKERS", "3")]).unwrap().http_workers, 3);
        for workers in ["0", "-1", "many", "5000"] {
            let error = with(&[("HTTP_WORKERS", workers)]).unwrap_err().to_string();
            assert!(error.contains("HTTP_WORKERS"), "{workers}: {error}");
        }
    }

    #[test]
    fn an_idempotency_key_ttl_of_0_or_over_a_week_stops_the_service_naming_it() {
        for ttl in ["0", "604801", "1e12"] {
            let error = with(&[("IDEMPOTENCY_KEY_TTL", ttl)])
                .unwrap_err()
                .to_string();
            assert!(error.contains("IDEMPOTENCY_KEY_TTL"), "{ttl}: {error}");
        }
        let week = with(&[("IDEMPOTENCY_KEY_TTL", "604800")]).unwrap();
        assert_eq!(week.idempotency_key_ttl, MAX_IDEMPOTENCY_KEY_TTL);
        assert!(with(&[("IDEMPOTENCY_KEY_TTL", "0.5")]).is_ok());
    }
}
