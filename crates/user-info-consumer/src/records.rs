//! Records -> a batch to apply: each Kafka record decoded into a change to one
//! user - or into the reason it belongs in the dead-letter queue - and a batch
//! of them folded, once, into one operation per user. Pure: tests drive it
//! without a broker or a database.
//!
//! - A value is the JSON of a `POST /user` body with `user_id` required, parsed
//!   and validated by the same domain code as the HTTP service.
//! - A tombstone (no value) deletes the user its key names.
//! - Anything else is poison: the reason names the field and the rule, never the
//!   value, because it travels in a `dlq-reason` header.

use std::collections::HashMap;

use domain::{Change, Folded, UserChange, fold_changes, parse_user_id};
use rdkafka::Message;
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

/// One received record, decoded right away; only poison keeps its bytes.
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub decoded: Result<(Uuid, Change), Poison>,
}

/// A record that cannot be applied, as the dead-letter topic will hold it.
pub struct Poison {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub reason: Reason,
}

impl Incoming {
    /// Its (topic, partition).
    pub fn partition_key(&self) -> (String, i32) {
        (self.topic.clone(), self.partition)
    }

    pub fn from_message<M: Message>(message: &M) -> Self {
        let decoded = decode(message.key(), message.payload()).map_err(|reason| Poison {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            reason,
        });
        Incoming {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            decoded,
        }
    }
}

/// A dead letter to write: where the record came from, and the record.
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub poison: Poison,
}

/// The offsets a batch holds of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Its first record's offset.
    pub first: i64,
    /// The offset after its last record.
    pub next: i64,
}

/// What a batch of records amounts to, computed once however often applying it
/// is retried.
pub struct Batch {
    /// One operation per user, in first-seen order.
    pub folded: Vec<(Uuid, Folded)>,
    /// How many records `folded` stands for.
    pub changes: usize,
    pub dead_letters: Vec<DeadLetter>,
    /// The records' offsets, per (topic, partition).
    pub partitions: HashMap<(String, i32), Range>,
}

impl Batch {
    pub fn new(records: Vec<Incoming>) -> Self {
        let mut partitions: HashMap<(String, i32), Range> = HashMap::new();
        let mut changes = Vec::new();
        let mut dead_letters = Vec::new();
        for record in records {
            let range = partitions.entry(record.partition_key()).or_insert(Range {
                first: record.offset,
                next: record.offset + 1,
            });
            range.first = range.first.min(record.offset);
            range.next = range.next.max(record.offset + 1);
            match record.decoded {
                Ok(change) => changes.push(change),
                Err(poison) => dead_letters.push(DeadLetter {
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    poison,
                }),
            }
        }
        Batch {
            changes: changes.len(),
            folded: fold_changes(changes),
            dead_letters,
            partitions,
        }
    }

    pub fn records(&self) -> usize {
        self.changes + self.dead_letters.len()
    }
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

    fn record(partition: i32, offset: i64, value: &str) -> Incoming {
        Incoming {
            topic: "t".to_owned(),
            partition,
            offset,
            decoded: decode(None, Some(value.as_bytes())).map_err(|reason| Poison {
                key: None,
                value: Some(value.as_bytes().to_vec()),
                reason,
            }),
        }
    }

    #[test]
    fn a_batch_folds_per_user_keeps_poison_apart_and_knows_where_each_partition_ends() {
        let first = format!(r#"{{"user_id":"{ID}","first_name":"A"}}"#);
        let second = format!(r#"{{"user_id":"{ID}","last_name":"B"}}"#);
        let batch = Batch::new(vec![
            record(0, 7, &first),
            record(1, 3, "not json"),
            record(0, 8, &second),
        ]);
        assert_eq!(batch.records(), 3);
        assert_eq!(batch.changes, 2);
        assert_eq!(batch.folded.len(), 1);
        let Folded::Upsert(fields) = &batch.folded[0].1 else {
            panic!("expected an upsert");
        };
        assert_eq!(fields.first_name.as_ref().map(|n| n.as_str()), Some("A"));
        assert_eq!(fields.last_name.as_ref().map(|n| n.as_str()), Some("B"));
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(batch.dead_letters[0].offset, 3);
        let partition = |p: i32| batch.partitions[&("t".to_owned(), p)];
        assert_eq!(partition(0), Range { first: 7, next: 9 });
        assert_eq!(partition(1), Range { first: 3, next: 4 });
    }
}
