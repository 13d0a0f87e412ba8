//! Settings, read from the environment (and the `ENRICHER_CONFIG` TOML file
//! under it) with the documented defaults.

mod sources;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use reqwest::Url;
use serde::{Deserialize, Deserializer};
use service_kit::http::ApiTokens;
use service_kit::kafka::KafkaConnection;
use service_kit::settings::{self, HttpSettings, Variables, number, seconds};

pub use self::sources::SourceSettings;

/// Bases above this are surely a unit mistake, and would let `BACKOFF_BASE * 2^n`
/// overflow a `Duration`.
const MAX_BACKOFF_BASE: Duration = Duration::from_secs(3600);

/// The sliding window over which the retry budget counts first attempts and retries.
pub const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Below this a cache could not hold even one small answer.
const MIN_CACHE_BYTES: u64 = 4096;

/// Timeouts, deadlines and waits above a day are surely a unit mistake; bounding
/// them keeps every `Instant + duration` far from the clock's end.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// Reported by `/health`, so operators can tell deployments apart.
    pub env: String,
    /// `None` means the service's own `/dummy-enrich`, whose port is known only once bound.
    pub external_api_url: Option<Url>,
    pub upstream: UpstreamSettings,
    pub http: HttpSettings,
    pub api_tokens: ApiTokens,
    /// Asynchronous enrichment over Kafka; off unless `ENRICHER_INPUT_TOPIC` is set.
    pub kafka: KafkaSettings,
}

/// Asynchronous enrichment (see `kafka`): the topics, the group, and the same
/// `KAFKA_*` connection variables as the user-info consumer.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Profiles to enrich (key: userId, value: a `POST /users` body); unset or
    /// blank = the mode is off, and `Prefer: respond-async` is ignored.
    #[serde(default)]
    pub enricher_input_topic: Option<String>,
    /// Where the answers go (key: userId, value: the `POST /users` 200 body).
    pub enricher_output_topic: String,
    /// Invalid profiles and profiles a source refused, with `dlq-*` headers.
    pub enricher_dlq_topic: String,
    pub kafka_group_id: String,
    pub kafka_auto_offset_reset: String,
    #[serde(deserialize_with = "number")]
    pub kafka_session_timeout_ms: u32,
    #[serde(deserialize_with = "number")]
    pub kafka_heartbeat_interval_ms: u32,
    /// Records enriched at once at most (across keys; one key is one at a time).
    #[serde(deserialize_with = "number")]
    pub enricher_kafka_max_in_flight: usize,
    /// The first wait before a record whose sources failed transiently is tried
    /// again (doubling up to 30 s); its partition stays paused meanwhile.
    #[serde(deserialize_with = "seconds")]
    pub enricher_kafka_retry_backoff: Duration,
    #[serde(skip)]
    pub connection: KafkaConnection,
}

impl KafkaSettings {
    /// The input topic, when the mode is on.
    pub fn input_topic(&self) -> Option<&str> {
        self.enricher_input_topic
            .as_deref()
            .map(str::trim)
            .filter(|topic| !topic.is_empty())
    }
}

/// The variables of the service itself; the others are read as their own
/// structs, so that an error names its variable.
#[derive(Deserialize)]
struct Own {
    enricher_host: String,
    #[serde(deserialize_with = "number")]
    enricher_port: u16,
    env: String,
    #[serde(default, deserialize_with = "optional_url")]
    external_api_url: Option<Url>,
    #[serde(default)]
    api_tokens: ApiTokens,
}

