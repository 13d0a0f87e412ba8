//! Settings, from SPEC's variables (and a `.env` file when present).

use config::{Config, ConfigError, Environment};
use rdkafka::ClientConfig;
use serde::Deserialize;
use user_info::config::seconds;
use user_info::store::DatabaseSettings;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database_url: String,
    pub database_pool_size: u32,
    pub database_connect_timeout: f64,
    pub database_query_timeout: f64,
    pub kafka_bootstrap_servers: String,
    pub kafka_topic: String,
    pub kafka_group_id: String,
    pub kafka_dlq_topic: String,
    pub kafka_auto_offset_reset: String,
    pub kafka_session_timeout_ms: u32,
    pub kafka_heartbeat_interval_ms: u32,
    pub kafka_security_protocol: Option<String>,
    pub kafka_sasl_mechanism: Option<String>,
    pub kafka_sasl_username: Option<String>,
    pub kafka_sasl_password: Option<String>,
    pub kafka_ssl_ca_location: Option<String>,
    pub consumer_metrics_host: String,
    pub consumer_metrics_port: u16,
    /// Most messages applied in one database transaction.
    pub consumer_batch_size: usize,
    /// Longest wait, in milliseconds, for a batch to fill once it has a message.
    pub consumer_batch_max_wait_ms: u64,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Config::builder()
            .set_default(
                "database_url",
                "postgres://postgres:postgres@127.0.0.1:5432/user_info",
            )?
            .set_default("database_pool_size", 10)?
            .set_default("database_connect_timeout", 5)?
            .set_default("database_query_timeout", 10)?
            .set_default("kafka_bootstrap_servers", "localhost:9092")?
            .set_default("kafka_topic", "user_service")?
            .set_default("kafka_group_id", "userinfo-consumer-group")?
            .set_default("kafka_dlq_topic", "user_service.dlq")?
            .set_default("kafka_auto_offset_reset", "earliest")?
            .set_default("kafka_session_timeout_ms", 45000)?
            .set_default("kafka_heartbeat_interval_ms", 3000)?
            .set_default("consumer_metrics_host", "0.0.0.0")?
            .set_default("consumer_metrics_port", 9811)?
            .set_default("consumer_batch_size", 500)?
            .set_default("consumer_batch_max_wait_ms", 50)?
            .add_source(Environment::default().try_parsing(true))
            .build()?
            .try_deserialize()
    }

    pub fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database_url.clone(),
            application_name: "user-info-consumer",
            pool_size: self.database_pool_size as usize,
            connect_timeout: seconds(self.database_connect_timeout),
            query_timeout: seconds(self.database_query_timeout),
        }
    }

    /// The librdkafka settings every client of ours shares: brokers and, when
    /// set, the security variables, passed through unchanged.
    pub fn kafka_client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_bootstrap_servers);
        let security = [
            ("security.protocol", &self.kafka_security_protocol),
            ("sasl.mechanism", &self.kafka_sasl_mechanism),
            ("sasl.username", &self.kafka_sasl_username),
            ("sasl.password", &self.kafka_sasl_password),
            ("ssl.ca.location", &self.kafka_ssl_ca_location),
        ];
        for (key, value) in security {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                config.set(key, value);
            }
        }
        config
    }
}
