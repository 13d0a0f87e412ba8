//! Preconditions on a user's version (RFC 9110's `If-Match` and
//! `If-None-Match`, already parsed), and what a conditional write came to.
//!
//! A precondition is checked by the statement that writes (see `merge`), never
//! by a read before it: between a read and a write another writer - an HTTP
//! client, the Kafka consumer - could change the user.

use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Nullable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::StoreError;
use crate::merge::{MERGE_ATTEMPTS, stored_version};

/// The versions a condition names: `*` (any: the user exists) or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versions {
    Any,
    Listed(Vec<i64>),
}

impl Versions {
    /// The listed versions; `None` for `*`.
    pub(crate) fn listed(&self) -> Option<&[i64]> {
        match self {
            Versions::Any => None,
            Versions::Listed(versions) => Some(versions),
        }
    }

    /// Whether the condition names the stored `current` version (`*` names
    /// any existing user).
    pub fn names(&self, current: Option<i64>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Versions::Any, Some(_)) => true,
            (Versions::Listed(versions), Some(version)) => versions.contains(&version),
        }
    }
}

/// A write's preconditions; both empty = unconditional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// Write only when the stored version is one of these (`*`: when the user
    /// exists). Only strong entity tags belong here.
    pub if_match: Option<Versions>,
    /// Write only when the stored version is none of these (`*`: when the user
    /// does not exist).
    pub if_none_match: Option<Versions>,
}

impl Preconditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Whether the preconditions hold for a user whose stored version is
    /// `current` (`None`: no such user).
    pub fn hold(&self, current: Option<i64>) -> bool {
        self.if_match
            .as_ref()
            .is_none_or(|versions| versions.names(current))
            && self
                .if_none_match
                .as_ref()
                .is_none_or(|versions| !versions.names(current))
    }
}

/// What a conditional write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Done(T),
    /// Nothing was written: the preconditions do not hold for the stored
    /// version `current` (`None`: no such user).
    PreconditionFailed {
        current: Option<i64>,
    },
    /// Nothing was written: no such user, and the write does not create one.
    NotFound,
}

/// Deletes a user when the preconditions hold, in one statement.
const DELETE_SQL: &str = "DELETE FROM user_info \
     WHERE user_id = $1 \
       AND version = ANY(COALESCE($2, ARRAY[version])) \
       AND version <> ALL(COALESCE($3, '{}'::bigint[]))";

pub(crate) async fn delete_if(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    preconditions: &Preconditions,
) -> Result<Outcome<()>, StoreError> {
    for _ in 0..MERGE_ATTEMPTS {
        // `If-None-Match: *` never holds for a user that exists.
        if !matches!(preconditions.if_none_match, Some(Versions::Any))
            && delete_statement(conn, id, preconditions).await? > 0
        {
            return Ok(Outcome::Done(()));
        }
        let current = stored_version(conn, id).await?;
        if !preconditions.hold(current) {
            return Ok(Outcome::PreconditionFailed { current });
        }
        if current.is_none() {
            return Ok(Outcome::NotFound);
        }
        // Changed between the statement and the read: try again.
    }
    Err(StoreError::Contention)
}

async fn delete_statement(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    preconditions: &Preconditions,
) -> QueryResult<usize> {
    let listed = |versions: &Option<Versions>| {
        versions
            .as_ref()
            .and_then(|v| v.listed().map(<[i64]>::to_vec))
    };
    diesel::sql_query(DELETE_SQL)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<Nullable<Array<BigInt>>, _>(listed(&preconditions.if_match))
        .bind::<Nullable<Array<BigInt>>, _>(listed(&preconditions.if_none_match))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(versions: &[i64]) -> Option<Versions> {
        Some(Versions::Listed(versions.to_vec()))
    }

    #[test]
    fn if_match_holds_only_for_a_listed_version_of_an_existing_user() {
        let pre = Preconditions {
            if_match: listed(&[2, 3]),
            ..Default::default()
        };
        assert!(pre.hold(Some(3)));
        assert!(!pre.hold(Some(4)));
        assert!(!pre.hold(None));
        let any = Preconditions {
            if_match: Some(Versions::Any),
            ..Default::default()
        };
        assert!(any.hold(Some(1)));
        assert!(!any.hold(None));
    }

    #[test]
    fn if_none_match_holds_unless_the_stored_version_is_named() {
        let pre = Preconditions {
            if_none_match: listed(&[2]),
            ..Default::default()
        };
        assert!(pre.hold(None));
        assert!(pre.hold(Some(3)));
        assert!(!pre.hold(Some(2)));
        let any = Preconditions {
            if_none_match: Some(Versions::Any),
            ..Default::default()
        };
        assert!(any.hold(None));
        assert!(!any.hold(Some(1)));
    }

    #[test]
    fn no_preconditions_always_hold() {
        assert!(Preconditions::default().hold(None));
        assert!(Preconditions::default().hold(Some(9)));
        assert!(Preconditions::default().is_empty());
    }
}
