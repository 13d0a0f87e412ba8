//! Decoding a Kafka record into a change to one user - or into the reason it
//! belongs in the dead-letter queue. Pure: tests drive it without a broker.
//!
//! - A value is the JSON of a `POST /user` body with `user_id` required, parsed
//!   and validated by the same domain code as the HTTP service.
//! - A tombstone (no value) deletes the user its key names.
//! - Anything else is poison: the reason names the field and the rule, never the
//!   value, because it travels in a `dlq-reason` header.

use domain::{Change, UserChange, parse_user_id};
use uuid::Uuid;

/// Why a record cannot be applied.
pub type Reason = String;

pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(Uuid, Change), Reason> {
    let Some(value) = value else {
        let id = key
            .and_then(|key| std::str::from_utf8(key).ok())
            .and_then(parse_user_id)
            .ok_or_else(|| "tombstone whose key is not a user_id (UUID)".to_owned())?;
        return Ok((id, Change::Delete));
    };
    if std::str::from_utf8(value).is_err() {
        return Err("value is not UTF-8".to_owned());
    }
    let (id, fields) = UserChange::from_record(value).map_err(|error| error.to_string())?;
    Ok((id, Change::Upsert(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1";

    #[test]
    fn a_valid_value_is_an_upsert_of_its_user_id() {
        let value = format!(r#"{{"user_id":"{ID}","first_name":"John"}}"#);
        let (id, change) = decode(Some(b"anything"), Some(value.as_bytes())).unwrap();
        assert_eq!(id.to_string(), ID);
        let Change::Upsert(fields) = change else {
            panic!("expected an upsert")
        };
        assert_eq!(fields.first_name.unwrap().as_str(), "John");
        assert_eq!(fields.email, None);
    }

    #[test]
    fn a_tombstone_with_a_uuid_key_deletes_that_user() {
        let (id, change) = decode(Some(ID.to_uppercase().as_bytes()), None).unwrap();
        assert_eq!(id.to_string(), ID);
        assert_eq!(change, Change::Delete);
    }

    #[test]
    fn a_tombstone_without_a_uuid_key_is_poison() {
        assert!(decode(Some(b"not-a-uuid"), None).is_err());
        assert!(decode(None, None).is_err());
    }

    #[test]
    fn each_kind_of_poison_is_rejected_with_a_reason() {
        let poison: [&[u8]; 6] = [
            b"\xff\xfe\x00",
            b"not json",
            b"[1,2,3]",
            br#"{"first_name":"no id"}"#,
            br#"{"user_id":"e4b5f7fe-0937-4d7b-b6b4-e8d23262b3f1","email":"bad"}"#,
            br#"{"user_id":"nope"}"#,
        ];
        for value in poison {
            let reason = decode(None, Some(value)).unwrap_err();
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn reasons_name_the_field_but_not_the_value() {
        let value = format!(
            r#"{{"user_id":"{ID}","email":"private.person@nowhere","phone_number":"x555"}}"#
        );
        let reason = decode(None, Some(value.as_bytes())).unwrap_err();
        assert!(
            reason.contains("email") && reason.contains("phone_number"),
            "{reason}"
        );
        assert!(
            !reason.contains("private.person") && !reason.contains("x555"),
            "{reason}"
        );
    }
}
