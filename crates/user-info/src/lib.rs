//! The user information service: `POST/PATCH/GET/DELETE /user` (versioned, conditional, idempotent) over the user store
//! (`user-store`), with the HTTP plumbing every service shares (`service-kit`).

pub mod conditional;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;

pub use routes::configure;
