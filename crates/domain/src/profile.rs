//! The user profile that `POST /users` of the enricher validates and enriches.
//!
//! The profile is answered - and sent upstream - with the client's own field names:
//! a postal code stays under `zip_code` or `postalCode`, whichever the client used.

use chrono::{DateTime, SecondsFormat, Utc};
use garde::Validate;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::json::{self, ParseError};
use crate::rules::{is_email, no_nul, not_blank};

/// A validated, normalised profile (trimmed text, lower-cased e-mail, UTC time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    #[serde(rename = "userId")]
    user_id: String,
    username: String,
    email: String,
    age: Option<u8>,
    address: Option<Address>,
    #[serde(rename = "signupTs", serialize_with = "rfc3339_utc")]
    signup_ts: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    street: String,
    city: String,
    state: Option<String>,
    postal_code: Option<PostalCode>,
}

/// A postal code and the key the client sent it under. When a client sends both
/// `zip_code` and `postalCode` (each validated), `zip_code` is the one kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostalCode {
    value: String,
    key: &'static str,
}

impl Profile {
    /// Parses and validates a JSON body; every failing field is reported by path.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut dto: ProfileDto = json::decode(bytes)?;
        dto.normalise();
        dto.validate()
            .map_err(|report| json::from_report(report, json_name))?;
        Ok(dto.into_profile())
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn age(&self) -> Option<u8> {
        self.age
    }

    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    pub fn postal_code(&self) -> Option<&str> {
        self.address
            .as_ref()
            .and_then(|a| a.postal_code.as_ref())
            .map(|p| p.value.as_str())
    }
}

/// A profile field a source's request may name as a placeholder (`{email}`,
/// `{address.city}`): the names a client uses, the postal code under either key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    UserId,
    Username,
    Email,
    Age,
    SignupTs,
    Street,
    City,
    State,
    PostalCode,
}

/// One field's value in a normalised profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Text(std::borrow::Cow<'a, str>),
    Number(u64),
}

impl Field {
    /// Every placeholder name, as a configuration names it.
    pub const NAMES: [&'static str; 10] = [
        "userId",
        "username",
        "email",
        "age",
        "signupTs",
        "address.street",
        "address.city",
        "address.state",
        "address.zip_code",
        "address.postalCode",
    ];

    /// The field a placeholder names; `address.zip_code` and `address.postalCode`
    /// are the same postal code, whichever key the client sent it under.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "userId" => Field::UserId,
            "username" => Field::Username,
            "email" => Field::Email,
            "age" => Field::Age,
            "signupTs" => Field::SignupTs,
            "address.street" => Field::Street,
            "address.city" => Field::City,
            "address.state" => Field::State,
            "address.zip_code" | "address.postalCode" => Field::PostalCode,
            _ => return None,
        })
    }
}

impl FieldValue<'_> {
    /// The value as text: numbers in decimal.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            FieldValue::Text(text) => std::borrow::Cow::Borrowed(text),
            FieldValue::Number(number) => std::borrow::Cow::Owned(number.to_string()),
        }
    }
}

impl Profile {
    /// The field's normalised value, as the answer's `user` holds it; `None` when
    /// the profile has none (no age, no address, no state, ...).
    pub fn field(&self, field: Field) -> Option<FieldValue<'_>> {
        fn text(text: &str) -> FieldValue<'_> {
            FieldValue::Text(std::borrow::Cow::Borrowed(text))
        }
        let address = self.address.as_ref();
        Some(match field {
            Field::UserId => text(&self.user_id),
            Field::Username => text(&self.username),
            Field::Email => text(&self.email),
            Field::Age => FieldValue::Number(u64::from(self.age?)),
            Field::SignupTs => FieldValue::Text(std::borrow::Cow::Owned(
                self.signup_ts?.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            )),
            Field::Street => text(&address?.street),
            Field::City => text(&address?.city),
            Field::State => text(address?.state.as_deref()?),
            Field::PostalCode => text(self.postal_code()?),
        })
    }
}

impl Address {
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("street", &self.street)?;
        map.serialize_entry("city", &self.city)?;
        map.serialize_entry("state", &self.state)?;
        match &self.postal_code {
            Some(code) => map.serialize_entry(code.key, &code.value)?,
            None => map.serialize_entry("zip_code", &None::<String>)?,
        }
        map.end()
    }
}

