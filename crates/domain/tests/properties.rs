//! Property tests of the parsers: no input makes them panic, and valid values
//! come back as they were sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::{ParseError, Profile, UserChange};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON documents, nested a few levels, with keys the parsers know.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("user_id".to_owned()),
        Just("first_name".to_owned()),
        Just("email".to_owned()),
        Just("phone_number".to_owned()),
        Just("userId".to_owned()),
        Just("username".to_owned()),
        Just("age".to_owned()),
        Just("address".to_owned()),
        Just("zip_code".to_owned()),
        Just("postalCode".to_owned()),
        Just("signupTs".to_owned()),
        "[a-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn no_value_echoed(error: &ParseError, secret: &str) -> bool {
    secret.len() < 6 || !error.to_string().contains(secret)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = UserChange::from_json(&bytes);
        let _ = UserChange::from_record(&bytes);
        let _ = Profile::from_json(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = UserChange::from_json(&bytes);
        let _ = Profile::from_json(&bytes);
    }

    #[test]
    fn valid_user_changes_round_trip(
        id in any::<u128>(),
        first in "[A-Za-zÀ-ÿ' -]{0,150}",
        last in prop::option::of("[A-Za-z]{1,150}"),
        local in "[a-z0-9._%+-]{1,40}",
        domain in "[a-z]{1,20}\\.[a-z]{2,6}",
        phone in "\\+?[0-9]{3,20}",
    ) {
        let id = uuid::Uuid::from_u128(id);
        let email = format!("{local}@{domain}");
        let mut body = json!({"user_id": id.to_string().to_uppercase(), "first_name": first,
                              "email": email, "phone_number": phone});
        if let Some(last) = &last {
            body["last_name"] = json!(last);
        }
        let change = UserChange::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(change.user_id, Some(id));
        prop_assert_eq!(change.fields.first_name.unwrap().into_inner(), first);
        prop_assert_eq!(change.fields.last_name.map(|n| n.into_inner()), last);
        prop_assert_eq!(change.fields.email.unwrap().into_inner(), email);
        prop_assert_eq!(change.fields.phone_number.unwrap().into_inner(), phone);
    }

    #[test]
    fn valid_profiles_round_trip_through_their_own_answer(
        user_id in "[a-zA-Z0-9]{1,64}",
        username in "[A-Za-z0-9_.-]{3,32}",
        age in prop::option::of(1u8..=129),
        zip in prop::option::of("[A-Z0-9]{1,10}"),
        alias in any::<bool>(),
    ) {
        let mut address = json!({"street": "1 Main St", "city": "Town"});
        if let Some(zip) = &zip {
            address[if alias { "postalCode" } else { "zip_code" }] = json!(zip);
        }
        let body = json!({"userId": user_id, "username": username, "email": "A@Example.com",
                          "age": age, "address": address, "signupTs": "2023-01-01T12:00:00+01:00"});
        let profile = Profile::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        let answered = serde_json::to_vec(&profile).unwrap();
        let again = Profile::from_json(&answered).unwrap();
        prop_assert_eq!(&again, &profile);
        prop_assert_eq!(profile.postal_code(), zip.as_deref());
        prop_assert_eq!(profile.age(), age);
    }

    #[test]
    fn rejected_values_are_never_echoed(secret in "[a-z]{6,20}@[a-z]{3,10}") {
        let body = json!({"user_id": "nope", "email": format!("{secret} x"), "phone_number": secret});
        let error = UserChange::from_json(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        prop_assert!(no_value_echoed(&error, &secret));
    }
}
