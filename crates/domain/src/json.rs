//! Decoding JSON bodies into DTOs, with errors that point at the failing field.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Objects and arrays may nest at most this deep; deeper input is rejected before
/// it reaches serde, so hostile input cannot exhaust the stack.
pub const MAX_JSON_DEPTH: usize = 64;

/// One failing field: its JSON path (`address.zip_code`, empty for the document
/// itself) and the rule it broke. Never carries the rejected value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why an input was rejected. The variants map onto HTTP as 400 / 422 / 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8, or nested deeper than [`MAX_JSON_DEPTH`]).
    #[error("malformed JSON: {0}")]
    Syntax(String),
    /// Well-formed JSON of the wrong shape: wrong type, missing required field.
    #[error("{} has the wrong shape: {}", subject(&.0.field), .0.message)]
    Shape(FieldError),
    /// The right shape, but values that break the rules; lists every field.
    #[error("invalid fields: {}", describe(.0))]
    Invalid(Vec<FieldError>),
}

impl ParseError {
    /// Every failing field, for the `errors` member of a problem document.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ParseError::Syntax(_) => Vec::new(),
            ParseError::Shape(error) => vec![error.clone()],
            ParseError::Invalid(errors) => errors.clone(),
        }
    }
}

fn subject(field: &str) -> &str {
    if field.is_empty() {
        "the document"
    } else {
        field
    }
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decodes a JSON object from `bytes` into `T`, classifying failures as syntax or
/// shape errors.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    // JSON is UTF-8 (RFC 8259), also inside strings serde would skip unread.
    if let Err(error) = std::str::from_utf8(bytes) {
        return Err(ParseError::Syntax(format!(
            "not UTF-8 at byte {}",
            error.valid_up_to()
        )));
    }
    check_depth(bytes)?;
    // Syntax first, over the whole input: `{} garbage` is malformed (400) even
    // though its first value would also have the wrong shape (422).
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map_err(|error| ParseError::Syntax(position(&error)))?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result =
        serde_path_to_error::deserialize(&mut deserializer).map(|Object(value): Object<T>| value);
    result.map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ParseError::Shape(shape_error(&path, &inner)),
            _ => ParseError::Syntax(position(&inner)),
        }
    })
}

fn position(error: &serde_json::Error) -> String {
    // serde_json's messages for syntax errors quote no input, only its position.
    error.to_string()
}

/// Turns serde's data error into a field error without echoing the rejected value
/// (serde quotes it: `invalid type: string "jane@example.com", expected u8`).
fn shape_error(path: &str, error: &serde_json::Error) -> FieldError {
    let path = if path == "." { "" } else { path };
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let field = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return FieldError::new(field, "is required");
    }
    let message = match text.rsplit_once(", expected ") {
        Some((_, expected)) => format!("must be {expected}"),
        None => "has an invalid value".to_owned(),
    };
    FieldError::new(path, message)
}

/// A JSON object decoded into `T`. serde's derived structs also accept arrays
/// (`["id", "John"]`), which clients never mean: this accepts objects only.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Object)
    }
}

/// For an optional nested object (`"address": {...}` or `null`); use with
/// `#[serde(default, deserialize_with = "optional_object")]`.
pub(crate) fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Object<T>>::deserialize(deserializer).map(|value| value.map(|Object(v)| v))
}

/// Rejects documents nested deeper than [`MAX_JSON_DEPTH`], scanning the raw bytes
/// (strings are skipped, so brackets inside them do not count).
fn check_depth(bytes: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ParseError::Syntax(format!(
                        "JSON nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Maps a garde report onto field errors. garde names fields by their Rust names;
/// `json_name` turns those into the JSON keys the client sent.
pub(crate) fn from_report(report: garde::Report, json_name: fn(&str) -> &str) -> ParseError {
    ParseError::Invalid(
        report
            .iter()
            .map(|(path, error)| {
                let path = path.to_string();
                let field = path.split('.').map(json_name).collect::<Vec<_>>().join(".");
                // garde's `required` says "not set"; serde's missing fields say
                // "is required" (see `shape_error`): one wording for both.
                let message = match error.message() {
                    "not set" => "is required",
                    message => message,
                };
                FieldError::new(field, message)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Probe {
        age: u8,
    }

    #[test]
    fn depth_at_the_limit_is_accepted_and_one_more_is_rejected() {
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_depth(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(matches!(
            check_depth(deep.as_bytes()),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn brackets_inside_strings_do_not_count_towards_depth() {
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100));
        assert!(check_depth(text.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        assert!(matches!(
            decode::<Probe>(b"{\"age\":"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            decode::<Probe>(b"{\"age\":1} x"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            decode::<Probe>(b"\xff"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error_even_in_an_ignored_field() {
        let body = b"{\"age\":1,\"ignored\":\"\xff\xfe\"}";
        assert!(matches!(decode::<Probe>(body), Err(ParseError::Syntax(_))));
        assert!(decode::<Probe>("{\"age\":1,\"ignored\":\"\u{e9}t\u{e9}\"}".as_bytes()).is_ok());
    }

    #[test]
    fn trailing_garbage_is_a_syntax_error_even_after_a_wrongly_shaped_value() {
        assert!(matches!(
            decode::<Probe>(b"{} {}"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            decode::<Probe>(b"[] x"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn wrong_type_names_the_field_but_not_the_value() {
        let Err(ParseError::Shape(error)) = decode::<Probe>(br#"{"age":"secret@example.com"}"#)
        else {
            panic!("expected a shape error");
        };
        assert_eq!(error.field, "age");
        assert!(!error.message.contains("secret"), "{}", error.message);
    }

    #[test]
    fn missing_required_field_is_named() {
        let Err(ParseError::Shape(error)) = decode::<Probe>(b"{}") else {
            panic!("expected a shape error");
        };
        assert_eq!(error, FieldError::new("age", "is required"));
    }

    #[test]
    fn an_array_instead_of_an_object_is_a_shape_error() {
        assert!(matches!(decode::<Probe>(b"[1]"), Err(ParseError::Shape(_))));
        assert!(matches!(
            decode::<Probe>(b"null"),
            Err(ParseError::Shape(_))
        ));
    }
}
