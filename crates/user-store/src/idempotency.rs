//! Idempotency keys (the IETF httpapi `Idempotency-Key` draft): the first
//! answer to a keyed request is kept, and a retry gets it again instead of a
//! second effect.
//!
//! One transaction does it all: it takes a transaction-scoped advisory lock on
//! the key (taken by another transaction = that request is still in flight),
//! looks for the key's live answer (replayed, or refused when the body differs),
//! else applies the change and records its answer. The change and its answer
//! commit together or not at all: a request that failed half-way leaves no key
//! behind, and its retry starts afresh. Expired rows count as absent (and are
//! replaced); [`purge_expired`] removes them. An answer that holds a user is
//! deleted with that user (a statement-level trigger on `user_info`): no personal data
//! outlives its erasure in a kept answer.

use std::time::Duration;

use diesel::QueryResult;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Double, Nullable, SmallInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// An answer as it was given, to give again.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoredAnswer {
    #[diesel(sql_type = SmallInt, column_name = status)]
    pub status: i16,
    #[diesel(sql_type = Text, column_name = response_body)]
    pub body: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub etag: Option<String>,
}

/// What became of a keyed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    /// The first time: the change was applied and this is its answer, now kept.
    First(StoredAnswer),
    /// A retry: the first answer, nothing applied.
    Replay(StoredAnswer),
    /// The first request with this key has not finished yet.
    InFlight,
    /// The key was first used with another body.
    OtherBody,
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Kept {
    #[diesel(sql_type = Bytea)]
    fingerprint: Vec<u8>,
    #[diesel(embed)]
    answer: StoredAnswer,
}

/// Takes the key's lock for the rest of the transaction; `false` when another
/// transaction holds it.
pub(crate) async fn lock(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<bool> {
    diesel::sql_query("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked")
        .bind::<Text, _>(key)
        .get_result::<Claimed>(conn)
        .await
        .map(|claimed| claimed.locked)
}

/// The key's live answer, if any, compared with this request's body.
pub(crate) async fn kept(
    conn: &mut AsyncPgConnection,
    key: &str,
    fingerprint: &[u8],
) -> QueryResult<Option<Keyed>> {
    let kept = diesel::sql_query(
        "SELECT fingerprint, status, response_body, etag FROM idempotency_keys \
         WHERE key = $1 AND expires_at > now()",
    )
    .bind::<Text, _>(key)
    .get_result::<Kept>(conn)
    .await
    .optional()?;
    Ok(kept.map(|kept| {
        if kept.fingerprint == fingerprint {
            Keyed::Replay(kept.answer)
        } else {
            Keyed::OtherBody
        }
    }))
}

/// Records the first answer for `ttl` (replacing an expired row of the key).
/// `user`: the user the answer holds, whose deletion deletes the answer.
pub(crate) async fn keep(
    conn: &mut AsyncPgConnection,
    key: &str,
    fingerprint: &[u8],
    answer: &StoredAnswer,
    user: Option<Uuid>,
    ttl: Duration,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO idempotency_keys \
             (key, fingerprint, status, response_body, etag, user_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 second') \
         ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
             status = EXCLUDED.status, response_body = EXCLUDED.response_body, \
             etag = EXCLUDED.etag, user_id = EXCLUDED.user_id, created_at = now(), \
             expires_at = EXCLUDED.expires_at",
    )
    .bind::<Text, _>(key)
    .bind::<Bytea, _>(fingerprint)
    .bind::<SmallInt, _>(answer.status)
    .bind::<Text, _>(&answer.body)
    .bind::<Nullable<Text>, _>(answer.etag.as_deref())
    .bind::<Nullable<diesel::sql_types::Uuid>, _>(user)
    .bind::<Double, _>(ttl.as_secs_f64())
    .execute(conn)
    .await
    .map(|_| ())
}

/// Expired keys deleted by one purge statement at most: a backlog (a replica
/// that was down, a burst of keys) is worked off in statements each well within
/// the query timeout, never one that times out again and again.
pub const PURGE_BATCH: usize = 1000;

/// Deletes up to [`PURGE_BATCH`] expired keys, oldest first; returns how many.
/// Nothing when another replica is purging (a transaction-scoped advisory lock:
/// one replica at a time, never two contending for the same rows).
pub(crate) async fn purge_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "WITH turn AS (SELECT pg_try_advisory_xact_lock(hashtextextended('idempotency_keys purge', 0)) AS held) \
         DELETE FROM idempotency_keys WHERE (SELECT held FROM turn) AND key IN ( \
             SELECT key FROM idempotency_keys WHERE expires_at <= now() \
             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<diesel::sql_types::BigInt, _>(PURGE_BATCH as i64)
    .execute(conn)
    .await
}
