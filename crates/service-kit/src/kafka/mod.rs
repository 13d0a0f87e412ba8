//! Kafka plumbing every Kafka client of ours shares (feature `kafka`): how a
//! client reaches the brokers (`KAFKA_BOOTSTRAP_SERVERS` and the security
//! variables, passed through to librdkafka unchanged), how a group member
//! follows rebalances ([`MemberContext`]) and how a record that cannot be
//! processed is written to a dead-letter topic.

mod dead_letter;
mod member;

pub use dead_letter::DeadLetters;
pub use member::{MemberContext, commit};

use rdkafka::ClientConfig;
use serde::Deserialize;

/// The connection variables of every Kafka client: `KAFKA_BOOTSTRAP_SERVERS`
/// and, when set, `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`,
/// `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KafkaConnection {
    pub kafka_bootstrap_servers: String,
    #[serde(default)]
    pub kafka_security_protocol: Option<String>,
    #[serde(default)]
    pub kafka_sasl_mechanism: Option<String>,
    #[serde(default)]
    pub kafka_sasl_username: Option<String>,
    #[serde(default)]
    pub kafka_sasl_password: Option<String>,
    #[serde(default)]
    pub kafka_ssl_ca_location: Option<String>,
}

impl KafkaConnection {
    /// SPEC's default for the variables above.
    pub const DEFAULTS: [(&'static str, &'static str); 1] =
        [("kafka_bootstrap_servers", "localhost:9092")];

    /// The librdkafka settings every client of ours starts from: brokers and,
    /// when set (and not blank), the security variables, passed through.
    pub fn client_config(&self) -> ClientConfig {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{self, Variables};

    #[test]
    fn security_variables_pass_through_only_when_set() {
        let variables = [
            ("KAFKA_BOOTSTRAP_SERVERS", "broker:9093"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_PASSWORD", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let source = settings::read(&KafkaConnection::DEFAULTS, Variables::Map(variables)).unwrap();
        let config = source.get::<KafkaConnection>().unwrap().client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("broker:9093"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.password"), None);
        assert_eq!(config.get("sasl.mechanism"), None);
    }
}
