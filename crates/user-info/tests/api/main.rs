#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod database;
mod helpers;
mod input;
mod logs;
mod openapi;
mod probe;
mod slow_clients;
mod user;