fn rfc3339_utc<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        None => s.serialize_none(),
    }
}

#[derive(Deserialize, Validate)]
struct ProfileDto {
    // Required, but optional here so that garde reports every missing field
    // at once, not serde the first.
    #[serde(default, rename = "userId")]
    #[garde(
        required,
        length(chars, min = 1, max = 64),
        inner(custom(no_nul)),
        inner(custom(not_blank))
    )]
    user_id: Option<String>,
    #[serde(default)]
    #[garde(
        required,
        length(chars, min = 3, max = 32),
        pattern(r"^[A-Za-z0-9_.-]*$")
    )]
    username: Option<String>,
    #[serde(default)]
    #[garde(required, inner(custom(|v: &str, _: &()| is_email(v))))]
    email: Option<String>,
    #[serde(default)]
    #[garde(inner(custom(valid_age)))]
    age: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "json::optional_object")]
    #[garde(dive)]
    address: Option<AddressDto>,
    #[serde(default, rename = "signupTs")]
    #[garde(inner(custom(rfc3339)))]
    signup_ts: Option<String>,
}

#[derive(Deserialize, Validate)]
struct AddressDto {
    #[garde(length(chars, min = 1, max = 200), custom(no_nul), custom(not_blank))]
    street: String,
    #[garde(length(chars, min = 1, max = 200), custom(no_nul), custom(not_blank))]
    city: String,
    #[serde(default)]
    #[garde(length(chars, max = 100), inner(custom(no_nul)))]
    state: Option<String>,
    #[serde(default)]
    #[garde(inner(custom(valid_postal_code)))]
    zip_code: Option<String>,
    #[serde(default, rename = "postalCode")]
    #[garde(inner(custom(valid_postal_code)))]
    postal_code: Option<String>,
}

impl ProfileDto {
    /// The e-mail is trimmed and lower-cased; every other value is taken as sent,
    /// so that the published schema describes exactly what is accepted.
    fn normalise(&mut self) {
        if let Some(email) = &mut self.email {
            trim(email);
            *email = email.to_lowercase();
        }
        if let Some(address) = &mut self.address
            && address.state.as_deref() == Some("")
        {
            address.state = None;
        }
    }

    /// Called after validation, so every value is known to be valid.
    fn into_profile(self) -> Profile {
        let address = self.address.map(|a| Address {
            street: a.street,
            city: a.city,
            state: a.state,
            postal_code: match (a.zip_code, a.postal_code) {
                (Some(value), _) => Some(PostalCode {
                    value,
                    key: "zip_code",
                }),
                (None, Some(value)) => Some(PostalCode {
                    value,
                    key: "postalCode",
                }),
                (None, None) => None,
            },
        });
        Profile {
            user_id: self.user_id.unwrap_or_default(),
            username: self.username.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
            age: self
                .age
                .as_ref()
                .and_then(whole_number)
                .and_then(|age| u8::try_from(age).ok()),
            address,
            signup_ts: self
                .signup_ts
                .and_then(|ts| DateTime::parse_from_rfc3339(&ts).ok())
                .map(|ts| ts.with_timezone(&Utc)),
        }
    }
}

/// The JSON key of a Rust field name, for error paths.
fn json_name(field: &str) -> &str {
    match field {
        "user_id" => "userId",
        "signup_ts" => "signupTs",
        "postal_code" => "postalCode",
        other => other,
    }
}

/// JSON has one number type: `30` and `30.0` are the same age.
fn whole_number(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 1e15)
            .map(|f| f as i64)
    })
}

fn valid_age(age: &serde_json::Number, _: &()) -> garde::Result {
    match whole_number(age) {
        Some(1..=129) => Ok(()),
        _ => Err(garde::Error::new("must be a whole number from 1 to 129")),
    }
}

fn trim(value: &mut String) {
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
}

fn rfc3339(value: &str, _: &()) -> garde::Result {
    DateTime::parse_from_rfc3339(value)
        .map(|_| ())
        .map_err(|_| garde::Error::new("must be an RFC 3339 timestamp"))
}

