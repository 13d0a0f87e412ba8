#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod binary;
mod coalescing;
mod dummy_enrich;
mod health;
mod helpers;
mod http_errors;
mod kafka;
mod openapi;
mod probe;
mod resilience;
mod sources;
mod traces;
mod upstream;
mod users;
mod validation;