/// How the enrichment client treats its upstreams; see `enrichment` for the policy.
/// The single-source variables (`EXTERNAL_API_*`, `MAX_*`) are also every declared
/// source's defaults.
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
    /// Retries may add at most this share of first attempts (per source, over
    /// [`RETRY_BUDGET_WINDOW`]), on top of the floor below.
    #[serde(deserialize_with = "number")]
    pub retry_budget_ratio: f32,
    /// Retries allowed per second whatever the ratio says, so that a quiet source
    /// may still be retried.
    #[serde(deserialize_with = "number")]
    pub retry_budget_min_per_second: u32,
    /// A source's breaker opens when at least this share of the attempts in its
    /// window failed...
    #[serde(deserialize_with = "number")]
    pub circuit_breaker_failure_ratio: f64,
    /// ...and the window holds at least this many attempts (0 = no breaker).
    #[serde(deserialize_with = "number")]
    pub circuit_breaker_min_calls: u32,
    #[serde(deserialize_with = "seconds")]
    pub circuit_breaker_window: Duration,
    /// How long an open breaker refuses every attempt before it lets probes through.
    #[serde(deserialize_with = "seconds")]
    pub circuit_breaker_open_duration: Duration,
    /// Probes let through at once while half-open.
    #[serde(deserialize_with = "number")]
    pub circuit_breaker_half_open_probes: u32,
    /// Seconds a source's successful answer to a body is reused; 0 = no cache.
    #[serde(rename = "enrichment_cache_ttl", deserialize_with = "seconds")]
    pub enrichment_cache_ttl: Duration,
    /// Answers each source's cache holds at most.
    #[serde(deserialize_with = "number")]
    pub enrichment_cache_max_entries: u64,
    /// Bytes the caches of all sources hold together at most (keys, answers
    /// and a fixed estimate of the bookkeeping per entry), split evenly
    /// between the sources.
    #[serde(deserialize_with = "number")]
    pub enrichment_cache_max_bytes: u64,
    /// `ENRICHMENT_SOURCES` and each source's `SOURCE_<NAME>_*` variables; empty
    /// means one source, `EXTERNAL_API_URL`, and today's answer.
    #[serde(skip)]
    pub sources: Vec<SourceSettings>,
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

/// Variables that have no default but may be set, in the file as in the
/// environment.
const OPTIONAL: [&str; 9] = [
    "external_api_url",
    "api_tokens",
    "enricher_input_topic",
    "enrichment_sources",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
];

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
        ("retry_budget_ratio", "0.2"),
        ("retry_budget_min_per_second", "3"),
        ("circuit_breaker_failure_ratio", "0.5"),
        ("circuit_breaker_min_calls", "20"),
        ("circuit_breaker_window", "10"),
        ("circuit_breaker_open_duration", "5"),
        ("circuit_breaker_half_open_probes", "3"),
        ("enrichment_cache_ttl", "0"),
        ("enrichment_cache_max_entries", "10000"),
        ("enrichment_cache_max_bytes", "16777216"),
        ("enricher_output_topic", "profiles.enriched"),
        ("enricher_dlq_topic", "profiles.dlq"),
        ("kafka_group_id", "profile-enricher"),
        ("kafka_auto_offset_reset", "earliest"),
        ("kafka_session_timeout_ms", "45000"),
        ("kafka_heartbeat_interval_ms", "3000"),
        ("enricher_kafka_max_in_flight", "64"),
        ("enricher_kafka_retry_backoff", "1"),
    ];
    defaults.extend(HttpSettings::DEFAULTS);
    defaults.extend(KafkaConnection::DEFAULTS);
    // Its own prefetch bound: its pace is its upstream's (hundreds of profiles a
    // second), and its pod has 64 MiB (README, "Memory, worst case").
    defaults.push(("kafka_queued_max_kbytes", "2048"));
    // The file's values sit between the defaults and the environment.
    let file = match variables.value("ENRICHER_CONFIG") {
        Some(path) => Some(sources::File::read(&path, |key| {
            defaults.iter().any(|(known, _)| *known == key) || OPTIONAL.contains(&key)
        })?),
        None => None,
    };
    let mut layered: Vec<(&str, &str)> = defaults.clone();
    if let Some(file) = &file {
        layered.extend(file.texts());
    }
    let source = settings::read(&layered, variables)?;
    let own: Own = source.get()?;
    let mut upstream: UpstreamSettings = source.get()?;
    upstream.sources = sources::declared(&source, file.as_ref())?;
    let mut kafka: KafkaSettings = source.get()?;
    kafka.connection = source.get()?;
    let settings = Settings {
        host: own.enricher_host,
        port: own.enricher_port,
        env: own.env,
        external_api_url: own.external_api_url,
        upstream,
        http: source.get()?,
        api_tokens: own.api_tokens,
        kafka,
    };
    settings.check()?;
    Ok(settings)
}

