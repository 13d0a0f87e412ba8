//! The user store: every read and write of the `user_info` table, shared by the
//! HTTP service and the Kafka consumer so that both apply the same merge rule.
//!
//! Merging is "update, else insert": an `UPDATE ... FROM unnest(...)` changes the
//! rows that exist (a `NULL` field keeps the stored value), then an
//! `INSERT ... ON CONFLICT DO NOTHING` creates the rest (a `NULL` field becomes
//! `''`). A row created or deleted by someone else in between is simply retried,
//! so concurrent writers never lose a field. The same two statements serve one
//! HTTP request and a batch of thousands of Kafka records.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool, PooledConnection};
use diesel::sql_types::{Array, Nullable, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use domain::user::Folded;
use domain::{UserFields, user::Change};
use serde::Serialize;
use uuid::Uuid;

pub type PgPool = Pool<Manager>;
pub type PgPooled = PooledConnection<Manager>;

/// A pooled connection that remembers whether it failed. diesel only notices a
/// broken *transaction*, not a dead socket; rather than pinging the server on
/// every checkout (a round trip per request), a connection whose work failed is
/// discarded when it goes back to the pool, and the next checkout reconnects.
pub struct PgConn {
    conn: PgConnection,
    failed: bool,
}

/// The pool's connection manager: diesel's, plus the [`PgConn`] rule.
pub struct Manager(ConnectionManager<PgConnection>);

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConn, Self::Error> {
        self.0.connect().map(|conn| PgConn {
            conn,
            failed: false,
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.conn)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.failed || self.0.has_broken(&mut conn.conn)
    }
}

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Key of the PostgreSQL advisory lock that serialises migrations between every
/// process sharing the database ("userinfo" in ASCII).
const MIGRATION_LOCK: i64 = 0x7573_6572_696e_666f;

/// How many times a merge retries rows that a concurrent writer created or
/// deleted between our UPDATE and INSERT before giving up.
const MERGE_ATTEMPTS: usize = 8;

diesel::table! {
    user_info (user_id) {
        user_id -> Uuid,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        phone_number -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

/// A stored user, as answered by the API.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Serialize, utoipa::ToSchema,
)]
#[diesel(table_name = user_info, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub user_id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Migrations have not been applied yet (the database has not been reachable
    /// since start-up).
    #[error("database not ready: migrations pending")]
    NotReady,
    /// The database cannot be reached or answered with an error; retrying later is
    /// the remedy (HTTP 503, consumer backoff).
    #[error("database unavailable")]
    ///
    /// A plain boxed error, not `anyhow`: anyhow captures a backtrace when
    /// `RUST_BACKTRACE` is set, and the request logger's `Debug` output then
    /// symbolises it - loading the binary's debug info into memory (~100 MiB) the
    /// first time the database goes away.
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A concurrent writer kept creating and deleting the same row.
    #[error("gave up merging after {MERGE_ATTEMPTS} attempts under contention")]
    Contention,
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        StoreError::Unavailable(error.into())
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(error.into())
    }
}

/// The database as the services use it: a pool, plus whether migrations have
/// been applied. Until they have, every data operation answers "not ready".
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    migrated: Arc<AtomicBool>,
    /// One permit per pooled connection: requests beyond that wait here, as cheap
    /// futures, instead of each parking a blocking thread on the pool (during an
    /// outage that grew the process by a thread stack and malloc arena per waiter).
    slots: Arc<tokio::sync::Semaphore>,
    connect_timeout: Duration,
}

impl Database {
    /// Creates the pool (without connecting) and starts applying migrations in
    /// the background, retrying with capped backoff until the database answers.
    pub fn start(database_url: &str, size: u32, connect_timeout: Duration) -> Self {
        let database = Database {
            pool: pool(database_url, size, connect_timeout),
            migrated: Arc::new(AtomicBool::new(false)),
            slots: Arc::new(tokio::sync::Semaphore::new(size.max(1) as usize)),
            connect_timeout,
        };
        tokio::spawn(database.clone().migrate_until_done());
        database
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Runs blocking diesel work on a pooled connection, off the async executor.
    /// Waits at most the pool's connection timeout for a connection.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        if !self.is_migrated() {
            return Err(StoreError::NotReady);
        }
        let started = tokio::time::Instant::now();
        let slot = tokio::time::timeout(self.connect_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Unavailable("no database connection free in time".into()))?
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        let pool = self.pool.clone();
        // What is left of the connection timeout after waiting for the slot.
        let remaining = self.connect_timeout.saturating_sub(started.elapsed());
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut pooled = pool.get_timeout(remaining.max(Duration::from_millis(1)))?;
            let result = work(&mut pooled.conn);
            pooled.failed = result.is_err();
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(error.into()))?
    }

    /// Migrated and answering a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(ping).await
    }

    async fn migrate_until_done(self) {
        let mut delay = Duration::from_millis(200);
        loop {
            let pool = self.pool.clone();
            let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut pooled = pool.get()?;
                let result = migrate(&mut pooled.conn);
                pooled.failed = result.is_err();
                result
            })
            .await;
            match outcome {
                Ok(Ok(())) => {
                    self.migrated.store(true, Ordering::Release);
                    tracing::info!("database migrations applied");
                    return;
                }
                Ok(Err(error)) => {
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "cannot migrate the database yet");
                }
                Err(error) => tracing::error!(%error, "migration task failed"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Builds a pool that does not connect yet, so the service starts (and answers
/// `/health`) while the database is still down.
pub fn pool(database_url: &str, size: u32, connect_timeout: Duration) -> PgPool {
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .test_on_check_out(false)
        .connection_timeout(connect_timeout)
        .build_unchecked(Manager(ConnectionManager::new(database_url)))
}

/// Applies pending migrations under an advisory lock, so that replicas starting
/// together migrate one after the other and the later ones find nothing to do.
pub fn migrate(conn: &mut PgConnection) -> anyhow::Result<()> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|error| anyhow::anyhow!(error));
    let unlocked = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result?;
    unlocked?;
    Ok(())
}

