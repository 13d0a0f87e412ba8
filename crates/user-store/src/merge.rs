//! The merge rule in SQL: "update, else insert", for one change or thousands.
//!
//! An `UPDATE ... FROM unnest(...)` changes the rows that exist (a `NULL` field
//! keeps the stored value), then an `INSERT ... ON CONFLICT DO NOTHING` creates
//! the rest (a `NULL` field becomes `''`). A row created or deleted by someone
//! else in between is simply retried, so concurrent writers never lose a field.

use std::collections::HashSet;

use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::UserFields;
use uuid::Uuid;

use crate::StoreError;
use crate::conditions::{Outcome, Preconditions, Versions};
use crate::schema::{User, user_info};

/// How many times a merge retries rows that a concurrent writer created or
/// deleted between our UPDATE and INSERT before giving up.
pub(crate) const MERGE_ATTEMPTS: usize = 8;

/// Which rows a merge expects to find, to try the statement that usually does
/// all the work first: a `POST /user` mostly updates, a batch from Kafka (a
/// backfill, new users) mostly inserts. Either order gives the same result.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Existing,
    New,
}

/// One change merged under a precondition (`If-Match`, `If-None-Match`),
/// creating the user only when `may_create` (`POST`, not `PATCH`).
///
/// Each write is one statement that checks and changes at once: a
/// [`ConditionalUpdate`] for a user that exists, `INSERT ... ON CONFLICT DO
/// NOTHING` for one that does not. When it writes nothing, the stored version
/// is read to tell why: the precondition fails (412), the user is unknown
/// (404), or the row was created or deleted in between - then it is tried again.
pub(crate) async fn merge_if(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    fields: &UserFields,
    preconditions: &Preconditions,
    may_create: bool,
) -> Result<Outcome<(User, bool)>, StoreError> {
    // `If-None-Match: *` can only hold for a user that does not exist yet.
    let mut exists = !matches!(preconditions.if_none_match, Some(Versions::Any));
    for _ in 0..MERGE_ATTEMPTS {
        if exists {
            let update = ConditionalUpdate {
                id,
                fields: [
                    fields.first_name.as_ref().map(|v| v.as_str()),
                    fields.last_name.as_ref().map(|v| v.as_str()),
                    fields.email.as_ref().map(|v| v.as_str()),
                    fields.phone_number.as_ref().map(|v| v.as_str()),
                ],
                if_match: preconditions.if_match.as_ref().and_then(Versions::listed),
                if_none_match: preconditions
                    .if_none_match
                    .as_ref()
                    .and_then(Versions::listed),
            };
            if let Some(user) = update.load(conn).await?.pop() {
                return Ok(Outcome::Done((user, false)));
            }
        } else if may_create && preconditions.if_match.is_none() {
            let created: Vec<User> = run_merge_statement(conn, INSERT_SQL, &[(id, fields)]).await?;
            if let Some(user) = created.into_iter().next() {
                return Ok(Outcome::Done((user, true)));
            }
        }
        let current = stored_version(conn, id).await?;
        if !preconditions.hold(current) {
            return Ok(Outcome::PreconditionFailed { current });
        }
        match current {
            None if !may_create => return Ok(Outcome::NotFound),
            current => exists = current.is_some(),
        }
    }
    Err(StoreError::Contention)
}

/// The stored version of a user; `None` when there is no such user.
pub(crate) async fn stored_version(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<i64>> {
    use diesel::{OptionalExtension, QueryDsl};
    user_info::table
        .find(id)
        .select(user_info::version)
        .first(conn)
        .await
        .optional()
}

/// What a merge statement hands back of each row it wrote: the [`User`] (to
/// answer an HTTP request with), or its [`WrittenId`] only (a batch from Kafka
/// answers no one: the ids are all it needs, and PostgreSQL then neither builds
/// nor sends the rows).
pub(crate) trait Written: QueryableByName<Pg> + Send + 'static {
    /// The columns after `RETURNING`, the table's alias before them.
    const COLUMNS: &'static str;
    fn user_id(&self) -> Uuid;
}

impl Written for User {
    const COLUMNS: &'static str = "*";
    fn user_id(&self) -> Uuid {
        self.user_id
    }
}

/// The id of a row a merge wrote.
#[derive(QueryableByName)]
pub(crate) struct WrittenId {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    user_id: Uuid,
}

impl Written for WrittenId {
    const COLUMNS: &'static str = "user_id";
    fn user_id(&self) -> Uuid {
        self.user_id
    }
}

