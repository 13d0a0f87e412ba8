//! Dead letters' places in their users' histories, so that a replayed letter
//! never undoes a change made after its record (`replay-dlq`).
//!
//! When a batch dead-letters a record of a known user, its transaction marks
//! the letter with the user's state once the batch is applied - the version
//! (a deleted user's from its tombstone: versions never repeat) and whether the
//! user exists - and whether the batch applied a later record of that user
//! after it (then the letter is superseded from the start). When the letter
//! comes back, replayed, the batch that holds it locks the user's row and
//! compares: a user no longer at the mark was changed since, over HTTP or
//! Kafka, and the replay is skipped. A replay that applies moves the marks of
//! the user's later letters (same partition, later offset, same mark) to the
//! new state, so several letters of one user replayed in order all apply.
//! A letter without a mark (written before marks existed, or without a user
//! id) is applied as it stands.

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::StoreError;

/// Where a record was in its topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordPlace {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A dead letter of a batch, to mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterMark {
    pub place: RecordPlace,
    pub user_id: Uuid,
    /// The batch applies a later record of the same user after it.
    pub superseded: bool,
}

/// How long marks are kept: twice the dead-letter topics' retention in
/// deploy/ (14 days).
const KEEP_DAYS: i32 = 30;

/// The places as three parallel arrays, to bind.
fn columns<'a>(
    places: impl Iterator<Item = &'a RecordPlace>,
) -> (Vec<&'a str>, Vec<i32>, Vec<i64>) {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for place in places {
        columns.0.push(place.topic.as_str());
        columns.1.push(place.partition);
        columns.2.push(place.offset);
    }
    columns
}

/// The user's state in SQL: its version, its tombstone's when deleted, 0 when
/// it never existed; and whether it exists. Needs [`JOIN_STATE`].
macro_rules! state {
    () => {
        "COALESCE(u.version, t.version, 0), u.user_id IS NOT NULL"
    };
}
const STATE: &str = state!();

/// Whether the mark `d` is superseded: the batch applied a later record of
/// its user, or the user is no longer in the state it marked. Needs
/// [`JOIN_STATE`].
const MOVED_ON: &str = concat!(
    "d.superseded OR (",
    state!(),
    ") IS DISTINCT FROM (d.user_version, d.user_existed)"
);

/// Joins `u` and `t` to the user of `d`, for [`STATE`].
const JOIN_STATE: &str = "LEFT JOIN user_info AS u ON u.user_id = d.user_id \
     LEFT JOIN user_tombstones AS t ON t.user_id = d.user_id";

/// Marks the batch's letters with their users' state after the batch; runs in
/// the batch's transaction, after its changes (pipelined in that order). Also
/// deletes marks past [`KEEP_DAYS`].
pub(crate) async fn mark(
    mut conn: &AsyncPgConnection,
    letters: &[LetterMark],
) -> Result<(), StoreError> {
    if letters.is_empty() {
        return Ok(());
    }
    let (topics, partitions, offsets) = columns(letters.iter().map(|l| &l.place));
    let users: Vec<Uuid> = letters.iter().map(|l| l.user_id).collect();
    let superseded: Vec<bool> = letters.iter().map(|l| l.superseded).collect();
    let sql = format!(
        "WITH expired AS (DELETE FROM dead_letter_marks \
             WHERE created_at < now() - make_interval(days => $6)) \
         INSERT INTO dead_letter_marks AS d (source_topic, source_partition, source_offset, \
             user_id, user_version, user_existed, superseded) \
         SELECT d.topic, d.part, d.at, d.user_id, {STATE}, d.superseded \
         FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::uuid[], $5::boolean[]) \
             AS d(topic, part, at, user_id, superseded) \
         {JOIN_STATE} \
         ON CONFLICT DO NOTHING"
    );
    diesel::sql_query(sql)
        .bind::<Array<Text>, _>(&topics)
        .bind::<Array<Integer>, _>(&partitions)
        .bind::<Array<BigInt>, _>(&offsets)
        .bind::<Array<SqlUuid>, _>(&users)
        .bind::<Array<Bool>, _>(&superseded)
        .bind::<Integer, _>(KEEP_DAYS)
        .execute(&mut conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Superseded {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Integer)]
    part: i32,
    #[diesel(sql_type = BigInt)]
    at: i64,
}

