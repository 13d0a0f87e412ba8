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

use std::collections::{HashMap, HashSet};

use domain::{Change, Folded, UserChange, fold_changes, parse_user_id};
use rdkafka::Message;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, OwnedHeaders};
use service_kit::kafka::trace::record_span;
use tracing::Span;
use user_store::{LetterMark, RecordPlace, Refusal, UserRecords};
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

/// One received record, decoded right away. It keeps its bytes and headers: a
/// record the database refuses goes to the dead-letter topic as it came.
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
    pub decoded: Result<(Uuid, Change), Reason>,
    /// For a dead letter put back by `replay-dlq`: where its record was first
    /// (its `dlq-replayed-source` header).
    pub replayed: Option<RecordPlace>,
    /// While traces are exported, for a record carrying a trace context: its
    /// span, continuing its producer's trace, from its receipt until its batch
    /// is stored (or it is dead-lettered).
    pub span: Option<Span>,
}

/// A record that cannot be applied, as the dead-letter topic will hold it.
pub struct Poison {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
    pub reason: Reason,
}

impl Incoming {
    /// Its (topic, partition).
    pub fn partition_key(&self) -> (String, i32) {
        (self.topic.clone(), self.partition)
    }

    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message.headers().map(BorrowedHeaders::detach);
        let span = record_span(
            "apply user record",
            headers.as_ref(),
            message.topic(),
            message.partition(),
            message.offset(),
        );
        Incoming {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            replayed: headers.as_ref().and_then(replayed_from),
            headers,
            decoded: decode(message.key(), message.payload()),
            span,
        }
    }

    /// Its key's and value's bytes: what it weighs in a batch.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// `user_id` is the record's user, when known: a record that did not
    /// decode may still name it in its key or its value.
    fn into_dead_letter(self, reason: Reason, user_id: Option<Uuid>) -> DeadLetter {
        let user_id = user_id.or_else(|| user_named(self.key.as_deref(), self.value.as_deref()));
        DeadLetter {
            user_id,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            poison: Poison {
                key: self.key,
                value: self.value,
                headers: self.headers,
                reason,
            },
            span: self.span,
        }
    }
}

/// The original place a replayed record carries: `dlq-replayed-source:
/// <topic>/<partition>/<offset>` (topic names hold no `/`).
fn replayed_from(headers: &OwnedHeaders) -> Option<RecordPlace> {
    use rdkafka::message::Headers;
    let header = headers
        .iter()
        .find(|header| header.key == REPLAYED_SOURCE)?;
    let text = std::str::from_utf8(header.value?).ok()?;
    let mut parts = text.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_owned();
    Some(RecordPlace {
        topic,
        partition,
        offset,
    })
}

/// The header `replay-dlq` puts on a replayed record: where it was first.
pub const REPLAYED_SOURCE: &str = "dlq-replayed-source";

