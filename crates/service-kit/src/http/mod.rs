//! The HTTP plumbing of every actix-web process, so that limits, authentication
//! and error answers are the same everywhere:
//!
//! - [`guard`]: one middleware for every app - 431 past [`MAX_HEAD_BYTES`], 401
//!   without a valid bearer token (when `API_TOKENS` is set), and the request id
//!   echoed as `x-request-id`;
//! - [`JsonBody`], [`MergePatchBody`]: the body extractors - 415 unless JSON
//!   (or a JSON merge patch), 413 past [`MAX_BODY_BYTES`], 408 when it arrives
//!   too slowly;
//! - [`Problem`] and [`render_problem`]: every error answer, ours or actix's own,
//!   is an RFC 9457 `application/problem+json` document;
//! - [`BearerAuth`]: the bearer scheme in the OpenAPI documents;
//! - [`HttpMetrics`] and [`record_request`]: request counts and durations by
//!   route and status, under the service's metric prefix;
//! - [`docs`] and [`DocsPage`]: the `/docs` API explorer;
//! - [`RequestSpan`]: the span of every request (tracing-actix-web's root span,
//!   its trace part only while traces are exported).

mod auth;
mod body;
mod explorer;
mod guard;
mod metrics;
mod openapi;
mod problem;
mod span;

pub use auth::{ApiTokens, MIN_TOKEN_LENGTH, OPEN_PATHS, TokenTooShort, caller_scope};
pub use body::{BodyError, JsonBody, MAX_BODY_BYTES, MediaType, MergePatchBody};
pub use explorer::{__path_docs, DocsPage, docs};
pub use guard::{MAX_HEAD_BYTES, guard, head_size};
pub use metrics::{HttpMetrics, record_request};
pub use openapi::BearerAuth;
pub use problem::{PROBLEM_JSON, Problem, problem_response, render_problem, retry_after};
pub use span::RequestSpan;
