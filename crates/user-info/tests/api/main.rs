#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod database;
mod helpers;
mod idempotency;
mod input;
mod logs;
mod metrics;
mod openapi;
mod patch;
mod probe;
mod slow_clients;
mod traces;
mod user;
mod versions;