/// Checks that the database answers a query.
pub fn ping(conn: &mut PgConnection) -> Result<(), StoreError> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

pub fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<User>, StoreError> {
    Ok(user_info::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Deletes a user; `false` when there was none.
pub fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, StoreError> {
    Ok(diesel::delete(user_info::table.find(id)).execute(conn)? > 0)
}

/// Merges one change into the stored user, creating it when absent. Returns the
/// stored user and whether it was created.
pub fn merge(
    conn: &mut PgConnection,
    id: Uuid,
    fields: &UserFields,
) -> Result<(User, bool), StoreError> {
    merge_many(conn, &[(id, fields)], Expect::Existing)?
        .pop()
        .ok_or(StoreError::Contention)
}

/// Applies changes in log order, exactly as if applied one by one, in a single
/// transaction: several changes to one user are folded first.
pub fn apply_batch(
    conn: &mut PgConnection,
    changes: impl IntoIterator<Item = (Uuid, Change)>,
) -> Result<(), StoreError> {
    let folded = domain::fold_changes(changes);
    conn.transaction(|conn| {
        let removed: Vec<Uuid> = folded
            .iter()
            .filter(|(_, op)| matches!(op, Folded::Delete | Folded::Replace(_)))
            .map(|(id, _)| *id)
            .collect();
        if !removed.is_empty() {
            diesel::delete(user_info::table.filter(user_info::user_id.eq_any(&removed)))
                .execute(conn)?;
        }
        let merged: Vec<(Uuid, &UserFields)> = folded
            .iter()
            .filter_map(|(id, op)| match op {
                Folded::Upsert(fields) | Folded::Replace(fields) => Some((*id, fields)),
                Folded::Delete => None,
            })
            .collect();
        merge_many(conn, &merged, Expect::New)?;
        Ok(())
    })
}

/// Which rows a merge expects to find, to try the statement that usually does
/// all the work first: a `POST /user` mostly updates, a batch from Kafka (a
/// backfill, new users) mostly inserts. Either order gives the same result.
#[derive(Clone, Copy)]
enum Expect {
    Existing,
    New,
}

/// The merge itself; `changes` must name each user at most once.
fn merge_many(
    conn: &mut PgConnection,
    changes: &[(Uuid, &UserFields)],
    expect: Expect,
) -> Result<Vec<(User, bool)>, StoreError> {
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
            let written = run_merge_statement(conn, statement, &pending)?;
            let ids: HashSet<Uuid> = written.iter().map(|user| user.user_id).collect();
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

/// The two merge statements, around `unnest(<the changes>)`.
const UPDATE_SQL: (&str, &str) = (
    "UPDATE user_info AS u SET \
        first_name = COALESCE(c.first_name, u.first_name), \
        last_name = COALESCE(c.last_name, u.last_name), \
        email = COALESCE(c.email, u.email), \
        phone_number = COALESCE(c.phone_number, u.phone_number), \
        updated_at = now() \
     FROM ",
    " AS c(user_id, first_name, last_name, email, phone_number) \
     WHERE u.user_id = c.user_id \
     RETURNING u.*",
);

const INSERT_SQL: (&str, &str) = (
    "INSERT INTO user_info (user_id, first_name, last_name, email, phone_number) \
     SELECT c.user_id, COALESCE(c.first_name, ''), COALESCE(c.last_name, ''), \
            COALESCE(c.email, ''), COALESCE(c.phone_number, '') \
     FROM ",
    " AS c(user_id, first_name, last_name, email, phone_number) \
     ON CONFLICT (user_id) DO NOTHING \
     RETURNING *",
);

/// Runs one of the merge statements with the changes bound as parallel arrays
/// (`NULL` = field absent from the change). Unlike `sql_query`, this statement
/// is prepared once per connection and reused.
fn run_merge_statement(
    conn: &mut PgConnection,
    (head, tail): (&'static str, &'static str),
    changes: &[(Uuid, &UserFields)],
) -> QueryResult<Vec<User>> {
    let column = |pick: fn(&UserFields) -> Option<&str>| -> Vec<Option<&str>> {
        changes.iter().map(|(_, fields)| pick(fields)).collect()
    };
    MergeStatement {
        head,
        tail,
        ids: changes.iter().map(|(id, _)| *id).collect(),
        first_names: column(|f| f.first_name.as_ref().map(|v| v.as_str())),
        last_names: column(|f| f.last_name.as_ref().map(|v| v.as_str())),
        emails: column(|f| f.email.as_ref().map(|v| v.as_str())),
        phone_numbers: column(|f| f.phone_number.as_ref().map(|v| v.as_str())),
    }
    .load(conn)
}

/// [`UPDATE_SQL`] or [`INSERT_SQL`] around `unnest` of its five array parameters.
struct MergeStatement<'a> {
    head: &'static str,
    tail: &'static str,
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
        out.push_sql(self.tail);
        Ok(())
    }
}

/// No static id: diesel caches the prepared statement by its SQL text instead.
impl diesel::query_builder::QueryId for MergeStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for MergeStatement<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for MergeStatement<'_> {}
