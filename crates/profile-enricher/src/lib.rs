//! profile-enricher: validates user profiles and enriches them from one or several
//! sources - upstream APIs called as they are, by configuration ([`config`],
//! [`enrichment::request`]) - with bounded concurrency, retries, a rate limit and a
//! deadline ([`enrichment`]); over HTTP ([`routes`]) and, with
//! `ENRICHER_INPUT_TOPIC`, from and to Kafka ([`kafka`]), through the same code.

pub mod config;
pub mod enrichment;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;
