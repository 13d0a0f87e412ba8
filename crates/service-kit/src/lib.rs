//! What every process of the system shares, so that the three behave the same
//! way where a user or an operator can tell: how settings are read and refused,
//! how logs look, how a container probes health, how a stop signal is heard -
//! and, behind the `http` feature, how HTTP requests are limited, authenticated
//! and answered when they fail (RFC 9457 problem documents); behind `kafka`,
//! how a Kafka client connects and writes dead letters; behind `metrics`, how
//! metrics are named and exposed; behind `testing`, a
//! tansu broker for end-to-end tests.

mod error;
pub mod probe;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "kafka")]
pub mod kafka;

#[cfg(feature = "metrics")]
pub mod metrics;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::error_chain;