/// The replayed records among `replays` (their original places) that were
/// superseded: their user changed since they were dead-lettered. Locks the
/// users' rows first, so no write slips in before the batch commits. Runs in
/// the batch's transaction, before its changes.
pub(crate) async fn superseded(
    conn: &AsyncPgConnection,
    replays: &[RecordPlace],
) -> Result<Vec<RecordPlace>, StoreError> {
    if replays.is_empty() {
        return Ok(Vec::new());
    }
    let (topics, partitions, offsets) = columns(replays.iter());
    let marked = "SELECT d.* FROM unnest($1::text[], $2::integer[], $3::bigint[]) \
             AS r(topic, part, at) \
         JOIN dead_letter_marks AS d ON d.source_topic = r.topic \
             AND d.source_partition = r.part AND d.source_offset = r.at";
    let lock = format!(
        "SELECT 1 FROM user_info WHERE user_id IN (SELECT user_id FROM ({marked}) AS m) \
         ORDER BY user_id FOR UPDATE"
    );
    let check = format!(
        "SELECT d.source_topic AS topic, d.source_partition AS part, \
             d.source_offset AS at \
         FROM ({marked}) AS d {JOIN_STATE} \
         WHERE {MOVED_ON}"
    );
    let lock = diesel::sql_query(lock)
        .bind::<Array<Text>, _>(&topics)
        .bind::<Array<Integer>, _>(&partitions)
        .bind::<Array<BigInt>, _>(&offsets)
        .execute(&mut { conn });
    let check = diesel::sql_query(check)
        .bind::<Array<Text>, _>(&topics)
        .bind::<Array<Integer>, _>(&partitions)
        .bind::<Array<BigInt>, _>(&offsets)
        .load::<Superseded>(&mut { conn });
    let (locked, found) = tokio::join!(lock, check);
    locked?;
    Ok(found?
        .into_iter()
        .map(|row| RecordPlace {
            topic: row.topic,
            partition: row.part,
            offset: row.at,
        })
        .collect())
}

/// After replayed records applied: their users' later letters that stood at
/// the same point move to the users' new state. Runs in the batch's
/// transaction, after its changes.
pub(crate) async fn follow(
    mut conn: &AsyncPgConnection,
    applied: &[RecordPlace],
) -> Result<(), StoreError> {
    if applied.is_empty() {
        return Ok(());
    }
    let (topics, partitions, offsets) = columns(applied.iter());
    let sql = format!(
        "UPDATE dead_letter_marks AS later \
         SET (user_version, user_existed) = \
             (SELECT {STATE} FROM (SELECT later.user_id) AS d(user_id) {JOIN_STATE}) \
         FROM unnest($1::text[], $2::integer[], $3::bigint[]) AS r(topic, part, at) \
         JOIN dead_letter_marks AS replayed ON replayed.source_topic = r.topic \
             AND replayed.source_partition = r.part AND replayed.source_offset = r.at \
         WHERE later.user_id = replayed.user_id \
             AND later.source_topic = replayed.source_topic \
             AND later.source_partition = replayed.source_partition \
             AND later.source_offset > replayed.source_offset \
             AND NOT later.superseded \
             AND (later.user_version, later.user_existed) \
                 = (replayed.user_version, replayed.user_existed)"
    );
    diesel::sql_query(sql)
        .bind::<Array<Text>, _>(&topics)
        .bind::<Array<Integer>, _>(&partitions)
        .bind::<Array<BigInt>, _>(&offsets)
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// A read-only look at the marks, for `replay-dlq`'s report: which letters
/// would be skipped as superseded. The consumer checks again when the replay
/// arrives, under the user's row lock - a change in between is still caught.
pub struct MarksReader {
    client: tokio_postgres::Client,
    query_timeout: std::time::Duration,
}

impl MarksReader {
    /// One connection to the database, within `DATABASE_CONNECT_TIMEOUT`.
    pub async fn connect(settings: &crate::DatabaseSettings) -> Result<Self, StoreError> {
        let connector = crate::connect::Connector::parse(&settings.url, "replay-dlq")
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        let client = tokio::time::timeout(settings.connect_timeout, connector.connect_raw())
            .await
            .map_err(|_| {
                StoreError::Unavailable("no connection within the connect timeout".into())
            })?
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        Ok(Self {
            client,
            query_timeout: settings.query_timeout,
        })
    }

    /// Whether the letter of the record first at `place` is superseded: its
    /// user changed since (or the batch applied a later record of it). A
    /// letter without a mark is not.
    pub async fn is_superseded(&self, place: &RecordPlace) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT {MOVED_ON} FROM dead_letter_marks AS d {JOIN_STATE} \
             WHERE d.source_topic = $1 AND d.source_partition = $2 AND d.source_offset = $3"
        );
        let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&place.topic, &place.partition, &place.offset];
        let query = self.client.query_opt(&sql, &parameters);
        let row = tokio::time::timeout(self.query_timeout, query)
            .await
            .map_err(|_| StoreError::Unavailable("no answer within the query timeout".into()))?
            .map_err(|error| StoreError::Unavailable(error.into()))?;
        Ok(row.is_some_and(|row| row.get::<_, bool>(0)))
    }
}
