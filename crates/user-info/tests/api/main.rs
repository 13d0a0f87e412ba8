#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod database;
mod helpers;
mod input;
mod openapi;
mod probe;
mod user;