fn valid_postal_code(value: &str, _: &()) -> garde::Result {
    let length = value.chars().count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
    if !(1..=20).contains(&length) || !allowed {
        return Err(garde::Error::new(
            "must be 1-20 characters of letters, digits, space and -",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const README_EXAMPLE: &str = r#"{"userId":"12345","username":"testuser","email":"testuser@example.com","age":30,
        "address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"},
        "signupTs":"2023-01-01T12:00:00Z"}"#;

    fn example() -> Value {
        serde_json::from_str(README_EXAMPLE).unwrap()
    }

    fn with(path: &[&str], value: Value) -> Vec<u8> {
        let mut doc = example();
        let mut target = &mut doc;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        serde_json::to_vec(&doc).unwrap()
    }

    fn without(path: &[&str]) -> Vec<u8> {
        let mut doc = example();
        let mut target = &mut doc;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target.as_object_mut().unwrap().remove(path[path.len() - 1]);
        serde_json::to_vec(&doc).unwrap()
    }

    fn fields(bytes: &[u8]) -> Vec<String> {
        match Profile::from_json(bytes) {
            Err(ParseError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            Err(ParseError::Shape(error)) => vec![error.field],
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn the_readme_example_is_answered_as_sent() {
        let profile = Profile::from_json(README_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(serde_json::to_value(&profile).unwrap(), example());
    }

    #[test]
    fn postal_code_alias_is_kept_under_the_clients_key() {
        let mut doc = example();
        let address = doc["address"].as_object_mut().unwrap();
        address.remove("zip_code");
        address.insert("postalCode".into(), json!("SW1A 1AA"));
        let profile = Profile::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(profile.postal_code(), Some("SW1A 1AA"));
        assert_eq!(
            serde_json::to_value(&profile).unwrap()["address"]["postalCode"],
            "SW1A 1AA"
        );
        assert!(
            fields(&with(&["address", "postalCode"], json!("!!")))
                .contains(&"address.postalCode".to_owned())
        );
    }

    #[test]
    fn optional_parts_may_be_absent() {
        let body = br#"{"userId":"u","username":"abc","email":"A@B.co"}"#;
        let profile = Profile::from_json(body).unwrap();
        assert_eq!(profile.age(), None);
        assert_eq!(profile.postal_code(), None);
        assert_eq!(serde_json::to_value(&profile).unwrap()["email"], "a@b.co");
        assert!(Profile::from_json(&without(&["address", "zip_code"])).is_ok());
        assert!(Profile::from_json(&without(&["address", "state"])).is_ok());
    }

    #[test]
    fn user_id_has_1_to_64_characters() {
        assert!(Profile::from_json(&with(&["userId"], json!("x".repeat(64)))).is_ok());
        assert_eq!(
            fields(&with(&["userId"], json!("x".repeat(65)))),
            ["userId"]
        );
        assert_eq!(fields(&with(&["userId"], json!(""))), ["userId"]);
        assert_eq!(fields(&without(&["userId"])), ["userId"]);
    }

    #[test]
    fn username_has_3_to_32_allowed_characters() {
        for ok in ["abc", "a.b-c_9", &"u".repeat(32)] {
            assert!(
                Profile::from_json(&with(&["username"], json!(ok))).is_ok(),
                "{ok}"
            );
        }
        for bad in ["ab", "has space", "émile", &"u".repeat(33)] {
            assert_eq!(
                fields(&with(&["username"], json!(bad))),
                ["username"],
                "{bad}"
            );
        }
    }

    #[test]
    fn email_is_trimmed_lower_cased_and_checked() {
        let profile =
            Profile::from_json(&with(&["email"], json!("  TestUser@Example.COM "))).unwrap();
        assert_eq!(
            serde_json::to_value(&profile).unwrap()["email"],
            "testuser@example.com"
        );
        assert_eq!(fields(&with(&["email"], json!("not-an-email"))), ["email"]);
    }

    #[test]
    fn age_is_between_1_and_129() {
        for ok in [1, 129] {
            assert!(Profile::from_json(&with(&["age"], json!(ok))).is_ok());
        }
        for bad in [0, 130, -5] {
            assert_eq!(fields(&with(&["age"], json!(bad))), ["age"]);
        }
        assert!(Profile::from_json(&with(&["age"], Value::Null)).is_ok());
        let whole = Profile::from_json(&with(&["age"], json!(30.0))).unwrap();
        assert_eq!(whole.age(), Some(30));
        assert_eq!(fields(&with(&["age"], json!(30.5))), ["age"]);
        assert_eq!(fields(&with(&["age"], json!("thirty"))), ["age"]);
    }

    #[test]
    fn street_and_city_must_not_be_empty() {
        assert_eq!(
            fields(&with(&["address"], json!({"street": " ", "city": ""}))),
            ["address.city", "address.street"]
        );
    }

    #[test]
    fn postal_code_has_1_to_20_letters_digits_spaces_or_dashes() {
        for ok in ["1", "12345-6789", "SW1A 1AA", &"9".repeat(20)] {
            assert!(
                Profile::from_json(&with(&["address", "zip_code"], json!(ok))).is_ok(),
                "{ok}"
            );
        }
        for bad in ["", "123_45", &"9".repeat(21)] {
            assert_eq!(
                fields(&with(&["address", "zip_code"], json!(bad))),
                ["address.zip_code"],
                "{bad}"
            );
        }
    }

    #[test]
    fn signup_ts_must_be_rfc3339_and_is_answered_in_utc() {
        assert_eq!(
            fields(&with(&["signupTs"], json!("yesterday"))),
            ["signupTs"]
        );
        let profile =
            Profile::from_json(&with(&["signupTs"], json!("2023-01-01T14:00:00+02:00"))).unwrap();
        assert_eq!(
            serde_json::to_value(&profile).unwrap()["signupTs"],
            "2023-01-01T12:00:00Z"
        );
    }

    #[test]
    fn three_bad_fields_give_three_errors() {
        let body = json!({"userId": "", "username": "x", "email": "nope"});
        assert_eq!(
            fields(&serde_json::to_vec(&body).unwrap()),
            ["email", "userId", "username"]
        );
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let Err(ParseError::Invalid(errors)) = Profile::from_json(b"{}") else {
            panic!("expected validation errors");
        };
        let fields: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("email", "is required"),
                ("userId", "is required"),
                ("username", "is required")
            ]
        );
    }

    #[test]
    fn an_address_must_be_an_object() {
        assert_eq!(
            fields(&with(&["address"], json!(["1 Main St", "Town"]))),
            ["address"]
        );
        assert!(Profile::from_json(&with(&["address"], Value::Null)).is_ok());
    }

    #[test]
    fn nul_characters_are_rejected() {
        assert_eq!(fields(&with(&["userId"], json!("a\u{0}b"))), ["userId"]);
        assert_eq!(
            fields(&with(&["address", "street"], json!("a\u{0}b"))),
            ["address.street"]
        );
    }

    #[test]
    fn placeholders_read_the_normalised_values_and_absent_fields_are_none() {
        let profile =
            Profile::from_json(README_EXAMPLE.replace("testuser@", "TestUser@").as_bytes())
                .unwrap();
        let value = |name: &str| {
            let field = Field::from_name(name).unwrap();
            profile.field(field).map(|value| value.text().into_owned())
        };
        assert_eq!(value("email").as_deref(), Some("testuser@example.com"));
        assert_eq!(profile.field(Field::Age), Some(FieldValue::Number(30)));
        assert_eq!(value("signupTs").as_deref(), Some("2023-01-01T12:00:00Z"));
        assert_eq!(value("address.city").as_deref(), Some("Anytown"));
        assert_eq!(value("address.zip_code"), value("address.postalCode"));
        assert_eq!(value("address.postalCode").as_deref(), Some("12345"));
        for name in Field::NAMES {
            assert!(Field::from_name(name).is_some(), "{name}");
        }
        assert_eq!(Field::from_name("password"), None);
        assert_eq!(Field::from_name("Email"), None);

        let bare = Profile::from_json(&without(&["address"])).unwrap();
        assert_eq!(bare.field(Field::City), None);
        assert_eq!(bare.field(Field::PostalCode), None);
        let young = Profile::from_json(&without(&["age"])).unwrap();
        assert_eq!(young.field(Field::Age), None);
        let stateless = Profile::from_json(&with(&["address", "state"], json!(""))).unwrap();
        assert_eq!(stateless.field(Field::State), None);
    }
}
