//! A change to a stored user, as sent by `POST /user` and by Kafka records.
//!
//! Merge rule: a field absent from the input leaves the stored value unchanged;
//! `""` or `null` clears it (stored as `''`); any other value replaces it. The same
//! [`UserChange`] is parsed from both inputs, so both obey the same rules.

use garde::Validate;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::json::{self, FieldError, ParseError};
use crate::rules::{is_email, no_nul};

pub const NAME_MAX_CHARS: usize = 150;
pub const EMAIL_MAX_CHARS: usize = 254;
pub const PHONE_MIN_CHARS: usize = 3;
pub const PHONE_MAX_CHARS: usize = 32;

/// A first or last name: at most 150 characters, possibly empty (cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub(crate) String);

/// An e-mail address, or empty (cleared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// A phone number of digits, an optional leading `+` and separators, or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

macro_rules! text_newtype {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
text_newtype!(Name, Email, PhoneNumber);

/// The fields a change sets; `None` means "leave unchanged".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFields {
    pub first_name: Option<Name>,
    pub last_name: Option<Name>,
    pub email: Option<Email>,
    pub phone_number: Option<PhoneNumber>,
}

impl UserFields {
    /// Applies `later` on top of `self`: what `later` sets wins, the rest stays.
    pub fn merge(&mut self, later: UserFields) {
        if later.first_name.is_some() {
            self.first_name = later.first_name;
        }
        if later.last_name.is_some() {
            self.last_name = later.last_name;
        }
        if later.email.is_some() {
            self.email = later.email;
        }
        if later.phone_number.is_some() {
            self.phone_number = later.phone_number;
        }
    }
}

/// A validated create-or-update request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// Absent in a `POST /user` that creates a user with a generated id.
    pub user_id: Option<Uuid>,
    pub fields: UserFields,
}

impl UserChange {
    /// Parses and validates a JSON body; every failing field is reported.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        let dto: UserChangeDto = json::decode(bytes)?;
        dto.validate_into()
    }

    /// Like [`UserChange::from_json`], but `user_id` is required (Kafka records).
    pub fn from_record(bytes: &[u8]) -> Result<(Uuid, UserFields), ParseError> {
        let change = Self::from_json(bytes)?;
        match change.user_id {
            Some(id) => Ok((id, change.fields)),
            None => Err(ParseError::Invalid(vec![FieldError::new(
                "user_id",
                "is required",
            )])),
        }
    }
}

/// Parses a user id as found in a query string or a record key: any letter case.
pub fn parse_user_id(text: &str) -> Option<Uuid> {
    // `Uuid::parse_str` also takes the braced and urn forms; we take what the old
    // service took: the 36-character hyphenated form and the 32-digit simple one.
    if text.len() != 36 && text.len() != 32 {
        return None;
    }
    Uuid::parse_str(text).ok()
}

#[derive(Deserialize)]
struct UserChangeDto {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    phone_number: Option<Option<String>>,
}

/// Distinguishes a field that is present (possibly `null`) from an absent one.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The input that garde checks, `null` turned into `""`. Values are taken as sent
/// (not trimmed), so that the published schema describes exactly what is accepted.
#[derive(Validate)]
struct UserForm {
    #[garde(custom(valid_uuid))]
    user_id: Option<String>,
    #[garde(length(chars, max = NAME_MAX_CHARS), inner(custom(no_nul)))]
    first_name: Option<String>,
    #[garde(length(chars, max = NAME_MAX_CHARS), inner(custom(no_nul)))]
    last_name: Option<String>,
    #[garde(length(chars, max = EMAIL_MAX_CHARS), inner(custom(blank_or_email)))]
    email: Option<String>,
    #[garde(inner(custom(blank_or_phone)))]
    phone_number: Option<String>,
}

