//! Settings, from the documented variables (and a `.env` file when present).

use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use service_kit::http::ApiTokens;
use service_kit::kafka::KafkaConnection;
use service_kit::settings::{self, FromVariables, SettingsError, Variables, number};
use user_store::DatabaseSettings;

/// Everything the consumer is told: its own variables and the database's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub consumer: ConsumerSettings,
    pub database: DatabaseSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerSettings {
    pub kafka_topic: String,
    pub kafka_group_id: String,
    pub kafka_dlq_topic: String,
    pub kafka_auto_offset_reset: String,
    #[serde(deserialize_with = "number")]
    pub kafka_session_timeout_ms: u32,
    #[serde(deserialize_with = "number")]
    pub kafka_heartbeat_interval_ms: u32,
    /// Longest pause between two polls before librdkafka leaves the group (a
    /// member stuck on a silent database gives its partitions up).
    #[serde(deserialize_with = "number")]
    pub kafka_max_poll_interval_ms: u32,
    /// `KAFKA_BOOTSTRAP_SERVERS` and the security variables, shared with the
    /// enricher's Kafka clients (read as a struct of their own).
    #[serde(skip)]
    pub kafka: KafkaConnection,
    pub consumer_metrics_host: String,
    #[serde(deserialize_with = "number")]
    pub consumer_metrics_port: u16,
    /// Most messages applied in one database transaction.
    #[serde(deserialize_with = "number")]
    pub consumer_batch_size: usize,
    /// Most bytes (keys and values) a batch takes in - and so the read-ahead
    /// beside it: a backlog of large records fills a batch by bytes, not by
    /// count. A record larger than this makes a batch of its own.
    #[serde(deserialize_with = "number")]
    pub consumer_batch_max_bytes: usize,
    /// Longest wait, in milliseconds, for a batch to fill once it has a message.
    #[serde(deserialize_with = "number")]
    pub consumer_batch_max_wait_ms: u64,
    /// `API_TOKENS`, the bearer tokens of the HTTP services. The consumer's port
    /// serves only paths open without a token, so it checks them as every
    /// process does (a short one stops it at start; none is a warning) and
    /// guards nothing with them.
    #[serde(default)]
    pub api_tokens: ApiTokens,
}

impl FromVariables for Settings {
    /// The documented variables; unset ones take their defaults.
    fn read(variables: Variables) -> Result<Self, SettingsError> {
        let mut defaults = vec![
            ("kafka_topic", "user_service"),
            ("kafka_group_id", "userinfo-consumer-group"),
            ("kafka_dlq_topic", "user_service.dlq"),
            ("kafka_auto_offset_reset", "earliest"),
            ("kafka_session_timeout_ms", "45000"),
            ("kafka_heartbeat_interval_ms", "3000"),
            ("kafka_max_poll_interval_ms", "300000"),
            ("consumer_metrics_host", "0.0.0.0"),
            ("consumer_metrics_port", "9811"),
            ("consumer_batch_size", "500"),
            ("consumer_batch_max_bytes", "8388608"),
            ("consumer_batch_max_wait_ms", "50"),
        ];
        defaults.extend(DatabaseSettings::DEFAULTS);
        defaults.extend(KafkaConnection::DEFAULTS);
        let source = settings::read(&defaults, variables)?;
        let mut consumer: ConsumerSettings = source.get()?;
        consumer.kafka = source.get()?;
        Ok(Settings {
            consumer,
            database: source.get()?,
        })
    }
}

impl ConsumerSettings {
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.consumer_batch_max_wait_ms)
    }

    /// The librdkafka settings every client of ours shares (`service_kit::kafka`).
    pub fn kafka_client(&self) -> ClientConfig {
        self.kafka.client_config()
    }

    /// The same for a consumer: its prefetch bounded by `KAFKA_QUEUED_MAX_KBYTES`.
    pub fn kafka_consumer(&self) -> ClientConfig {
        self.kafka.consumer_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_pairs(pairs)
    }

    #[test]
    fn a_token_under_16_characters_stops_the_consumer_naming_api_tokens() {
        let error = with(&[("API_TOKENS", "fifteen-chars-x")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("API_TOKENS"), "{error}");
        assert!(!error.contains("fifteen-chars-x"), "{error}");
        let settings = with(&[("API_TOKENS", "sixteen-chars-xx")]).unwrap();
        assert!(settings.consumer.api_tokens.is_enabled());
        assert!(!with(&[]).unwrap().consumer.api_tokens.is_enabled());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let settings = with(&[
            (
                "DATABASE_URL",
                "postgres://user_info:db-secret-1@db:5432/user_info",
            ),
            ("KAFKA_SASL_PASSWORD", "kafka-secret-2"),
            ("API_TOKENS", "token-secret-3-0123456789"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        for secret in ["db-secret-1", "kafka-secret-2", "token-secret-3"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }
}
