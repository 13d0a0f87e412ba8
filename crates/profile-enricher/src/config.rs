//! Settings, read from the environment under SPEC's variable names, with SPEC's defaults.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use reqwest::Url;
use serde::{Deserialize, Deserializer};
use service_kit::http::ApiTokens;
use service_kit::settings::{self, HttpSettings, Variables, number, seconds};

/// Bases above this are surely a unit mistake, and would let `BACKOFF_BASE * 2^n`
/// overflow a `Duration`.
const MAX_BACKOFF_BASE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(rename = "enricher_host")]
    pub host: String,
    #[serde(rename = "enricher_port", deserialize_with = "number")]
    pub port: u16,
    /// Reported by `/health`, so operators can tell deployments apart.
    pub env: String,
    /// `None` means the service's own `/dummy-enrich`, whose port is known only once bound.
    #[serde(default, deserialize_with = "optional_url")]
    pub external_api_url: Option<Url>,
    #[serde(flatten)]
    pub upstream: UpstreamSettings,
    /// Read on its own (see [`settings::Source::get`]).
    #[serde(skip)]
    pub http: HttpSettings,
    #[serde(default)]
    pub api_tokens: ApiTokens,
}

/// How the enrichment client treats the upstream; see `enrichment.rs` for the policy.
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSettings {
    #[serde(rename = "external_api_timeout", deserialize_with = "seconds")]
    pub attempt_timeout: Duration,
    #[serde(deserialize_with = "number")]
    pub max_retries: u32,
    #[serde(deserialize_with = "seconds")]
    pub backoff_base: Duration,
    #[serde(deserialize_with = "number")]
    pub max_concurrency: usize,
    #[serde(deserialize_with = "seconds")]
    pub max_concurrency_wait: Duration,
    #[serde(rename = "external_api_deadline", deserialize_with = "seconds")]
    pub deadline: Duration,
}

/// Reads the settings from the process environment.
pub fn get_configuration() -> anyhow::Result<Settings> {
    read(Variables::Environment)
}

/// Reads the settings from `variables` instead of the process environment, so
/// tests need not mutate global state.
pub fn from_variables(variables: HashMap<String, String>) -> anyhow::Result<Settings> {
    read(Variables::Map(variables))
}

fn read(variables: Variables) -> anyhow::Result<Settings> {
    let mut defaults = vec![
        ("enricher_host", "0.0.0.0"),
        ("enricher_port", "8000"),
        ("env", "development"),
        ("external_api_timeout", "5"),
        ("max_retries", "3"),
        ("backoff_base", "0.5"),
        ("max_concurrency", "8"),
        ("max_concurrency_wait", "2"),
        ("external_api_deadline", "15"),
    ];
    defaults.extend(HttpSettings::DEFAULTS);
    let source = settings::read(&defaults, variables)?;
    let mut settings: Settings = source.get()?;
    settings.http = source.get()?;
    settings.check()?;
    Ok(settings)
}

impl Settings {
    fn check(&self) -> anyhow::Result<()> {
        let upstream = &self.upstream;
        ensure!(
            upstream.max_concurrency >= 1,
            "MAX_CONCURRENCY must be at least 1"
        );
        ensure!(
            !upstream.attempt_timeout.is_zero(),
            "EXTERNAL_API_TIMEOUT must be positive"
        );
        ensure!(
            !upstream.deadline.is_zero(),
            "EXTERNAL_API_DEADLINE must be positive"
        );
        ensure!(
            upstream.backoff_base <= MAX_BACKOFF_BASE,
            "BACKOFF_BASE must be at most {} seconds",
            MAX_BACKOFF_BASE.as_secs()
        );
        Ok(())
    }
}

/// An empty `EXTERNAL_API_URL` counts as unset, as in `.env` files.
fn optional_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Url>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Url::parse(text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("EXTERNAL_API_URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        from_variables(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_the_ones_in_the_spec() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.port, 8000);
        assert_eq!(settings.host, "0.0.0.0");
        assert_eq!(settings.env, "development");
        assert!(settings.external_api_url.is_none());
        assert_eq!(settings.upstream.attempt_timeout, Duration::from_secs(5));
        assert_eq!(settings.upstream.max_retries, 3);
        assert_eq!(settings.upstream.backoff_base, Duration::from_millis(500));
        assert_eq!(settings.upstream.max_concurrency, 8);
        assert_eq!(
            settings.upstream.max_concurrency_wait,
            Duration::from_secs(2)
        );
        assert_eq!(settings.upstream.deadline, Duration::from_secs(15));
        assert_eq!(settings.http.head_timeout, Duration::from_secs(10));
        assert_eq!(settings.http.body_timeout, Duration::from_secs(30));
        assert_eq!(settings.http.keep_alive, Duration::from_secs(60));
        assert!(!settings.api_tokens.is_enabled());
    }

    #[test]
    fn durations_may_be_fractional_seconds() {
        let settings =
            with(&[("BACKOFF_BASE", "0.05"), ("EXTERNAL_API_DEADLINE", " 1.5 ")]).unwrap();
        assert_eq!(settings.upstream.backoff_base, Duration::from_millis(50));
        assert_eq!(settings.upstream.deadline, Duration::from_millis(1500));
    }

    #[test]
    fn nonsense_values_are_refused_at_start_up() {
        for (key, value) in [
            ("EXTERNAL_API_TIMEOUT", "-1"),
            ("EXTERNAL_API_TIMEOUT", "0"),
            ("BACKOFF_BASE", "soon"),
            ("MAX_CONCURRENCY", "0"),
            ("MAX_RETRIES", "-2"),
            ("EXTERNAL_API_URL", "not a url"),
        ] {
            assert!(with(&[(key, value)]).is_err(), "{key}={value}");
        }
    }

    #[test]
    fn an_empty_external_api_url_means_the_built_in_one() {
        for blank in ["", "  "] {
            assert!(
                with(&[("EXTERNAL_API_URL", blank)])
                    .unwrap()
                    .external_api_url
                    .is_none()
            );
        }
    }

    #[test]
    fn an_empty_api_tokens_turns_authentication_off() {
        for blank in ["", " , "] {
            assert!(
                !with(&[("API_TOKENS", blank)])
                    .unwrap()
                    .api_tokens
                    .is_enabled()
            );
        }
        assert!(
            with(&[("API_TOKENS", "t")])
                .unwrap()
                .api_tokens
                .is_enabled()
        );
    }
}
