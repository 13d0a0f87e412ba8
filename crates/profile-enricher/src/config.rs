//! Settings, read from the environment under SPEC's variable names, with SPEC's defaults.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::Url;
use serde::{Deserialize, Deserializer};

use crate::auth::ApiTokens;

/// Bases above this are surely a unit mistake, and would let `BACKOFF_BASE * 2^n`
/// overflow a `Duration`.
const MAX_BACKOFF_BASE: Duration = Duration::from_secs(3600);

/// Timeouts, deadlines and waits above a day are surely a unit mistake; bounding
/// them keeps every `Instant + duration` far from the clock's end.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

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
    #[serde(flatten)]
    pub http: HttpSettings,
    #[serde(default)]
    pub api_tokens: ApiTokens,
}

/// Limits that keep slow or idle clients from starving others (SPEC "Security");
/// the variable names are shared with user-info.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// A request head must arrive within this.
    #[serde(rename = "http_head_timeout", deserialize_with = "seconds")]
    pub head_timeout: Duration,
    /// A request body must arrive within this.
    #[serde(rename = "http_body_timeout", deserialize_with = "seconds")]
    pub body_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    #[serde(rename = "http_keep_alive", deserialize_with = "seconds")]
    pub keep_alive: Duration,
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
    read(None)
}

/// Reads the settings from `variables` instead of the process environment, so
/// tests need not mutate global state.
pub fn from_variables(variables: HashMap<String, String>) -> anyhow::Result<Settings> {
    read(Some(variables.into_iter().collect()))
}

fn read(variables: Option<config::Map<String, String>>) -> anyhow::Result<Settings> {
    let settings: Settings = config::Config::builder()
        .set_default("enricher_host", "0.0.0.0")?
        .set_default("enricher_port", "8000")?
        .set_default("env", "development")?
        .set_default("external_api_timeout", "5")?
        .set_default("max_retries", "3")?
        .set_default("backoff_base", "0.5")?
        .set_default("max_concurrency", "8")?
        .set_default("max_concurrency_wait", "2")?
        .set_default("external_api_deadline", "15")?
        .set_default("http_head_timeout", "10")?
        .set_default("http_body_timeout", "30")?
        .set_default("http_keep_alive", "60")?
        .add_source(config::Environment::default().source(variables))
        .build()
        .context("could not read the settings")?
        .try_deserialize()
        .context("invalid settings")?;
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
        for (variable, value) in [
            ("EXTERNAL_API_TIMEOUT", upstream.attempt_timeout),
            ("EXTERNAL_API_DEADLINE", upstream.deadline),
            ("MAX_CONCURRENCY_WAIT", upstream.max_concurrency_wait),
        ] {
            ensure!(
                value <= MAX_WAIT,
                "{variable} must be at most {} seconds",
                MAX_WAIT.as_secs()
            );
        }
        ensure!(
            upstream.backoff_base <= MAX_BACKOFF_BASE,
            "BACKOFF_BASE must be at most {} seconds",
            MAX_BACKOFF_BASE.as_secs()
        );
        Ok(())
    }
}

/// Seconds, possibly fractional (`"0.05"`). Values are parsed from text here because
/// serde's `flatten` buffers them and loses `config`'s own text-to-number coercion.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number of seconds")))?;
    Duration::try_from_secs_f64(value).map_err(|_| {
        serde::de::Error::custom(format!("`{text}` is not a non-negative number of seconds"))
    })
}

fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
{
    let text = String::deserialize(deserializer)?;
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a valid number")))
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
            ("EXTERNAL_API_DEADLINE", "1e15"),
            ("MAX_CONCURRENCY_WAIT", "86401"),
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