impl Settings {
    fn check(&self) -> anyhow::Result<()> {
        let upstream = &self.upstream;
        ensure!(
            self.kafka.enricher_kafka_max_in_flight >= 1,
            "ENRICHER_KAFKA_MAX_IN_FLIGHT must be at least 1"
        );
        ensure!(
            self.kafka.enricher_kafka_retry_backoff <= MAX_WAIT,
            "ENRICHER_KAFKA_RETRY_BACKOFF must be at most {} seconds",
            MAX_WAIT.as_secs()
        );
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
            ("CIRCUIT_BREAKER_WINDOW", upstream.circuit_breaker_window),
            (
                "CIRCUIT_BREAKER_OPEN_DURATION",
                upstream.circuit_breaker_open_duration,
            ),
            ("ENRICHMENT_CACHE_TTL", upstream.enrichment_cache_ttl),
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
        ensure!(
            (0.0..=1.0).contains(&upstream.retry_budget_ratio),
            "RETRY_BUDGET_RATIO must be between 0 and 1"
        );
        ensure!(
            upstream.retry_budget_min_per_second <= 1_000_000,
            "RETRY_BUDGET_MIN_PER_SECOND must be at most 1000000"
        );
        ensure!(
            upstream.circuit_breaker_failure_ratio > 0.0
                && upstream.circuit_breaker_failure_ratio <= 1.0,
            "CIRCUIT_BREAKER_FAILURE_RATIO must be above 0 and at most 1"
        );
        ensure!(
            upstream.circuit_breaker_window >= Duration::from_millis(10),
            "CIRCUIT_BREAKER_WINDOW must be at least 0.01 seconds"
        );
        ensure!(
            upstream.circuit_breaker_half_open_probes >= 1,
            "CIRCUIT_BREAKER_HALF_OPEN_PROBES must be at least 1"
        );
        ensure!(
            upstream.enrichment_cache_max_entries >= 1,
            "ENRICHMENT_CACHE_MAX_ENTRIES must be at least 1"
        );
        ensure!(
            upstream.enrichment_cache_max_bytes >= MIN_CACHE_BYTES,
            "ENRICHMENT_CACHE_MAX_BYTES must be at least {MIN_CACHE_BYTES} (bytes)"
        );
        for source in &upstream.sources {
            let variable =
                |suffix: &str| format!("SOURCE_{}_{suffix}", source.name.to_ascii_uppercase());
            if let Some(timeout) = source.attempt_timeout {
                ensure!(
                    !timeout.is_zero() && timeout <= MAX_WAIT,
                    "{} must be positive and at most {} seconds",
                    variable("TIMEOUT"),
                    MAX_WAIT.as_secs()
                );
            }
            ensure!(
                source.max_concurrency != Some(0),
                "{} must be at least 1",
                variable("MAX_CONCURRENCY")
            );
        }
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
    use reqwest::StatusCode;

    use super::*;
    use crate::enrichment::request::{BodyTemplate, Method, Pointer, UrlTemplate};

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
        assert_eq!(settings.upstream.retry_budget_ratio, 0.2);
        assert_eq!(settings.upstream.retry_budget_min_per_second, 3);
        assert_eq!(settings.upstream.circuit_breaker_failure_ratio, 0.5);
        assert_eq!(settings.upstream.circuit_breaker_min_calls, 20);
        assert_eq!(
            settings.upstream.circuit_breaker_window,
            Duration::from_secs(10)
        );
        assert_eq!(
            settings.upstream.circuit_breaker_open_duration,
            Duration::from_secs(5)
        );
        assert_eq!(settings.upstream.circuit_breaker_half_open_probes, 3);
        assert_eq!(settings.upstream.enrichment_cache_ttl, Duration::ZERO);
        assert_eq!(settings.upstream.enrichment_cache_max_entries, 10_000);
        assert_eq!(
            settings.upstream.enrichment_cache_max_bytes,
            16 * 1024 * 1024
        );
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
            ("RETRY_BUDGET_RATIO", "1.5"),
            ("RETRY_BUDGET_RATIO", "NaN"),
            ("RETRY_BUDGET_RATIO", "-0.1"),
            ("RETRY_BUDGET_MIN_PER_SECOND", "-1"),
            ("CIRCUIT_BREAKER_FAILURE_RATIO", "0"),
            ("CIRCUIT_BREAKER_FAILURE_RATIO", "1.01"),
            ("CIRCUIT_BREAKER_MIN_CALLS", "many"),
            ("CIRCUIT_BREAKER_WINDOW", "0"),
            ("CIRCUIT_BREAKER_OPEN_DURATION", "1e9"),
            ("CIRCUIT_BREAKER_HALF_OPEN_PROBES", "0"),
            ("ENRICHMENT_CACHE_TTL", "-1"),
            ("ENRICHMENT_CACHE_TTL", "86401"),
            ("ENRICHMENT_CACHE_MAX_ENTRIES", "0"),
            ("ENRICHMENT_CACHE_MAX_BYTES", "0"),
        ] {
            assert!(with(&[(key, value)]).is_err(), "{key}={value}");
        }
    }

    #[test]
    fn the_caches_byte_bound_has_a_default_and_nonsense_is_refused_naming_it() {
        let settings = with(&[("ENRICHMENT_CACHE_MAX_BYTES", "1048576")]).unwrap();
        assert_eq!(settings.upstream.enrichment_cache_max_bytes, 1_048_576);
        // The entry bound of earlier versions still holds beside it.
        let both = with(&[
            ("ENRICHMENT_CACHE_MAX_BYTES", "8388608"),
            ("ENRICHMENT_CACHE_MAX_ENTRIES", "500"),
        ])
        .unwrap();
        assert_eq!(both.upstream.enrichment_cache_max_bytes, 8_388_608);
        assert_eq!(both.upstream.enrichment_cache_max_entries, 500);
        for value in ["0", "4095", "-1", "16MiB", "1e6", "lots"] {
            let error = format!(
                "{:#}",
                with(&[("ENRICHMENT_CACHE_MAX_BYTES", value)]).unwrap_err()
            );
            assert!(
                error.to_uppercase().contains("ENRICHMENT_CACHE_MAX_BYTES"),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn the_values_in_env_example_are_the_defaults() {
        let pairs: Vec<(&str, &str)> = include_str!("../../../.env.example")
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        assert!(
            pairs
                .iter()
                .any(|(key, _)| *key == "CIRCUIT_BREAKER_MIN_CALLS")
        );
        let documented = with(&pairs).unwrap();
        let defaults = with(&[]).unwrap();
        assert_eq!(
            format!("{:?}", documented.upstream),
            format!("{:?}", defaults.upstream)
        );
        // KAFKA_GROUP_ID there is the consumer's; the enricher's own are these.
        let (documented, defaults) = (documented.kafka, defaults.kafka);
        assert_eq!(documented.input_topic(), None);
        assert_eq!(
            defaults.input_topic(),
            None,
            "the Kafka mode is off by default"
        );
        assert_eq!(
            documented.enricher_output_topic,
            defaults.enricher_output_topic
        );
        assert_eq!(documented.enricher_dlq_topic, defaults.enricher_dlq_topic);
        assert_eq!(
            documented.enricher_kafka_max_in_flight,
            defaults.enricher_kafka_max_in_flight
        );
        assert_eq!(
            documented.enricher_kafka_retry_backoff,
            defaults.enricher_kafka_retry_backoff
        );
        assert_eq!(defaults.kafka_group_id, "profile-enricher");
        // KAFKA_QUEUED_MAX_KBYTES there is the consumer's (16384); the enricher's
        // own default is smaller, for its 64 MiB pods.
        assert_eq!(documented.connection.kafka_queued_max_kbytes, 16_384);
        assert_eq!(defaults.connection.kafka_queued_max_kbytes, 2048);
    }

    #[test]
    fn without_enrichment_sources_there_is_the_one_source_of_today() {
        assert!(with(&[]).unwrap().upstream.sources.is_empty());
        assert!(
            with(&[("ENRICHMENT_SOURCES", " ")])
                .unwrap()
                .upstream
                .sources
                .is_empty()
        );
    }

    #[test]
    fn declared_sources_keep_their_order_and_fall_back_to_the_single_source_variables() {
        let settings = with(&[
            ("ENRICHMENT_SOURCES", "geo, Risk_2,ads"),
            ("SOURCE_GEO_URL", "http://geo.example/enrich"),
            ("SOURCE_GEO_TIMEOUT", "0.25"),
            ("SOURCE_RISK_2_MAX_RETRIES", "0"),
            ("SOURCE_RISK_2_MAX_CONCURRENCY", "2"),
            ("SOURCE_ADS_REQUIRED", "false"),
        ])
        .unwrap();
        let sources = &settings.upstream.sources;
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["geo", "risk_2", "ads"]);
        assert_eq!(
            sources[0]
                .url
                .as_ref()
                .and_then(UrlTemplate::as_fixed)
                .map(Url::as_str),
            Some("http://geo.example/enrich")
        );
        assert_eq!(sources[0].attempt_timeout, Some(Duration::from_millis(250)));
        assert_eq!(sources[1].max_retries, Some(0));
        assert_eq!(sources[1].max_concurrency, Some(2));
        assert_eq!(sources[1].url, None);
        assert!(sources[0].required && sources[1].required && !sources[2].required);
    }

    #[test]
    fn nonsense_in_source_variables_is_refused_naming_the_variable() {
        for (pairs, variable) in [
            (
                &[("ENRICHMENT_SOURCES", "geo,,risk")][..],
                "ENRICHMENT_SOURCES",
            ),
            (&[("ENRICHMENT_SOURCES", "geo,geo")], "ENRICHMENT_SOURCES"),
            (&[("ENRICHMENT_SOURCES", "geo-ip")], "ENRICHMENT_SOURCES"),
            (&[("ENRICHMENT_SOURCES", "9geo")], "ENRICHMENT_SOURCES"),
            (
                &[("ENRICHMENT_SOURCES", "geo"), ("SOURCE_GEO_URL", "nope")],
                "SOURCE_GEO_URL",
            ),
            (
                &[("ENRICHMENT_SOURCES", "geo"), ("SOURCE_GEO_TIMEOUT", "0")],
                "SOURCE_GEO_TIMEOUT",
            ),
            (
                &[("ENRICHMENT_SOURCES", "geo"), ("SOURCE_GEO_TIMEOUT", "-1")],
                "SOURCE_GEO_TIMEOUT",
            ),
            (
                &[
                    ("ENRICHMENT_SOURCES", "geo"),
                    ("SOURCE_GEO_MAX_RETRIES", "x"),
                ],
                "SOURCE_GEO_MAX_RETRIES",
            ),
            (
                &[
                    ("ENRICHMENT_SOURCES", "geo"),
                    ("SOURCE_GEO_MAX_CONCURRENCY", "0"),
                ],
                "SOURCE_GEO_MAX_CONCURRENCY",
            ),
            (
                &[
                    ("ENRICHMENT_SOURCES", "geo"),
                    ("SOURCE_GEO_REQUIRED", "maybe"),
                ],
                "SOURCE_GEO_REQUIRED",
            ),
            (
                &[
                    ("ENRICHMENT_SOURCES", "geo"),
                    ("SOURCE_GEO_REQUIRED", "false"),
                ],
                "SOURCE_GEO_REQUIRED",
            ),
        ] {
            let error = format!("{:#}", with(pairs).unwrap_err());
            assert!(error.contains(variable), "{pairs:?}: {error}");
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
            with(&[("API_TOKENS", "sixteen-chars-xx")])
                .unwrap()
                .api_tokens
                .is_enabled()
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let settings = with(&[
            ("KAFKA_SASL_PASSWORD", "kafka-secret-1"),
            ("API_TOKENS", "token-secret-2-0123456789"),
            ("ENRICHMENT_SOURCES", "people"),
            ("SOURCE_PEOPLE_URL", "https://people.example.com/enrich"),
            ("SOURCE_PEOPLE_HEADER_X_API_KEY", "header-secret-3"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        for secret in ["kafka-secret-1", "token-secret-2", "header-secret-3"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }

    #[test]
    fn a_token_under_16_characters_stops_the_start_naming_api_tokens() {
        let file = config_file("api_tokens = \"fifteen-chars-x\"\n");
        for variables in [
            [("API_TOKENS", "fifteen-chars-x")],
            [("ENRICHER_CONFIG", file.as_str())],
        ] {
            let error = format!("{:#}", with(&variables).unwrap_err());
            assert!(error.contains("API_TOKENS"), "{variables:?}: {error}");
            assert!(!error.contains("fifteen-chars-x"), "{variables:?}: {error}");
        }
        let settings = with(&[("API_TOKENS", "sixteen-chars-xx")]).unwrap();
        assert!(settings.api_tokens.is_enabled());
    }

    #[test]
    fn a_source_takes_the_shape_of_a_real_api_from_its_variables() {
        let settings = with(&[
            ("ENRICHMENT_SOURCES", "people,risk"),
            ("SOURCE_PEOPLE_METHOD", "get"),
            (
                "SOURCE_PEOPLE_URL",
                "https://api.example/v5/person?email={email}",
            ),
            ("SOURCE_PEOPLE_HEADER_X_API_KEY", " secret-key "),
            ("SOURCE_PEOPLE_SELECT", "/data"),
            ("SOURCE_PEOPLE_INTO", "person"),
            ("SOURCE_PEOPLE_NOT_FOUND", "404, 410"),
            ("SOURCE_PEOPLE_RATE_LIMIT", "2.5"),
            (
                "SOURCE_RISK_BODY",
                r#"{"email": "{email}", "age": "{age}"}"#,
            ),
        ])
        .unwrap();
        let [people, risk] = settings.upstream.sources.as_slice() else {
            panic!("two sources");
        };
        assert_eq!(people.method, Method::Get);
        assert_eq!(
            people.url,
            Some(UrlTemplate::parse("https://api.example/v5/person?email={email}").unwrap())
        );
        assert_eq!(people.headers["x-api-key"], "secret-key");
        assert!(people.headers["x-api-key"].is_sensitive());
        assert!(!format!("{people:?}").contains("secret-key"));
        assert_eq!(people.answer.select, Some(Pointer::parse("/data").unwrap()));
        assert_eq!(people.answer.into.as_deref(), Some("person"));
        assert_eq!(people.not_found, [StatusCode::NOT_FOUND, StatusCode::GONE]);
        assert_eq!(people.rate_limit, Some(2.5));
        assert_eq!(risk.method, Method::Post);
        assert_eq!(risk.not_found, [StatusCode::NOT_FOUND]);
        assert!(matches!(risk.body, BodyTemplate::Json(_)));
        assert!(risk.headers.is_empty());
    }

    fn config_file(text: &str) -> tempfile_path::Path {
        tempfile_path::Path::with(text)
    }

    /// A file removed when dropped.
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);

        impl Path {
            pub fn with(text: &str) -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "enricher-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }

            pub fn as_str(&self) -> &str {
                self.0.to_str().unwrap()
            }
        }

        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    const TWO_SOURCES: &str = r#"
enrichment_sources = ["people", "risk"]
external_api_timeout = 3
max_retries = 1
[sources.people]
method = "GET"
url = "https://api.example.com/v5/person/enrich?email={email}"
headers = { "X-Api-Key" = "from-the-file" }
select = "/data"
into = "person"
not_found = [404]
rate_limit = 10
required = false
timeout = 2
[sources.risk]
url = "https://risk.example.com/score"
body = { email = "{email}", age = "{age}" }
"#;

    #[test]
    fn the_config_file_holds_the_same_settings_and_variables_override_it() {
        let file = config_file(TWO_SOURCES);
        let settings = with(&[("ENRICHER_CONFIG", file.as_str())]).unwrap();
        assert_eq!(settings.upstream.attempt_timeout, Duration::from_secs(3));
        assert_eq!(settings.upstream.max_retries, 1);
        let [people, risk] = settings.upstream.sources.as_slice() else {
            panic!("two sources");
        };
        assert_eq!(
            (people.name.as_str(), risk.name.as_str()),
            ("people", "risk")
        );
        assert_eq!(people.method, Method::Get);
        assert_eq!(people.headers["x-api-key"], "from-the-file");
        assert_eq!(people.answer.into.as_deref(), Some("person"));
        assert_eq!(people.not_found, [StatusCode::NOT_FOUND]);
        assert_eq!(people.rate_limit, Some(10.0));
        assert!(!people.required);
        assert_eq!(people.attempt_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            risk.body,
            BodyTemplate::parse(r#"{"age": "{age}", "email": "{email}"}"#).unwrap()
        );

        let overridden = with(&[
            ("ENRICHER_CONFIG", file.as_str()),
            ("MAX_RETRIES", "5"),
            ("SOURCE_PEOPLE_HEADER_X_API_KEY", "from-a-secret"),
            ("SOURCE_PEOPLE_REQUIRED", "true"),
        ])
        .unwrap();
        assert_eq!(overridden.upstream.max_retries, 5);
        let people = &overridden.upstream.sources[0];
        assert_eq!(people.headers["x-api-key"], "from-a-secret");
        assert_eq!(people.headers.len(), 1);
        assert!(people.required);

        // The environment's list may leave one of the file's sources out.
        let fewer = with(&[
            ("ENRICHER_CONFIG", file.as_str()),
            ("ENRICHMENT_SOURCES", "risk"),
        ])
        .unwrap();
        let names: Vec<&str> = fewer
            .upstream
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["risk"]);
    }

    #[test]
    fn nonsense_in_a_source_stops_the_start_naming_the_source_and_the_key_never_a_secret() {
        let base = [("ENRICHMENT_SOURCES", "people,risk")];
        for (pair, named) in [
            (("SOURCE_PEOPLE_METHOD", "DELETE"), "SOURCE_PEOPLE_METHOD"),
            (
                ("SOURCE_PEOPLE_URL", "https://api.example/{phone}"),
                "SOURCE_PEOPLE_URL",
            ),
            (
                ("SOURCE_PEOPLE_URL", "not a url {email}"),
                "SOURCE_PEOPLE_URL",
            ),
            (
                ("SOURCE_PEOPLE_URL", "https://{email}/x"),
                "SOURCE_PEOPLE_URL",
            ),
            (("SOURCE_PEOPLE_BODY", r#"{"a": "#), "SOURCE_PEOPLE_BODY"),
            (
                ("SOURCE_PEOPLE_BODY", r#"{"a": "{nope}"}"#),
                "SOURCE_PEOPLE_BODY",
            ),
            (("SOURCE_PEOPLE_SELECT", "data"), "SOURCE_PEOPLE_SELECT"),
            (("SOURCE_PEOPLE_SELECT", "/a~9"), "SOURCE_PEOPLE_SELECT"),
            (
                ("SOURCE_PEOPLE_NOT_FOUND", "40x"),
                "SOURCE_PEOPLE_NOT_FOUND",
            ),
            (
                ("SOURCE_PEOPLE_NOT_FOUND", "100"),
                "SOURCE_PEOPLE_NOT_FOUND",
            ),
            (
                ("SOURCE_PEOPLE_RATE_LIMIT", "0"),
                "SOURCE_PEOPLE_RATE_LIMIT",
            ),
            (
                ("SOURCE_PEOPLE_RATE_LIMIT", "fast"),
                "SOURCE_PEOPLE_RATE_LIMIT",
            ),
            (
                (
                    "SOURCE_PEOPLE_HEADER_X_KEY",
                    "line
break-secret",
                ),
                "SOURCE_PEOPLE_HEADER_X_KEY",
            ),
            (
                ("SOURCE_PEOPLE_HEADER_HOST", "evil.example"),
                "SOURCE_PEOPLE_HEADER_HOST",
            ),
        ] {
            let mut pairs = base.to_vec();
            pairs.push(pair);
            let error = format!("{:#}", with(&pairs).unwrap_err());
            assert!(error.contains(named), "{pair:?}: {error}");
            assert!(!error.contains("secret"), "{pair:?} shows a value: {error}");
        }
        let get_with_body = with(&[
            ("ENRICHMENT_SOURCES", "people"),
            ("SOURCE_PEOPLE_METHOD", "GET"),
            ("SOURCE_PEOPLE_BODY", "{}"),
        ]);
        assert!(format!("{:#}", get_with_body.unwrap_err()).contains("SOURCE_PEOPLE_BODY"));
    }

    #[test]
    fn nonsense_in_the_config_file_stops_the_start_naming_the_key() {
        for (text, named) in [
            (
                "enrichment_sources = [\"a\"]\n[sources.a]\ncolour = \"red\"\n",
                "sources.a.colour",
            ),
            ("max_retrys = 3\n", "max_retrys"),
            (
                "enrichment_sources = [\"a\"]\n[sources.b]\nurl = \"http://b.example\"\n",
                "sources.b",
            ),
            ("[sources.a]\nurl = \"http://a.example\"\n", "sources.a"),
            (
                "enrichment_sources = [\"a\"]\n[sources.a]\nmethod = \"PUT\"\n",
                "sources.a.method",
            ),
            (
                "enrichment_sources = [\"a\"]\n[sources.a]\nurl = \"http://a.example/{x}\"\n",
                "sources.a.url",
            ),
            (
                "enrichment_sources = [\"a\"]\n[sources.a]\nselect = \"x\"\n",
                "sources.a.select",
            ),
            (
                "enrichment_sources = [\"a\"]\n[sources.a]\nheaders = { \"Bad Name\" = \"v\" }\n",
                "sources.a.headers.Bad Name",
            ),
            ("external_api_timeout = \"soon\"\n", "external_api_timeout"),
            ("not toml at all [", "ENRICHER_CONFIG"),
        ] {
            let file = config_file(text);
            let error = format!(
                "{:#}",
                with(&[("ENRICHER_CONFIG", file.as_str())]).unwrap_err()
            );
            assert!(error.contains(named), "{text}: {error}");
        }
        let missing = with(&[("ENRICHER_CONFIG", "/nonexistent/enricher.toml")]).unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/enricher.toml"));
    }
}
