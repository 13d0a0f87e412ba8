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
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use domain::user::Folded;
use domain::{UserFields, user::Change};
use serde::Serialize;
use uuid::Uuid;

use crate::postgres::{Connector, UrlError};

type PgPool = Pool<AsyncPgConnection>;

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
    ///
    /// A plain boxed error, not `anyhow`: anyhow captures a backtrace when
    /// `RUST_BACKTRACE` is set, and the request logger's `Debug` output then
    /// symbolises it - loading the binary's debug info into memory (~100 MiB) the
    /// first time the database goes away.
    #[error("database unavailable")]
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

/// The database as the services use it: a pool of connections, plus whether
/// migrations have been applied. Until they have, every data operation answers
/// "not ready". Every operation is bounded: at most `connect_timeout` to get a
/// connection, at most `query_timeout` for the database to answer.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    migrated: AtomicBool,
    connect_timeout: Duration,
    query_timeout: Duration,
}

/// What [`Database::start`] needs to know.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    /// Names this process in `pg_stat_activity` (unless the URL does).
    pub application_name: &'static str,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
}

impl Database {
    /// Creates the pool (without connecting) and starts applying migrations in
    /// the background, retrying with capped backoff until the database answers.
    /// Fails only on a `DATABASE_URL` that can never work.
    pub fn start(settings: &DatabaseSettings) -> Result<Self, UrlError> {
        let shared = Arc::new(Shared {
            connector: Connector::parse(&settings.url, settings.application_name)?,
            migrated: AtomicBool::new(false),
            connect_timeout: settings.connect_timeout,
            query_timeout: settings.query_timeout,
        });
        let database = Database {
            pool: pool(&shared.connector, settings.pool_size),
            shared,
        };
        tokio::spawn(database.clone().migrate_until_done());
        Ok(database)
    }

    /// The same database through a pool of its own, sharing the migration
    /// state: each HTTP worker thread gets one, so that a connection's I/O is
    /// driven by the thread whose requests use it.
    pub fn with_own_pool(&self, size: usize) -> Self {
        Database {
            pool: pool(&self.shared.connector, size),
            shared: self.shared.clone(),
        }
    }

    pub fn is_migrated(&self) -> bool {
        AtomicBool::load(&self.shared.migrated, Ordering::Acquire)
    }

