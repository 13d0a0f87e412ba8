//! Kafka plumbing every Kafka client of ours shares (feature `kafka`): how a
//! client reaches the brokers (`KAFKA_BOOTSTRAP_SERVERS` and the security
//! variables, passed through to librdkafka unchanged), how much a consumer may
//! fetch ahead (`KAFKA_QUEUED_MAX_KBYTES`), how a group member
//! follows rebalances ([`MemberContext`]) and how a record that cannot be
//! processed is written to a dead-letter topic; how a record's trace context
//! travels in its headers ([`trace`]).

mod dead_letter;
mod member;
pub mod trace;

pub use dead_letter::{DEAD_LETTER_MAX_BYTES, DeadLetters};
pub use member::{MemberContext, commit};

use std::fmt;
use std::ops::Deref;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};

use crate::settings::parse_number;

/// `KAFKA_QUEUED_MAX_KBYTES`'s default: a consumer fetches ahead at most 16 MiB of
/// records (librdkafka's own default is 64 MiB). Less starves a consumer of a
/// broker whose fetches take tens of milliseconds: at 2 MiB the user-info
/// consumer's ingest fell from 71,000 to 12,500 records/s against tansu. The
/// enricher, whose pace is its upstream's and whose pod has 64 MiB, sets a
/// smaller default of its own.
pub const DEFAULT_QUEUED_MAX_KBYTES: u32 = 16 * 1024;

/// librdkafka's upper bound for `queued.max.messages.kbytes`.
const MAX_QUEUED_MAX_KBYTES: u32 = 2_097_151;

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
/// `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION`; and
/// for consumers `KAFKA_QUEUED_MAX_KBYTES`.
/// `Debug` shows whether the password is set, never the password.
#[derive(Clone, Deserialize)]
pub struct KafkaConnection {
    pub kafka_bootstrap_servers: String,
    /// KiB of records a consumer fetches ahead of what it has taken, at most
    /// (librdkafka's `queued.max.messages.kbytes`, for all its partitions
    /// together); see [`KafkaConnection::consumer_config`].
    #[serde(deserialize_with = "queued_kbytes")]
    pub kafka_queued_max_kbytes: u32,
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
            kafka_queued_max_kbytes,
            kafka_security_protocol,
            kafka_sasl_mechanism,
            kafka_sasl_username,
            kafka_sasl_password,
            kafka_ssl_ca_location,
        } = self;
        f.debug_struct("KafkaConnection")
            .field("kafka_bootstrap_servers", kafka_bootstrap_servers)
            .field("kafka_queued_max_kbytes", kafka_queued_max_kbytes)
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

/// The documented defaults, no security variable set.
impl Default for KafkaConnection {
    fn default() -> Self {
        Self {
            kafka_bootstrap_servers: "localhost:9092".to_owned(),
            kafka_queued_max_kbytes: DEFAULT_QUEUED_MAX_KBYTES,
            kafka_security_protocol: None,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
        }
    }
}

/// `KAFKA_QUEUED_MAX_KBYTES`: a whole number within librdkafka's range.
fn queued_kbytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let refused = || {
        serde::de::Error::custom(format!(
            "KAFKA_QUEUED_MAX_KBYTES must be a whole number of KiB from 1 to {MAX_QUEUED_MAX_KBYTES}"
        ))
    };
    let kbytes: u32 = parse_number(&String::deserialize(deserializer)?).map_err(|_| refused())?;
    if (1..=MAX_QUEUED_MAX_KBYTES).contains(&kbytes) {
        Ok(kbytes)
    } else {
        Err(refused())
    }
}

impl KafkaConnection {
    /// The documented defaults for the variables above.
    pub const DEFAULTS: [(&'static str, &'static str); 2] = [
        ("kafka_bootstrap_servers", "localhost:9092"),
        ("kafka_queued_max_kbytes", "16384"),
    ];

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

    /// [`client_config`](Self::client_config) for a consumer: its prefetch
    /// bounded by `KAFKA_QUEUED_MAX_KBYTES` (librdkafka's default is 64 MiB).
    /// librdkafka lowers `fetch.max.bytes` to the same figure, never below
    /// `message.max.bytes` (1 MB), so one fetch response overshoots the bound
    /// by at most that much per broker.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config.set(
            "queued.max.messages.kbytes",
            self.kafka_queued_max_kbytes.to_string(),
        );
        config
    }

    /// [`consumer_config`](Self::consumer_config) for a member of `group`
    /// that stores each partition's offset itself once the records before it
    /// are done (auto offset store off; what it stores is committed every
    /// second), with no partition EOF events and statistics (lag) every 5 s.
    pub fn member_config(
        &self,
        group: &str,
        auto_offset_reset: &str,
        session_timeout_ms: u32,
        heartbeat_interval_ms: u32,
    ) -> ClientConfig {
        let mut config = self.consumer_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", auto_offset_reset)
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_interval_ms.to_string())
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000");
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

    fn connection(
        pairs: &[(&str, &str)],
    ) -> Result<KafkaConnection, crate::settings::SettingsError> {
        let variables = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings::read(&KafkaConnection::DEFAULTS, Variables::Map(variables))?.get()
    }

    #[test]
    fn a_consumer_fetches_ahead_at_most_kafka_queued_max_kbytes() {
        let kbytes = |connection: &KafkaConnection| {
            connection
                .consumer_config()
                .get("queued.max.messages.kbytes")
                .map(str::to_owned)
        };
        let defaults = connection(&[]).unwrap();
        assert_eq!(defaults.kafka_queued_max_kbytes, DEFAULT_QUEUED_MAX_KBYTES);
        assert_eq!(kbytes(&defaults).as_deref(), Some("16384"));
        assert_eq!(
            kbytes(&KafkaConnection::default()).as_deref(),
            Some("16384")
        );
        let set = connection(&[("KAFKA_QUEUED_MAX_KBYTES", " 512 ")]).unwrap();
        assert_eq!(kbytes(&set).as_deref(), Some("512"));
        // A producer has no prefetch: librdkafka would warn about the setting.
        assert_eq!(set.client_config().get("queued.max.messages.kbytes"), None);
    }

    #[test]
    fn a_kafka_queued_max_kbytes_out_of_librdkafkas_range_is_refused_naming_it() {
        for value in ["0", "-1", "2097152", "lots", "1.5"] {
            let error = connection(&[("KAFKA_QUEUED_MAX_KBYTES", value)])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("KAFKA_QUEUED_MAX_KBYTES"),
                "{value:?}: {error}"
            );
        }
        assert!(connection(&[("KAFKA_QUEUED_MAX_KBYTES", "2097151")]).is_ok());
        assert!(connection(&[("KAFKA_QUEUED_MAX_KBYTES", "1")]).is_ok());
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
