//! Finding the records the database itself refuses - a CHECK, length or
//! encoding rule, a constraint an operator added: SQLSTATE classes 22 (data
//! exception) and 23 (integrity constraint violation) - so that they can be
//! dead-lettered and the rest of their batch applied.
//!
//! A dry run, always rolled back, over a plain tokio-postgres connection (whose
//! errors carry the SQLSTATE, which diesel's do not): the batch's operations are
//! tried in a savepoint, halves of a refused set are tried apart (halves, not
//! one by one), and a single refused user's records are then tried one by one,
//! in order, each on top of those accepted before it - exactly what applying
//! them one by one would do. Any other error (a connection lost, a disk full)
//! ends the run: that is the database's trouble, not the records'.

use domain::{Change, UserFields};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::StoreError;
use crate::merge::{INSERT_SQL, UPDATE_SQL};

/// A record the database refused, by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    /// The SQLSTATE, e.g. `23514`.
    pub sqlstate: String,
    /// The constraint that refused it, when PostgreSQL names one.
    pub constraint: Option<String>,
}

impl Refusal {
    /// Why, for a `dlq-reason` header: the SQLSTATE and the constraint, never
    /// the value (PostgreSQL's message may quote it).
    pub fn reason(&self) -> String {
        match &self.constraint {
            Some(constraint) => format!(
                "refused by the database: SQLSTATE {} (constraint {constraint})",
                self.sqlstate
            ),
            None => format!("refused by the database: SQLSTATE {}", self.sqlstate),
        }
    }
}

/// One user's records of the batch, in offset order, with their indices.
pub struct UserRecords<'a> {
    pub id: Uuid,
    pub changes: Vec<(usize, &'a Change)>,
}

/// Why one statement failed.
enum Failed {
    /// The records' fault (classes 22, 23).
    Refused {
        sqlstate: String,
        constraint: Option<String>,
    },
    /// The database's trouble.
    Database(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        let refused = error
            .code()
            .map(SqlState::code)
            .filter(|code| code.starts_with("22") || code.starts_with("23"));
        match refused {
            Some(sqlstate) => Failed::Refused {
                sqlstate: sqlstate.to_owned(),
                constraint: error
                    .as_db_error()
                    .and_then(|db| db.constraint())
                    .map(str::to_owned),
            },
            None => Failed::Database(error),
        }
    }
}

/// The refused records among `users` (each user's records in order).
pub(crate) async fn find_refused(
    client: &mut Client,
    users: &[UserRecords<'_>],
) -> Result<Vec<Refusal>, StoreError> {
    let unavailable = |error: tokio_postgres::Error| StoreError::Unavailable(error.into());
    let transaction = client.transaction().await.map_err(unavailable)?;
    let mut refused = Vec::new();
    let mut pending: Vec<&[UserRecords<'_>]> = vec![users];
    while let Some(set) = pending.pop() {
        match try_in_savepoint(&transaction, set).await {
            Ok(()) => {}
            Err(Failed::Database(error)) => return Err(unavailable(error)),
            Err(Failed::Refused { .. }) if set.len() > 1 => {
                let (first, second) = set.split_at(set.len() / 2);
                // Popped in order: the first half is tried first.
                pending.push(second);
                pending.push(first);
            }
            Err(Failed::Refused { .. }) => {
                for user in set {
                    refused.extend(one_by_one(&transaction, user).await.map_err(|failed| {
                        match failed {
                            Failed::Database(error) => unavailable(error),
                            Failed::Refused { .. } => {
                                StoreError::Unavailable("a savepoint was refused".into())
                            }
                        }
                    })?);
                }
            }
        }
    }
    transaction.rollback().await.map_err(unavailable)?;
    Ok(refused)
}

/// Applies `set` (each user's records folded) inside a savepoint, released on
/// success and rolled back on failure.
async fn try_in_savepoint(
    transaction: &Transaction<'_>,
    set: &[UserRecords<'_>],
) -> Result<(), Failed> {
    transaction.batch_execute("SAVEPOINT isolate").await?;
    let mut result = Ok(());
    for user in set {
        for (_, change) in &user.changes {
            result = apply(transaction, user.id, change).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    let end = if result.is_ok() {
        "RELEASE SAVEPOINT isolate"
    } else {
        "ROLLBACK TO SAVEPOINT isolate; RELEASE SAVEPOINT isolate"
    };
    transaction.batch_execute(end).await?;
    result
}

/// Tries one user's records one by one; returns those refused.
async fn one_by_one(
    transaction: &Transaction<'_>,
    user: &UserRecords<'_>,
) -> Result<Vec<Refusal>, Failed> {
    let mut refused = Vec::new();
    for (index, change) in &user.changes {
        transaction.batch_execute("SAVEPOINT record").await?;
        match apply(transaction, user.id, change).await {
            Ok(()) => {
                transaction
                    .batch_execute("RELEASE SAVEPOINT record")
                    .await?
            }
            Err(Failed::Refused {
                sqlstate,
                constraint,
            }) => {
                transaction
                    .batch_execute("ROLLBACK TO SAVEPOINT record; RELEASE SAVEPOINT record")
                    .await?;
                refused.push(Refusal {
                    index: *index,
                    sqlstate,
                    constraint,
                });
            }
            Err(failed) => return Err(failed),
        }
    }
    Ok(refused)
}

/// One change, by the same merge SQL as every other write.
async fn apply(transaction: &Transaction<'_>, id: Uuid, change: &Change) -> Result<(), Failed> {
    let ids = vec![id.to_string()];
    let fields = match change {
        Change::Delete => {
            transaction
                .execute(
                    "DELETE FROM user_info WHERE user_id = ANY($1::text[]::uuid[])",
                    &[&ids],
                )
                .await?;
            return Ok(());
        }
        Change::Upsert(fields) => fields,
    };
    let column = |pick: fn(&UserFields) -> Option<&str>| vec![pick(fields)];
    let first_names = column(|f| f.first_name.as_ref().map(|v| v.as_str()));
    let last_names = column(|f| f.last_name.as_ref().map(|v| v.as_str()));
    let emails = column(|f| f.email.as_ref().map(|v| v.as_str()));
    let phone_numbers = column(|f| f.phone_number.as_ref().map(|v| v.as_str()));
    let rows = "unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])";
    for (head, tail) in [UPDATE_SQL, INSERT_SQL] {
        let sql = format!("{head}{rows}{tail}");
        let written = transaction
            .execute(
                &sql,
                &[&ids, &first_names, &last_names, &emails, &phone_numbers],
            )
            .await?;
        if written > 0 {
            break;
        }
    }
    Ok(())
}
