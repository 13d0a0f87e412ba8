//! The database as the processes use it: a pool, bounded operations, and
//! whether migrations have been applied yet.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{Folded, UserFields};
use uuid::Uuid;

use crate::conditions::{self, Outcome, Preconditions};
use crate::connect::{Connector, UrlError};
use crate::idempotency::{self, Keyed, StoredAnswer};
use crate::isolate::{self, Refusal, UserRecords};
use crate::merge::{Expect, WrittenId, merge_if, merge_many};
use crate::offsets::{self, OffsetAdvance};
use crate::read::Reader;
use crate::replays::{self, LetterMark, RecordPlace};
use crate::schema::{User, user_info};
use crate::{DatabaseSettings, StoreError, migrate};

type PgPool = Pool<AsyncPgConnection>;

/// The database as the services use it: a pool of connections, plus whether
/// migrations have been applied. Until they have, every data operation answers
/// "not ready". Every operation is bounded: at most `connect_timeout` to get a
/// connection, at most `query_timeout` for the database to answer.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    /// Reads, pipelined on one connection shared by this pool's users.
    reader: Arc<Reader>,
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    /// The status of every pool made for this database that still exists
    /// (one per HTTP worker thread), for [`Database::pool_status`].
    pools: Mutex<Vec<PoolProbe>>,
    migrated: AtomicBool,
    connect_timeout: Duration,
    query_timeout: Duration,
}

/// What one batch of Kafka records writes, besides its offsets.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchWrite<'a> {
    /// One operation per user (see [`domain::fold_changes`]).
    pub folded: &'a [(Uuid, Folded)],
    /// The batch's dead letters of known users, to mark with their users'
    /// state once the batch is applied.
    pub letters: &'a [LetterMark],
    /// The original places of the replayed records it holds: if one's user
    /// changed since it was dead-lettered, the batch is refused whole.
    pub replays: &'a [RecordPlace],
    /// The replays that are their user's last record in the batch: the
    /// user's later letters move with them.
    pub follow: &'a [RecordPlace],
    /// One statement per user, in the batch's order, instead of one for all:
    /// for a batch the database refuses whole although no record of it is
    /// refused alone (a non-deferrable UNIQUE checked row by row inside one
    /// multi-row statement), so that PostgreSQL sees the changes in order.
    pub one_by_one: bool,
}

impl Database {
    /// Creates the pool (without connecting) and starts applying migrations in
    /// the background, retrying with capped backoff until the database answers.
    /// Fails only on a `DATABASE_URL` that can never work.
    pub fn start(settings: &DatabaseSettings, application_name: &str) -> Result<Self, UrlError> {
        let shared = Arc::new(Shared {
            connector: Connector::parse(&settings.url, application_name)?,
            pools: Mutex::default(),
            migrated: AtomicBool::new(false),
            connect_timeout: settings.connect_timeout,
            query_timeout: settings.query_timeout,
        });
        let database = Database {
            pool: pool(&shared, settings.pool_size),
            reader: Arc::default(),
            shared,
        };
        let shared = database.shared.clone();
        tokio::spawn(async move {
            let connector = shared.connector.clone();
            migrate::until_done(connector, shared.connect_timeout, &shared.migrated).await;
        });
        Ok(database)
    }

    /// The same database through a pool (and a read connection) of its own,
    /// sharing the migration state: each HTTP worker thread gets one, so that a
    /// connection's I/O is driven by the thread whose requests use it.
    pub fn with_own_pool(&self, size: usize) -> Self {
        Database {
            pool: pool(&self.shared, size),
            reader: Arc::default(),
            shared: self.shared.clone(),
        }
    }

