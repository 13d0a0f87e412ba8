//! profile-enricher: validates user profiles and enriches them through an upstream
//! API, with bounded concurrency, retries and a deadline (see [`enrichment`]).

pub mod auth;
pub mod config;
pub mod enrichment;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod probe;
pub mod routes;
pub mod startup;
pub mod telemetry;
