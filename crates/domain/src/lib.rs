//! The shared models of the product and the rules that make them valid.
//!
//! Every input - an HTTP body or a Kafka record - is parsed here, from bytes, into
//! types that can only hold valid values. Parsing reports *every* failing field by
//! its JSON path and names the rule that failed, never the rejected value, so the
//! errors are safe to log and to put in a dead-letter header. No HTTP, no SQL.

pub mod fold;
mod json;
pub mod profile;
mod rules;
pub mod user;

pub use fold::{Change, Folded, fold_changes};
pub use json::{FieldError, MAX_JSON_DEPTH, ParseError};
pub use profile::{Field, FieldValue, Profile};
pub use user::{Email, Name, PhoneNumber, UserChange, UserFields, parse_user_id};
