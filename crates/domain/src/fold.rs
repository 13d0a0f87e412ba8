//! Folding a run of changes to users into one operation per user, so that a
//! batch of Kafka records is applied as if each were applied one by one.

use std::collections::HashMap;

use uuid::Uuid;

use crate::user::UserFields;

/// One operation on one user, in the order the log holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(UserFields),
    Delete,
}

/// What a run of changes to one user amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// Merge these fields into the stored user (creating it if absent).
    Upsert(UserFields),
    /// Remove the user.
    Delete,
    /// Remove the user, then create it afresh from these fields.
    Replace(UserFields),
}

/// Folds changes in log order into one operation per user, so that applying the
/// result equals applying every change one by one. Users keep first-seen order.
pub fn fold_changes(changes: impl IntoIterator<Item = (Uuid, Change)>) -> Vec<(Uuid, Folded)> {
    let mut order: Vec<Uuid> = Vec::new();
    let mut folded: HashMap<Uuid, Folded> = HashMap::new();
    for (id, change) in changes {
        let next = match (folded.remove(&id), change) {
            (None, Change::Upsert(fields)) => {
                order.push(id);
                Folded::Upsert(fields)
            }
            (None, Change::Delete) => {
                order.push(id);
                Folded::Delete
            }
            (Some(_), Change::Delete) => Folded::Delete,
            (Some(Folded::Delete), Change::Upsert(fields)) => Folded::Replace(fields),
            (Some(Folded::Upsert(mut earlier)), Change::Upsert(fields)) => {
                earlier.merge(fields);
                Folded::Upsert(earlier)
            }
            (Some(Folded::Replace(mut earlier)), Change::Upsert(fields)) => {
                earlier.merge(fields);
                Folded::Replace(earlier)
            }
        };
        folded.insert(id, next);
    }
    order
        .into_iter()
        .filter_map(|id| folded.remove(&id).map(|op| (id, op)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::Name;

    fn name(text: &str) -> Option<Name> {
        Some(Name(text.to_owned()))
    }

    fn upsert(first: Option<&str>, last: Option<&str>) -> Change {
        Change::Upsert(UserFields {
            first_name: first.map(|t| Name(t.to_owned())),
            last_name: last.map(|t| Name(t.to_owned())),
            ..UserFields::default()
        })
    }

    #[test]
    fn folding_merges_upserts_in_order() {
        let id = Uuid::new_v4();
        let folded = fold_changes([
            (id, upsert(Some("A"), Some("X"))),
            (id, upsert(Some("B"), None)),
        ]);
        assert_eq!(
            folded,
            [(
                id,
                Folded::Upsert(UserFields {
                    first_name: name("B"),
                    last_name: name("X"),
                    ..Default::default()
                })
            )]
        );
    }

    #[test]
    fn folding_a_delete_then_an_upsert_replaces_the_user() {
        let id = Uuid::new_v4();
        let folded = fold_changes([
            (id, upsert(Some("A"), Some("X"))),
            (id, Change::Delete),
            (id, upsert(Some("B"), None)),
            (id, upsert(None, Some("Y"))),
        ]);
        assert_eq!(
            folded,
            [(
                id,
                Folded::Replace(UserFields {
                    first_name: name("B"),
                    last_name: name("Y"),
                    ..Default::default()
                })
            )]
        );
    }

    #[test]
    fn folding_ends_in_delete_when_the_last_change_deletes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let folded = fold_changes([
            (a, upsert(Some("A"), None)),
            (b, upsert(Some("B"), None)),
            (a, Change::Delete),
        ]);
        assert_eq!(folded[0], (a, Folded::Delete));
        assert!(matches!(folded[1], (id, Folded::Upsert(_)) if id == b));
    }
}
