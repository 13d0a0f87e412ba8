//! The user information service: `POST/GET/DELETE /user` over the user store
//! (`user-store`), with the HTTP plumbing every service shares (`service-kit`).

pub mod config;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod startup;

pub use routes::configure;
