//! The user information service: `POST/GET/DELETE /user` over PostgreSQL, and the
//! store the Kafka consumer shares.

pub mod config;
pub mod error;
pub mod http;
pub mod openapi;
pub mod postgres;
pub mod probe;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use routes::configure;
