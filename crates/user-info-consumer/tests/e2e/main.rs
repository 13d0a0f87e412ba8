//! End-to-end tests of the `user-info-consumer` binary against a real
//! Kafka-protocol broker (a tansu process) and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer;
mod effectively_once;
mod refused;
mod start;
mod support;