/// The user a record that did not decode names: its key, or its value's
/// `user_id`, when either is a UUID.
fn user_named(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Uuid> {
    let from_key = key
        .and_then(|key| std::str::from_utf8(key).ok())
        .and_then(parse_user_id);
    from_key.or_else(|| {
        let value: serde_json::Value = serde_json::from_slice(value?).ok()?;
        parse_user_id(value.get("user_id")?.as_str()?)
    })
}

/// A dead letter to write: where the record came from, and the record.
pub struct DeadLetter {
    /// The record's user, when known: its letter is marked in the database.
    pub user_id: Option<Uuid>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub poison: Poison,
    /// The record's span (see [`Incoming::span`]).
    pub span: Option<Span>,
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
/// is retried (and again only when the database refused some of its records).
pub struct Batch {
    /// The records that decoded, in offset order per partition.
    valid: Vec<(Incoming, Uuid, Change)>,
    /// One operation per user, in first-seen order.
    pub folded: Vec<(Uuid, Folded)>,
    pub dead_letters: Vec<DeadLetter>,
    /// The records' offsets, per (topic, partition).
    pub partitions: HashMap<(String, i32), Range>,
    /// Replayed records skipped: their user changed after they were
    /// dead-lettered (or a record of the batch before them changes it).
    pub superseded: Vec<RecordPlace>,
}

impl Batch {
    pub fn new(records: Vec<Incoming>) -> Self {
        let mut partitions: HashMap<(String, i32), Range> = HashMap::new();
        let mut valid = Vec::new();
        let mut dead_letters = Vec::new();
        for mut record in records {
            let range = partitions.entry(record.partition_key()).or_insert(Range {
                first: record.offset,
                next: record.offset + 1,
            });
            range.first = range.first.min(record.offset);
            range.next = range.next.max(record.offset + 1);
            match std::mem::replace(&mut record.decoded, Err(String::new())) {
                Ok((id, change)) => valid.push((record, id, change)),
                Err(reason) => dead_letters.push(record.into_dead_letter(reason, None)),
            }
        }
        // A replayed record behind a record of its user that is not a replay
        // (produced after the replay began) would undo that record's change.
        // Only batches that hold replays (rare) pay for looking.
        let mut superseded = Vec::new();
        if valid.iter().any(|(record, _, _)| record.replayed.is_some()) {
            let mut changed: HashSet<Uuid> = HashSet::new();
            valid.retain(|(record, id, _)| match &record.replayed {
                Some(place) if changed.contains(id) => {
                    superseded.push(place.clone());
                    false
                }
                Some(_) => true,
                None => {
                    changed.insert(*id);
                    true
                }
            });
        }
        let mut batch = Batch {
            valid,
            folded: Vec::new(),
            dead_letters,
            partitions,
            superseded,
        };
        batch.fold();
        batch
    }

    /// The original places of the replayed records it applies.
    pub fn replays(&self) -> Vec<RecordPlace> {
        self.valid
            .iter()
            .filter_map(|(record, _, _)| record.replayed.clone())
            .collect()
    }

    /// The replayed records that are their user's last record in the batch.
    pub fn replays_to_follow(&self) -> Vec<RecordPlace> {
        let mut last: HashMap<Uuid, &Incoming> = HashMap::new();
        for (record, id, _) in &self.valid {
            last.insert(*id, record);
        }
        last.into_values()
            .filter_map(|record| record.replayed.clone())
            .collect()
    }

    /// Its dead letters of known users, each superseded when a later record
    /// of its user in its partition is applied by the batch.
    pub fn letter_marks(&self) -> Vec<LetterMark> {
        self.dead_letters
            .iter()
            .filter_map(|letter| {
                let user_id = letter.user_id?;
                let superseded = self.valid.iter().any(|(record, id, _)| {
                    *id == user_id
                        && record.topic == letter.topic
                        && record.partition == letter.partition
                        && record.offset > letter.offset
                });
                Some(LetterMark {
                    place: RecordPlace {
                        topic: letter.topic.clone(),
                        partition: letter.partition,
                        offset: letter.offset,
                    },
                    user_id,
                    superseded,
                })
            })
            .collect()
    }

    /// Skips the replayed records at these original places (the database
    /// found them superseded) and folds the rest again.
    pub fn supersede(&mut self, places: Vec<RecordPlace>) {
        self.valid.retain(|(record, _, _)| {
            !record
                .replayed
                .as_ref()
                .is_some_and(|place| places.contains(place))
        });
        self.superseded.extend(places);
        self.fold();
    }

    fn fold(&mut self) {
        self.folded = fold_changes(
            self.valid
                .iter()
                .map(|(_, id, change)| (*id, change.clone())),
        );
    }

    /// How many records the folded operations stand for.
    pub fn changes(&self) -> usize {
        self.valid.len()
    }

    pub fn records(&self) -> usize {
        self.valid.len() + self.dead_letters.len()
    }

    /// The spans of its records that have one (traces exported).
    pub fn record_spans(&self) -> impl Iterator<Item = &Span> {
        let valid = self.valid.iter().map(|(record, _, _)| &record.span);
        let dead = self.dead_letters.iter().map(|letter| &letter.span);
        valid.chain(dead).flatten()
    }

    /// Each user's records, in order, indexed for [`Batch::refuse`].
    pub fn users(&self) -> Vec<UserRecords<'_>> {
        let mut users: Vec<UserRecords<'_>> = Vec::new();
        let mut at: HashMap<Uuid, usize> = HashMap::new();
        for (index, (_, id, change)) in self.valid.iter().enumerate() {
            let slot = *at.entry(*id).or_insert_with(|| {
                users.push(UserRecords {
                    id: *id,
                    changes: Vec::new(),
                });
                users.len() - 1
            });
            users[slot].changes.push((index, change));
        }
        users
    }

    /// Moves the records the database refused to the dead letters (after
    /// those already there) and folds the rest again.
    pub fn refuse(&mut self, mut refusals: Vec<Refusal>) {
        refusals.sort_by_key(|refusal| std::cmp::Reverse(refusal.index));
        let mut refused = Vec::new();
        for refusal in refusals {
            if refusal.index < self.valid.len() {
                let (record, id, _) = self.valid.remove(refusal.index);
                refused.push(record.into_dead_letter(refusal.reason(), Some(id)));
            }
        }
        refused.reverse();
        self.dead_letters.extend(refused);
        self.fold();
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
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: None,
            decoded: decode(None, Some(value.as_bytes())),
            replayed: None,
            span: None,
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
        assert_eq!(batch.changes(), 2);
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

    #[test]
    fn refused_records_become_dead_letters_and_the_rest_is_folded_again() {
        let first = format!(r#"{{"user_id":"{ID}","first_name":"A"}}"#);
        let second = format!(r#"{{"user_id":"{ID}","last_name":"B"}}"#);
        let mut batch = Batch::new(vec![record(0, 1, &first), record(0, 2, &second)]);
        let users = batch.users();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].changes.len(), 2);
        batch.refuse(vec![Refusal {
            index: 1,
            sqlstate: "23514".to_owned(),
            constraint: Some("no_b".to_owned()),
        }]);
        assert_eq!(batch.changes(), 1);
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(batch.dead_letters[0].offset, 2);
        assert!(batch.dead_letters[0].poison.reason.contains("23514"));
        assert!(batch.dead_letters[0].poison.reason.contains("no_b"));
        let Folded::Upsert(fields) = &batch.folded[0].1 else {
            panic!("expected an upsert");
        };
        assert_eq!(fields.last_name, None);
        assert_eq!(batch.records(), 2);
    }

    #[test]
    fn a_replayed_record_carries_its_first_place_and_is_skipped_behind_its_user_s_change() {
        let place = "user_service.v2/4/1234";
        let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
            key: REPLAYED_SOURCE,
            value: Some(place),
        });
        let expected = RecordPlace {
            topic: "user_service.v2".to_owned(),
            partition: 4,
            offset: 1234,
        };
        assert_eq!(replayed_from(&headers), Some(expected.clone()));

        let change = format!(r#"{{"user_id":"{ID}","first_name":"New"}}"#);
        let old = format!(r#"{{"user_id":"{ID}","first_name":"Old"}}"#);
        let replayed = |offset| Incoming {
            replayed: Some(expected.clone()),
            ..record(0, offset, &old)
        };
        // Replayed first: it applies, and the change after it.
        let batch = Batch::new(vec![replayed(1), record(0, 2, &change)]);
        assert_eq!(batch.replays(), vec![expected.clone()]);
        assert!(batch.superseded.is_empty());
        // Behind a change of its user: skipped, the change stands.
        let batch = Batch::new(vec![record(0, 1, &change), replayed(2)]);
        assert_eq!(batch.superseded, vec![expected]);
        assert!(batch.replays().is_empty());
        let Folded::Upsert(fields) = &batch.folded[0].1 else {
            panic!("expected an upsert");
        };
        assert_eq!(fields.first_name.as_ref().map(|n| n.as_str()), Some("New"));
    }

    #[test]
    fn a_dead_letter_is_marked_superseded_when_its_user_s_later_record_applies() {
        let first = format!(r#"{{"user_id":"{ID}","first_name":"A"}}"#);
        let bad = format!(r#"{{"user_id":"{ID}","email":"not-an-email"}}"#);
        let batch = Batch::new(vec![record(0, 1, &first), record(0, 2, &bad)]);
        let marks = batch.letter_marks();
        assert_eq!(marks.len(), 1, "the user is named by the value");
        assert!(!marks[0].superseded);
        let batch = Batch::new(vec![record(0, 1, &bad), record(0, 2, &first)]);
        assert!(batch.letter_marks()[0].superseded);
    }
}