    /// Migrated and answering a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.checkout().await?;
        let result = self.bounded(conn.batch_execute("SELECT 1")).await;
        settle(conn, result)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let mut conn = self.checkout().await?;
        let query = user_info::table.find(id).select(User::as_select());
        let result = self
            .bounded(async { query.first(&mut conn).await.optional() })
            .await;
        settle(conn, result)
    }

    /// Deletes a user; `false` when there was none.
    pub async fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
        let mut conn = self.checkout().await?;
        let result = self
            .bounded(diesel::delete(user_info::table.find(id)).execute(&mut conn))
            .await;
        settle(conn, result.map(|deleted| deleted > 0))
    }

    /// Merges one change into the stored user, creating it when absent. Returns
    /// the stored user and whether it was created.
    pub async fn merge(&self, id: Uuid, fields: &UserFields) -> Result<(User, bool), StoreError> {
        let mut conn = self.checkout().await?;
        let result = self
            .bounded(merge_many(&mut conn, &[(id, fields)], Expect::Existing))
            .await;
        settle(conn, result)?.pop().ok_or(StoreError::Contention)
    }

    /// Applies changes in log order, exactly as if applied one by one, in a
    /// single transaction: several changes to one user are folded first.
    pub async fn apply_batch(
        &self,
        changes: impl IntoIterator<Item = (Uuid, Change)>,
    ) -> Result<(), StoreError> {
        let folded = domain::fold_changes(changes);
        let removed: Vec<Uuid> = folded
            .iter()
            .filter(|(_, op)| matches!(op, Folded::Delete | Folded::Replace(_)))
            .map(|(id, _)| *id)
            .collect();
        let merged: Vec<(Uuid, &UserFields)> = folded
            .iter()
            .filter_map(|(id, op)| match op {
                Folded::Upsert(fields) | Folded::Replace(fields) => Some((*id, fields)),
                Folded::Delete => None,
            })
            .collect();
        let mut conn = self.checkout().await?;
        let transaction = conn.transaction::<_, StoreError, _>(async |conn| {
            if !removed.is_empty() {
                diesel::delete(user_info::table.filter(user_info::user_id.eq_any(&removed)))
                    .execute(conn)
                    .await?;
            }
            merge_many(conn, &merged, Expect::New).await?;
            Ok(())
        });
        let result = self.bounded(transaction).await;
        settle(conn, result)
    }

    /// A pooled connection, once migrations are applied, within the connect
    /// timeout.
    async fn checkout(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        if !self.is_migrated() {
            return Err(StoreError::NotReady);
        }
        tokio::time::timeout(self.shared.connect_timeout, self.pool.get())
            .await
            .map_err(|_| {
                StoreError::Unavailable("no database connection within the connect timeout".into())
            })?
            .map_err(|error| StoreError::Unavailable(error.into()))
    }

    /// Bounds a database operation by the query timeout. When it runs out, the
    /// operation is dropped (and its connection discarded by [`settle`]).
    async fn bounded<T, E>(
        &self,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError>
    where
        StoreError: From<E>,
    {
        match tokio::time::timeout(self.shared.query_timeout, operation).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Unavailable(
                format!(
                    "no answer from the database within {:?}",
                    self.shared.query_timeout
                )
                .into(),
            )),
        }
    }

    async fn migrate_until_done(self) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.migrate().await {
                Ok(()) => {
                    AtomicBool::store(&self.shared.migrated, true, Ordering::Release);
                    tracing::info!("database migrations applied");
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "cannot migrate the database yet");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Applies pending migrations under an advisory lock, so that replicas
    /// starting together migrate one after the other and the later ones find
    /// nothing to do. diesel's migration harness is synchronous: it runs on a
    /// blocking thread, over a connection of our own (not a pooled one).
    async fn migrate(&self) -> anyhow::Result<()> {
        let connect = self.shared.connector.connect();
        let conn = tokio::time::timeout(self.shared.connect_timeout, connect)
            .await
            .map_err(|_| anyhow::anyhow!("no connection within the connect timeout"))??;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK})");
            SimpleConnection::batch_execute(&mut conn, &lock)?;
            let result = conn
                .run_pending_migrations(MIGRATIONS)
                .map(|_| ())
                .map_err(|error| anyhow::anyhow!(error));
            let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})");
            let unlocked = SimpleConnection::batch_execute(&mut conn, &unlock);
            result?;
            unlocked?;
            Ok(())
        })
        .await?
    }
}

/// A pool that does not connect yet, so the service starts (and answers
/// `/health`) while the database is still down. Connections are not pinged on
/// checkout (a round trip per request); one whose work failed is discarded by
/// [`settle`] instead, so a database restart still heals by itself.
fn pool(connector: &Connector, size: usize) -> PgPool {
    let connector = connector.clone();
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |_url| {
        let connector = connector.clone();
        Box::pin(async move { connector.connect().await })
    });
    let manager = AsyncDieselConnectionManager::new_with_config("", config);
    #[allow(clippy::expect_used)] // only fails with a runtime-dependent timeout set
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .expect("a pool without timeouts always builds")
}

/// Returns the connection to the pool, or throws it away when its work failed:
/// diesel only notices a broken transaction, not a dead socket.
fn settle<T>(
    conn: Object<AsyncPgConnection>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if result.is_err() {
        drop(Object::take(conn));
    }
    result
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
async fn merge_many(
    conn: &mut AsyncPgConnection,
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
            let written = run_merge_statement(conn, statement, &pending).await?;
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

/// The two merge statements, around the changes (`unnest(...)` or `(VALUES (...))`).
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
async fn run_merge_statement(
    conn: &mut AsyncPgConnection,
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
    .await
}

/// [`UPDATE_SQL`] or [`INSERT_SQL`] around the changes: `unnest` of five array
/// parameters, or for a single change one `VALUES` row.
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