/// The merge itself; `changes` must name each user at most once. On a shared
/// connection reference, so that its first statement can be pipelined behind
/// others of the same transaction.
pub(crate) async fn merge_many<W: Written>(
    conn: &AsyncPgConnection,
    changes: &[(Uuid, &UserFields)],
    expect: Expect,
) -> Result<Vec<(W, bool)>, StoreError> {
    let order = match expect {
        Expect::Existing => [(UPDATE_SQL, false), (INSERT_SQL, true)],
        Expect::New => [(INSERT_SQL, true), (UPDATE_SQL, false)],
    };
    let mut done = Vec::with_capacity(changes.len());
    let mut pending: Vec<(Uuid, &UserFields)> = changes.to_vec();
    for _ in 0..MERGE_ATTEMPTS {
        if pending.is_empty() {
            return Ok(done);
        }
        for (statement, created) in order {
            if pending.is_empty() {
                break;
            }
            let written: Vec<W> = run_merge_statement(conn, statement, &pending).await?;
            let ids: HashSet<Uuid> = written.iter().map(Written::user_id).collect();
            pending.retain(|(id, _)| !ids.contains(id));
            done.extend(written.into_iter().map(|user| (user, created)));
        }
    }
    if pending.is_empty() {
        Ok(done)
    } else {
        Err(StoreError::Contention)
    }
}

/// Whether the change `c` changes anything of the stored row `u` (a field is
/// `NULL` in `c` when the change leaves it alone).
macro_rules! changes_anything {
    () => {
        "(ROW(COALESCE(c.first_name, u.first_name), COALESCE(c.last_name, u.last_name), \
              COALESCE(c.email, u.email), COALESCE(c.phone_number, u.phone_number)) \
          IS DISTINCT FROM ROW(u.first_name, u.last_name, u.email, u.phone_number))"
    };
}

/// What a change does to a stored row `u` from the change `c`: the one place
/// where `updated_at` and `version` move, in the same statement as the fields,
/// for every writer (HTTP, conditional or not, and Kafka batches) - and only
/// when a value changes: a retry, a replayed record or an identical `POST`
/// keeps the version, the ETag and `updated_at`.
macro_rules! update_head {
    () => {
        concat!(
            "UPDATE user_info AS u SET \
                first_name = COALESCE(c.first_name, u.first_name), \
                last_name = COALESCE(c.last_name, u.last_name), \
                email = COALESCE(c.email, u.email), \
                phone_number = COALESCE(c.phone_number, u.phone_number), \
                updated_at = CASE WHEN ",
            changes_anything!(),
            " THEN now() ELSE u.updated_at END, \
                version = CASE WHEN ",
            changes_anything!(),
            " THEN u.version + 1 ELSE u.version END \
             FROM "
        )
    };
}

/// The two merge statements, around the changes (`unnest(...)` or `(VALUES
/// (...))`), each followed by `RETURNING u.` and [`Written::COLUMNS`].
pub(crate) const UPDATE_SQL: (&str, &str) = (
    update_head!(),
    " AS c(user_id, first_name, last_name, email, phone_number) \
     WHERE u.user_id = c.user_id",
);

/// A user created under an id that was deleted before starts after the
/// deleted one's last version (`user_tombstones`): versions never repeat.
pub(crate) const INSERT_SQL: (&str, &str) = (
    "INSERT INTO user_info AS u (user_id, first_name, last_name, email, phone_number, version) \
     SELECT c.user_id, COALESCE(c.first_name, ''), COALESCE(c.last_name, ''), \
            COALESCE(c.email, ''), COALESCE(c.phone_number, ''), \
            COALESCE((SELECT t.version FROM user_tombstones AS t WHERE t.user_id = c.user_id), 0) + 1 \
     FROM ",
    " AS c(user_id, first_name, last_name, email, phone_number) \
     ON CONFLICT (user_id) DO NOTHING",
);