    /// The connections of every pool of this database, added up.
    pub fn pool_status(&self) -> PoolStatus {
        let mut pools = self
            .shared
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut sum = PoolStatus::default();
        // A pool that is gone (a restarted worker's) is forgotten.
        pools.retain(|probe| match probe() {
            Some(status) => {
                sum.max_size += status.max_size;
                sum.size += status.size;
                sum.available += status.available;
                sum.waiting += status.waiting;
                true
            }
            None => false,
        });
        sum
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

    /// A user by id, on the read connection this pool's users share (see
    /// `read`): pipelined with the reads of concurrent requests.
    pub async fn get(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        if !self.is_migrated() {
            return Err(StoreError::NotReady);
        }
        let connection = self
            .reader
            .connection(&self.shared.connector, self.shared.connect_timeout)
            .await?;
        let read = connection.get(id);
        let result = self
            .bounded(async {
                read.await
                    .map_err(|error| StoreError::Unavailable(error.into()))
            })
            .await;
        if result.is_err() {
            self.reader.discard(&connection).await;
        }
        result
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
        let conn = self.checkout().await?;
        let result = self
            .bounded(merge_many::<User>(&conn, &[(id, fields)], Expect::Existing))
            .await;
        settle(conn, result)?.pop().ok_or(StoreError::Contention)
    }

    /// Merges one change under preconditions (`If-Match`, `If-None-Match`),
    /// checked by the statement that writes. Creates the user only when
    /// `may_create` (`POST /user`; `PATCH` never creates). Returns the stored
    /// user and whether it was created.
    pub async fn merge_if(
        &self,
        id: Uuid,
        fields: &UserFields,
        preconditions: &Preconditions,
        may_create: bool,
    ) -> Result<Outcome<(User, bool)>, StoreError> {
        let mut conn = self.checkout().await?;
        let result = self
            .bounded(merge_if(&mut conn, id, fields, preconditions, may_create))
            .await;
        settle(conn, result)
    }

    /// Deletes a user when the preconditions hold, checked by the statement
    /// that deletes.
    pub async fn delete_if(
        &self,
        id: Uuid,
        preconditions: &Preconditions,
    ) -> Result<Outcome<()>, StoreError> {
        let mut conn = self.checkout().await?;
        let result = self
            .bounded(conditions::delete_if(&mut conn, id, preconditions))
            .await;
        settle(conn, result)
    }

    /// [`Database::merge_if`] (creating) under an idempotency key: the first
    /// request with `key` applies the change and keeps `answer`'s rendering
    /// of it for `ttl`, in one transaction; a retry with the same body
    /// (`fingerprint`) gets that answer again, with nothing applied.
    pub async fn merge_once(
        &self,
        key: &str,
        fingerprint: &[u8],
        ttl: Duration,
        change: (Uuid, &UserFields, &Preconditions),
        answer: impl FnOnce(&Outcome<(User, bool)>) -> StoredAnswer + Send,
    ) -> Result<Keyed, StoreError> {
        let (id, fields, preconditions) = change;
        let mut conn = self.checkout().await?;
        let transaction = conn.transaction::<_, StoreError, _>(async |conn| {
            if !idempotency::lock(conn, key).await? {
                return Ok(Keyed::InFlight);
            }
            if let Some(kept) = idempotency::kept(conn, key, fingerprint).await? {
                return Ok(kept);
            }
            let outcome = merge_if(conn, id, fields, preconditions, true).await?;
            let answer = answer(&outcome);
            // A 2xx answer holds the stored user, written by this transaction.
            let holds = (200..300).contains(&answer.status).then_some(id);
            idempotency::keep(conn, key, fingerprint, &answer, holds, ttl).await?;
            Ok(Keyed::First(answer))
        });
        let result = self.bounded(transaction).await;
        settle(conn, result)
    }

    /// Deletes the idempotency keys that have expired, in batches of
    /// [`crate::PURGE_BATCH`] each bounded by the query timeout; returns how
    /// many. Stops at once when another replica is purging.
    pub async fn purge_expired_keys(&self) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let mut conn = self.checkout().await?;
            let result = self.bounded(idempotency::purge_expired(&mut conn)).await;
            let batch = settle(conn, result)?;
            purged += batch;
            if batch < idempotency::PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    /// Applies a batch of Kafka records, already folded to one operation per
    /// user (see [`domain::fold_changes`]), and advances the group's offsets of
    /// the partitions it covers, in one transaction: either all of it lands or
    /// none. [`StoreError::Fenced`] when a partition's offset moved meanwhile.
    /// [`StoreError::Superseded`], before anything is written, when replayed
    /// records it holds were superseded (see [`BatchWrite::replays`]).
    pub async fn apply_batch(
        &self,
        group: &str,
        advances: &[OffsetAdvance],
        write: &BatchWrite<'_>,
    ) -> Result<(), StoreError> {
        let BatchWrite {
            folded,
            letters,
            replays,
            follow,
            one_by_one,
        } = *write;
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
            // Sent together (pipelined: one round trip, not three), and run
            // by PostgreSQL in this order. The offsets' advance first: its
            // row locks order members racing for one partition, and a fenced
            // batch (found from its answer) is rolled back whole.
            let shared: &AsyncPgConnection = conn;
            // A replayed record's user is locked and checked first: one more
            // round trip, only for batches that hold replays.
            let superseded = replays::superseded(shared, replays).await?;
            if !superseded.is_empty() {
                return Err(StoreError::Superseded(superseded));
            }
            let advance = offsets::advance(shared, group, advances);
            let delete = async {
                if removed.is_empty() {
                    return Ok(0);
                }
                diesel::delete(user_info::table.filter(user_info::user_id.eq_any(&removed)))
                    .execute(&mut { shared })
                    .await
            };
            let merge = async {
                if !one_by_one {
                    merge_many::<WrittenId>(shared, &merged, Expect::New).await?;
                    return Ok(());
                }
                for user in &merged {
                    merge_many::<WrittenId>(shared, std::slice::from_ref(user), Expect::New)
                        .await?;
                }
                Ok::<_, StoreError>(())
            };
            let (advanced, deleted, merged) = tokio::join!(advance, delete, merge);
            advanced?;
            deleted?;
            merged?;
            // After every change: the marks read the users' new state (only
            // batches with dead letters or replays pay this round trip).
            let (marked, followed) = tokio::join!(
                replays::mark(shared, letters),
                replays::follow(shared, follow)
            );
            marked?;
            followed?;
            Ok(())
        });
        let result = self.bounded(transaction).await;
        // A fenced or superseded batch leaves a healthy connection behind.
        if matches!(
            result,
            Err(StoreError::Fenced { .. } | StoreError::Superseded(_))
        ) {
            return result;
        }
        settle(conn, result)
    }

    /// The records among `users` that the database itself refuses (SQLSTATE
    /// classes 22, 23), by a dry run that is rolled back: see `isolate`.
    /// [`StoreError::Unavailable`] when the database fails otherwise.
    pub async fn find_refused(
        &self,
        users: &[UserRecords<'_>],
    ) -> Result<Vec<Refusal>, StoreError> {
        if !self.is_migrated() {
            return Err(StoreError::NotReady);
        }
        let connect = tokio::time::timeout(
            self.shared.connect_timeout,
            self.shared.connector.connect_raw(),
        );
        let mut client = connect
            .await
            .map_err(|_| {
                StoreError::Unavailable("no connection within the connect timeout".into())
            })?
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        self.bounded(isolate::find_refused(&mut client, users))
            .await
    }

    /// The group's stored offsets of `topic`'s partitions (those it has a row
    /// for): where a member that is assigned them starts.
    pub async fn stored_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<HashMap<i32, i64>, StoreError> {
        let mut conn = self.checkout().await?;
        let result = self.bounded(offsets::stored(&mut conn, group, topic)).await;
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
}

/// A pool that does not connect yet, so the service starts (and answers
/// `/health`) while the database is still down. Connections are not pinged on
/// checkout (a round trip per request); one whose work failed is discarded by
/// [`settle`] instead, so a database restart still heals by itself.
fn pool(shared: &Shared, size: usize) -> PgPool {
    let connector = shared.connector.clone();
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |_url| {
        let connector = connector.clone();
        Box::pin(async move { connector.connect().await })
    });
    let manager = AsyncDieselConnectionManager::new_with_config("", config);
    #[allow(clippy::expect_used)] // only fails with a runtime-dependent timeout set
    let pool = Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .expect("a pool without timeouts always builds");
    let weak = pool.weak();
    shared
        .pools
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Box::new(move || {
            let status = weak.upgrade()?.status();
            Some(PoolStatus {
                max_size: status.max_size,
                size: status.size,
                available: status.available,
                waiting: status.waiting,
            })
        }));
    pool
}

/// A pool's status while it exists, without keeping it alive.
type PoolProbe = Box<dyn Fn() -> Option<PoolStatus> + Send + Sync>;

/// The connections of a [`Database`]'s pools: at most `max_size`, `size` open,
/// `available` of them idle, `waiting` operations waiting for one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
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
