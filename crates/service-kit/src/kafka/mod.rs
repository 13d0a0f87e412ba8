//! Kafka plumbing every Kafka client of ours shares (feature `kafka`): how a
//! client reaches the brokers (`KAFKA_BOOTSTRAP_SERVERS` and the security
//! variables, passed through to librdkafka unchanged), how a group member
//! follows rebalances ([`MemberContext`]) and how a record that cannot be
//! processed is written to a dead-letter topic; how a record's trace context
//! travels in its headers ([`trace`]).

mod dead_letter;
mod member;
pub mod trace;

pub use dead_letter::DeadLetters;
pub use member::{MemberContext, commit};

use std::fmt;
use std::ops::Deref;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// A Kafka client that is dropped on a thread of its own. Dropping an rdkafka
/// consumer closes it, and closing waits for the group coordinator (the final
/// commit, leaving the group): with the broker unreachable that wait has no
/// useful bound, and on an async runtime's thread it would stall every task of
/// the thread - or, when a runtime is torn down with the client still in a
/// task, the thread tearing it down. The graceful path closes the client itself,
/// bounded ([`DropAside::into_inner`], dropped on a thread under a timeout); any
/// other drop only starts the close and returns.
pub struct DropAside<T: Send + 'static>(Option<T>);

// The client is taken out only by `into_inner` and `drop`, which both consume
// the wrapper: while it can be used, it is there.
#[allow(clippy::expect_used)]
impl<T: Send + 'static> DropAside<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }

    /// The client, to close where and how the caller decides.
    pub fn into_inner(mut self) -> T {
        self.0.take().expect("present until dropped or taken")
    }
}

#[allow(clippy::expect_used)]
impl<T: Send + 'static> Deref for DropAside<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped or taken")
    }
}

impl<T: Send + 'static> Drop for DropAside<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // Detached: the process may end before the close does.
            let _ = std::thread::Builder::new()
                .name("kafka-close".to_owned())
                .spawn(move || drop(client));
        }
    }
}

/// The connection variables of every Kafka client: `KAFKA_BOOTSTRAP_SERVERS`
/// and, when set, `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`,
/// `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION`.
/// `Debug` shows whether the password is set, never the password.
#[derive(Clone, Default, Deserialize)]
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

impl fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so that a field added later must be placed here too.
        let Self {
            kafka_bootstrap_servers,
            kafka_security_protocol,
            kafka_sasl_mechanism,
            kafka_sasl_username,
            kafka_sasl_password,
            kafka_ssl_ca_location,
        } = self;
        f.debug_struct("KafkaConnection")
            .field("kafka_bootstrap_servers", kafka_bootstrap_servers)
            .field("kafka_security_protocol", kafka_security_protocol)
            .field("kafka_sasl_mechanism", kafka_sasl_mechanism)
            .field("kafka_sasl_username", kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &kafka_sasl_password.as_ref().map(|_| "***"),
            )
            .field("kafka_ssl_ca_location", kafka_ssl_ca_location)
            .finish()
    }
}

impl KafkaConnection {
    /// The documented default for the variables above.
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

    #[test]
    fn debug_output_never_shows_the_sasl_password() {
        let connection = KafkaConnection {
            kafka_bootstrap_servers: "broker:9093".to_owned(),
            kafka_sasl_username: Some("consumer".to_owned()),
            kafka_sasl_password: Some("hunter2-kafka-secret".to_owned()),
            ..KafkaConnection::default()
        };
        let shown = format!("{connection:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains(r#"kafka_sasl_password: Some("***")"#),
            "{shown}"
        );
        assert!(shown.contains("broker:9093"), "{shown}");
        assert!(shown.contains("consumer"), "{shown}");
        let unset = format!("{:?}", KafkaConnection::default());
        assert!(unset.contains("kafka_sasl_password: None"), "{unset}");
    }
}
