//! profile-enricher: validates user profiles and enriches them through an upstream
//! API, with bounded concurrency, retries and a deadline (see [`enrichment`]).

pub mod config;
pub mod enrichment;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;
