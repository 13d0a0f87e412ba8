//! The shared models of the product and the rules that make them valid.
//!
//! Every input - an HTTP body or a Kafka record - is parsed here, from bytes, into
//! types that can only hold valid values. Parsing reports *every* failing field by
//! its JSON path and names the rule that failed, never the rejected value, so the
//! errors are safe to log and to put in a dead-letter header.

mod json;
pub mod problem;
pub mod profile;
pub mod user;

pub use json::{FieldError, MAX_JSON_DEPTH, ParseError};
pub use problem::{PROBLEM_JSON, Problem};
pub use profile::Profile;
pub use user::{
    Change, Email, Folded, Name, PhoneNumber, UserChange, UserFields, fold_changes, parse_user_id,
};