/// Runs one of the merge statements with the changes bound as parallel arrays
/// (`NULL` = field absent from the change). Unlike `sql_query`, this statement
/// is prepared once per connection and reused.
async fn run_merge_statement<W: Written>(
    mut conn: &AsyncPgConnection,
    (head, tail): (&'static str, &'static str),
    changes: &[(Uuid, &UserFields)],
) -> QueryResult<Vec<W>> {
    let column = |pick: fn(&UserFields) -> Option<&str>| -> Vec<Option<&str>> {
        changes.iter().map(|(_, fields)| pick(fields)).collect()
    };
    MergeStatement {
        head,
        tail,
        returning: W::COLUMNS,
        ids: changes.iter().map(|(id, _)| *id).collect(),
        first_names: column(|f| f.first_name.as_ref().map(|v| v.as_str())),
        last_names: column(|f| f.last_name.as_ref().map(|v| v.as_str())),
        emails: column(|f| f.email.as_ref().map(|v| v.as_str())),
        phone_numbers: column(|f| f.phone_number.as_ref().map(|v| v.as_str())),
    }
    .load(&mut conn)
    .await
}

/// [`UPDATE_SQL`] or [`INSERT_SQL`] around the changes: `unnest` of five array
/// parameters, or for a single change one `VALUES` row.
struct MergeStatement<'a> {
    head: &'static str,
    tail: &'static str,
    returning: &'static str,
    ids: Vec<Uuid>,
    first_names: Vec<Option<&'a str>>,
    last_names: Vec<Option<&'a str>>,
    emails: Vec<Option<&'a str>>,
    phone_numbers: Vec<Option<&'a str>>,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for MergeStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(self.head);
        if let ([id], [first_name], [last_name], [email], [phone_number]) = (
            self.ids.as_slice(),
            self.first_names.as_slice(),
            self.last_names.as_slice(),
            self.emails.as_slice(),
            self.phone_numbers.as_slice(),
        ) {
            // One change (an HTTP request): scalar parameters, whose generic
            // plan PostgreSQL keeps; with arrays it plans every execution anew,
            // since it cannot know their length in advance.
            out.push_sql("(VALUES (");
            out.push_bind_param::<diesel::sql_types::Uuid, _>(id)?;
            for field in [first_name, last_name, email, phone_number] {
                out.push_sql(", ");
                out.push_bind_param::<Nullable<Text>, _>(field)?;
            }
            out.push_sql("))");
        } else {
            out.push_sql("unnest(");
            out.push_bind_param::<Array<diesel::sql_types::Uuid>, _>(&self.ids)?;
            for column in [
                &self.first_names,
                &self.last_names,
                &self.emails,
                &self.phone_numbers,
            ] {
                out.push_sql(", ");
                out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
            }
            out.push_sql(")");
        }
        out.push_sql(self.tail);
        out.push_sql(" RETURNING u.");
        out.push_sql(self.returning);
        Ok(())
    }

    /// The INSERT is planned at each execution, never kept as a generic plan:
    /// it looks up the user's tombstone, and a plan made while
    /// `user_tombstones` was small (a seq scan: after a `VACUUM ANALYZE` of
    /// the empty table, as after a restore) would stay while the table grows,
    /// scanning every tombstone for every row inserted - a mixed ingest fell
    /// from 57,828 to 20,935 records/s that way. Planning it costs a few
    /// hundred microseconds, once per batch or per created user.
    fn is_safe_to_cache_prepared(&self, _backend: &diesel::pg::Pg) -> QueryResult<bool> {
        Ok(self.head != INSERT_SQL.0)
    }
}

prepared_by_sql_text!(MergeStatement);

/// [`UPDATE_SQL`] for one change, applied only when the stored version is among
/// `if_match` and not among `if_none_match` (either `None`: no such check).
struct ConditionalUpdate<'a> {
    id: Uuid,
    /// First name, last name, email, phone number; `None` = unchanged.
    fields: [Option<&'a str>; 4],
    if_match: Option<&'a [i64]>,
    if_none_match: Option<&'a [i64]>,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ConditionalUpdate<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(UPDATE_SQL.0);
        out.push_sql("(VALUES (");
        out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.id)?;
        for field in &self.fields {
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(field)?;
        }
        out.push_sql(
            ")) AS c(user_id, first_name, last_name, email, phone_number) \
             WHERE u.user_id = c.user_id \
               AND u.version = ANY(COALESCE(",
        );
        out.push_bind_param::<Nullable<Array<BigInt>>, _>(&self.if_match)?;
        out.push_sql(", ARRAY[u.version])) AND u.version <> ALL(COALESCE(");
        out.push_bind_param::<Nullable<Array<BigInt>>, _>(&self.if_none_match)?;
        out.push_sql(", '{}'::bigint[])) RETURNING u.*");
        Ok(())
    }
}

prepared_by_sql_text!(ConditionalUpdate);