impl UserChangeDto {
    fn validate_into(self) -> Result<UserChange, ParseError> {
        let clean = |value: Option<Option<String>>| value.map(Option::unwrap_or_default);
        let form = UserForm {
            user_id: self.user_id,
            first_name: clean(self.first_name),
            last_name: clean(self.last_name),
            email: clean(self.email),
            phone_number: clean(self.phone_number),
        };
        form.validate()
            .map_err(|report| json::from_report(report, |name| name))?;
        Ok(UserChange {
            user_id: form.user_id.as_deref().and_then(parse_user_id),
            fields: UserFields {
                first_name: form.first_name.map(Name),
                last_name: form.last_name.map(Name),
                email: form.email.map(Email),
                phone_number: form.phone_number.map(PhoneNumber),
            },
        })
    }
}

fn valid_uuid(value: &Option<String>, _: &()) -> garde::Result {
    match value {
        Some(text) if parse_user_id(text).is_none() => Err(garde::Error::new("must be a UUID")),
        _ => Ok(()),
    }
}

fn blank_or_email(value: &str, ctx: &()) -> garde::Result {
    if value.is_empty() {
        return Ok(());
    }
    no_nul(value, ctx)?;
    is_email(value)
}

fn blank_or_phone(value: &str, _: &()) -> garde::Result {
    if value.is_empty() {
        return Ok(());
    }
    let length = value.chars().count();
    let body = value.strip_prefix('+').unwrap_or(value);
    let well_formed = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
        && body.chars().any(|c| c.is_ascii_digit());
    if !(PHONE_MIN_CHARS..=PHONE_MAX_CHARS).contains(&length) || !well_formed {
        return Err(garde::Error::new(format!(
            "must be {PHONE_MIN_CHARS}-{PHONE_MAX_CHARS} characters of digits, an optional leading + and separators (space - . ( ))"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<UserChange, ParseError> {
        UserChange::from_json(json.as_bytes())
    }

    fn invalid_fields(json: &str) -> Vec<String> {
        match parse(json) {
            Err(ParseError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    fn name(text: &str) -> Option<Name> {
        Some(Name(text.to_owned()))
    }

    #[test]
    fn the_spec_example_parses() {
        let change = parse(
            r#"{"user_id":"e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1","first_name":"John","last_name":"Doe","email":"john.doe@example.com","phone_number":"+1234567890"}"#,
        )
        .unwrap();
        assert_eq!(
            change.user_id.unwrap().to_string(),
            "e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"
        );
        assert_eq!(change.fields.first_name, name("John"));
        assert_eq!(change.fields.phone_number.unwrap().as_str(), "+1234567890");
    }

    #[test]
    fn absent_fields_are_unchanged_and_null_or_empty_clears() {
        let change = parse(r#"{"first_name":null,"last_name":"","email":""}"#).unwrap();
        assert_eq!(change.user_id, None);
        assert_eq!(change.fields.first_name, name(""));
        assert_eq!(change.fields.last_name, name(""));
        assert_eq!(change.fields.email.unwrap().as_str(), "");
        assert_eq!(change.fields.phone_number, None);
    }

    #[test]
    fn values_are_taken_as_sent_not_trimmed() {
        let change = parse(r#"{"first_name":"  Ann ","phone_number":"+1 555 "}"#).unwrap();
        assert_eq!(change.fields.first_name, name("  Ann "));
        assert_eq!(
            invalid_fields(r#"{"user_id":" e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"}"#),
            ["user_id"]
        );
        assert_eq!(
            invalid_fields(r#"{"phone_number":"   "}"#),
            ["phone_number"]
        );
    }

    #[test]
    fn user_id_is_accepted_in_any_case_and_kept_lower_case() {
        let change = parse(r#"{"user_id":"E4B5F7FE-0937-4D7B-B6B4-E8D23262B3F1"}"#).unwrap();
        assert_eq!(
            change.user_id.unwrap().to_string(),
            "e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1"
        );
    }

    #[test]
    fn user_id_must_be_a_uuid() {
        assert_eq!(invalid_fields(r#"{"user_id":"not-a-uuid"}"#), ["user_id"]);
        assert_eq!(invalid_fields(r#"{"user_id":""}"#), ["user_id"]);
        assert_eq!(
            invalid_fields(r#"{"user_id":"{e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1}"}"#),
            ["user_id"]
        );
    }

    #[test]
    fn names_may_have_150_characters_but_not_151() {
        let ok = "é".repeat(150);
        assert!(parse(&format!(r#"{{"first_name":"{ok}","last_name":"{ok}"}}"#)).is_ok());
        let long = "a".repeat(151);
        assert_eq!(
            invalid_fields(&format!(
                r#"{{"first_name":"{long}","last_name":"{long}"}}"#
            )),
            ["first_name", "last_name"]
        );
    }

    #[test]
    fn emails_are_checked_unless_blank() {
        for ok in ["john.doe@example.com", "a+b@sub.example.org", "", "x@y.io"] {
            assert!(parse(&format!(r#"{{"email":"{ok}"}}"#)).is_ok(), "{ok}");
        }
        for bad in [
            "plainaddress",
            "@example.com",
            "john@",
            "john@localhost",
            "a b@c.de",
            " x@y.io ",
        ] {
            assert_eq!(
                invalid_fields(&format!(r#"{{"email":"{bad}"}}"#)),
                ["email"],
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_may_have_254_characters_but_not_255() {
        let domain = format!("{}.{}.{}", "b".repeat(60), "c".repeat(60), "d".repeat(63));
        let at_limit = format!("{}@{domain}.com", "a".repeat(64));
        assert_eq!(at_limit.len(), 254);
        assert!(parse(&format!(r#"{{"email":"{at_limit}"}}"#)).is_ok());
        let over = format!("{}@{domain}.comx", "a".repeat(64));
        assert_eq!(
            invalid_fields(&format!(r#"{{"email":"{over}"}}"#)),
            ["email"]
        );
    }

    #[test]
    fn phone_numbers_follow_the_format() {
        for ok in [
            "+1234567890",
            "123",
            "+1 (555) 123-4567",
            "555.123.4567",
            "",
            &"1".repeat(32),
        ] {
            assert!(
                parse(&format!(r#"{{"phone_number":"{ok}"}}"#)).is_ok(),
                "{ok}"
            );
        }
        let too_long = "1".repeat(33);
        for bad in [
            "12",
            "abc",
            "12a45",
            "1+234",
            "++123",
            "---",
            too_long.as_str(),
        ] {
            assert_eq!(
                invalid_fields(&format!(r#"{{"phone_number":"{bad}"}}"#)),
                ["phone_number"],
                "{bad}"
            );
        }
    }

    #[test]
    fn every_failing_field_is_listed() {
        let long = "x".repeat(151);
        let fields = invalid_fields(&format!(
            r#"{{"user_id":"nope","first_name":"{long}","email":"bad","phone_number":"x"}}"#
        ));
        assert_eq!(fields, ["email", "first_name", "phone_number", "user_id"]);
    }

    #[test]
    fn nul_characters_are_rejected() {
        assert_eq!(
            invalid_fields(r#"{"first_name":"a\u0000b"}"#),
            ["first_name"]
        );
        assert_eq!(invalid_fields(r#"{"email":"a\u0000@b.com"}"#), ["email"]);
    }

    #[test]
    fn error_messages_do_not_repeat_the_value() {
        let Err(error) = parse(r#"{"email":"secret-person@nowhere","phone_number":"555-SECRET"}"#)
        else {
            panic!("expected errors");
        };
        let text = error.to_string();
        assert!(
            !text.contains("secret-person") && !text.contains("SECRET"),
            "{text}"
        );
    }

    #[test]
    fn wrong_types_and_non_objects_are_shape_errors() {
        assert!(
            matches!(parse(r#"{"first_name":5}"#), Err(ParseError::Shape(e)) if e.field == "first_name")
        );
        assert!(matches!(parse("[]"), Err(ParseError::Shape(_))));
        assert!(matches!(parse("\"text\""), Err(ParseError::Shape(_))));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse(r#"{"nickname":"JD","first_name":"John"}"#).is_ok());
    }

    #[test]
    fn records_require_a_user_id() {
        let Err(ParseError::Invalid(errors)) = UserChange::from_record(br#"{"first_name":"J"}"#)
        else {
            panic!("expected a missing user_id");
        };
        assert_eq!(errors[0].field, "user_id");
    }
}
