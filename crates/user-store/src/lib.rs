//! The user store: every read and write of the `user_info` table, shared by the
//! HTTP service and the Kafka consumer, so that both apply one merge rule
//! through one piece of SQL.
//!
//! - [`connect`]: `DATABASE_URL` read as libpq reads it (TLS modes included),
//!   spoken by tokio-postgres on the async executor;
//! - [`migrate`]: the embedded migrations, applied at start-up under an
//!   advisory lock;
//! - [`schema`]: the table and a stored [`User`];
//! - `merge`: the merge rule in SQL, for one change or a batch; every change
//!   moves the user's `version`, conditional ones only when [`Preconditions`]
//!   hold (checked by the statement that writes);
//! - `idempotency`: the first answer to a keyed request, kept and replayed;
//! - `isolate`: the records the database itself refuses (SQLSTATE 22, 23),
//!   found by splitting a batch, so the rest of it can land;
//! - `offsets`: where each consumer group is in each partition, advanced in
//!   the same transaction as the rows (effectively once, zombies fenced);
//! - `replays`: dead letters' places in their users' histories, so a replayed
//!   letter never undoes a later change;
//! - `read`: reads of one user, pipelined on a connection per worker thread;
//! - [`Database`]: the pool and its operations, each bounded in time;
//! - [`metrics`]: the pool's gauges.

/// Makes a hand-written statement (a `QueryFragment` with a lifetime) a query
/// diesel runs as a prepared statement cached by its SQL text - it has no
/// static query id - with rows read by column name.
macro_rules! prepared_by_sql_text {
    ($statement:ident) => {
        impl diesel::query_builder::QueryId for $statement<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl diesel::query_builder::Query for $statement<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
}

mod conditions;
pub mod connect;
mod database;
mod idempotency;
mod isolate;
mod merge;
pub mod metrics;
pub mod migrate;
mod offsets;
mod read;
mod replays;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use service_kit::settings::{number, seconds};

pub use conditions::{Outcome, Preconditions, Versions};
pub use database::{BatchWrite, Database, PoolStatus};
pub use idempotency::{Keyed, PURGE_BATCH, StoredAnswer};
pub use isolate::{Refusal, UserRecords};
pub use offsets::OffsetAdvance;
pub use replays::{LetterMark, MarksReader, RecordPlace};
pub use schema::User;

/// The database variables, the same in every process that embeds them (with
/// `#[serde(flatten)]`). `Debug` shows `DATABASE_URL` without its password.
#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`, libpq style.
    #[serde(rename = "database_url")]
    pub url: String,
    /// `DATABASE_POOL_SIZE`: connections of the process.
    #[serde(rename = "database_pool_size", deserialize_with = "number")]
    pub pool_size: usize,
    /// `DATABASE_CONNECT_TIMEOUT`: the longest wait for a connection.
    #[serde(rename = "database_connect_timeout", deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// `DATABASE_QUERY_TIMEOUT`: the longest wait for the database's answer.
    #[serde(rename = "database_query_timeout", deserialize_with = "seconds")]
    pub query_timeout: Duration,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so that a field added later must be placed here too.
        let Self {
            url,
            pool_size,
            connect_timeout,
            query_timeout,
        } = self;
        f.debug_struct("DatabaseSettings")
            .field("url", &connect::redact_password(url))
            .field("pool_size", pool_size)
            .field("connect_timeout", connect_timeout)
            .field("query_timeout", query_timeout)
            .finish()
    }
}

impl DatabaseSettings {
    /// The documented defaults, to put among a process's own.
    pub const DEFAULTS: [(&str, &str); 4] = [
        (
            "database_url",
            "postgres://postgres:postgres@127.0.0.1:5432/user_info",
        ),
        ("database_pool_size", "10"),
        ("database_connect_timeout", "5"),
        ("database_query_timeout", "10"),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Migrations have not been applied yet (the database has not been reachable
    /// since start-up).
    #[error("database not ready: migrations pending")]
    NotReady,
    /// The database cannot be reached or answered with an error; retrying later is
    /// the remedy (HTTP 503, consumer backoff).
    ///
    /// A plain boxed error, not `anyhow`: anyhow captures a backtrace when
    /// `RUST_BACKTRACE` is set, and the request logger's `Debug` output then
    /// symbolises it - loading the binary's debug info into memory (~100 MiB) the
    /// first time the database goes away.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database answered and refused a statement: maybe the data's fault
    /// (a constraint: see [`Database::find_refused`]), maybe its own (a full
    /// disk); diesel does not say which.
    #[error("the database refused the change")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The partition's stored offset is not where the batch started: another
    /// member applied these records meanwhile. The batch was rolled back.
    #[error(
        "the stored offset of one of {partitions} moved on: the batch was applied elsewhere and is dropped"
    )]
    Fenced { partitions: String },
    /// Replayed dead letters whose users changed since they were dead-lettered
    /// (their original places): applying them would undo a later change. The
    /// batch was rolled back; without them it applies.
    #[error("{} replayed record(s) superseded by later changes of their users", .0.len())]
    Superseded(Vec<RecordPlace>),
    /// A concurrent writer kept creating and deleting the same row.
    #[error(
        "gave up merging after {} attempts under contention",
        merge::MERGE_ATTEMPTS
    )]
    Contention,
}

/// A change the database refused because of the data itself: a constraint
/// (SQLSTATE class 23) - maybe one an operator added. The client's to fix, not a
/// reason to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintRefusal {
    /// UNIQUE, foreign key, exclusion: the data conflicts with other rows (HTTP 409).
    /// CHECK, NOT NULL: the data itself is refused (HTTP 422).
    pub conflict: bool,
    /// What the constraint is (`UNIQUE`, `CHECK`, ...), for the answer.
    pub kind: &'static str,
    /// The constraint's name, when PostgreSQL gives it (a schema name, never a value).
    pub constraint: Option<String>,
}

impl StoreError {
    /// The constraint that refused the change, when that is why it was refused.
    pub fn constraint_refusal(&self) -> Option<ConstraintRefusal> {
        use diesel::result::DatabaseErrorKind as Kind;
        let StoreError::Rejected(error) = self else {
            return None;
        };
        let diesel::result::Error::DatabaseError(kind, info) =
            error.downcast_ref::<diesel::result::Error>()?
        else {
            return None;
        };
        let (conflict, kind) = match kind {
            Kind::UniqueViolation => (true, "UNIQUE"),
            Kind::ForeignKeyViolation => (true, "FOREIGN KEY"),
            Kind::ExclusionViolation => (true, "EXCLUDE"),
            Kind::RestrictViolation => (true, "RESTRICT"),
            Kind::CheckViolation => (false, "CHECK"),
            Kind::NotNullViolation => (false, "NOT NULL"),
            _ => return None,
        };
        Some(ConstraintRefusal {
            conflict,
            kind,
            constraint: info.constraint_name().map(str::to_owned),
        })
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand};
        match error {
            diesel::result::Error::DatabaseError(kind, _)
                if !matches!(kind, UnableToSendCommand | ClosedConnection) =>
            {
                StoreError::Rejected(error.into())
            }
            error => StoreError::Unavailable(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let settings = DatabaseSettings {
            url: "postgres://user_info:hunter2-db-secret@db.internal:5432/user_info?sslmode=verify-full"
                .to_owned(),
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains(
                "postgres://user_info:***@db.internal:5432/user_info?sslmode=verify-full"
            ),
            "{shown}"
        );
        assert!(shown.contains("pool_size: 10"), "{shown}");
    }
}
