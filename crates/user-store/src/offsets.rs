//! Where each consumer group is in each partition, kept beside the rows it
//! covers: a batch of Kafka records advances its partitions' offsets in the
//! same transaction as its changes, and only from the offsets it started from.
//!
//! That one check makes every record's effect land exactly once: a member that
//! lost its partition - a zombie whose batch was held up by a slow database,
//! a rebalance it missed - finds the offset moved by the new owner, and its
//! transaction rolls back instead of writing older values over newer ones.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::StoreError;
use crate::schema::consumer_offsets;

/// One partition's move in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAdvance {
    pub topic: String,
    pub partition: i32,
    /// The stored offset the batch starts from; `None` when the group has no
    /// row for the partition yet (it started from Kafka's committed offset).
    pub expected: Option<i64>,
    /// The offset after the batch's last record.
    pub next: i64,
}

/// Inserts the row, or moves it from `expected`: a row that is elsewhere (or
/// exists while `expected` is `None`) is left alone and the batch is fenced.
const ADVANCE_SQL: &str = "INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (group_id, topic, partition) DO UPDATE \
     SET next_offset = EXCLUDED.next_offset, updated_at = now() \
     WHERE o.next_offset = $5";

/// Advances every partition of a batch, inside the caller's transaction;
/// [`StoreError::Fenced`] (and the caller rolls back) when any has moved.
pub(crate) async fn advance(
    conn: &mut AsyncPgConnection,
    group: &str,
    advances: &[OffsetAdvance],
) -> Result<(), StoreError> {
    for advance in advances {
        let moved = diesel::sql_query(ADVANCE_SQL)
            .bind::<Text, _>(group)
            .bind::<Text, _>(&advance.topic)
            .bind::<Integer, _>(advance.partition)
            .bind::<BigInt, _>(advance.next)
            .bind::<Nullable<BigInt>, _>(advance.expected)
            .execute(conn)
            .await?;
        if moved == 0 {
            return Err(StoreError::Fenced {
                topic: advance.topic.clone(),
                partition: advance.partition,
            });
        }
    }
    Ok(())
}

/// The stored next offset of each of `topic`'s partitions the group has a row
/// for.
pub(crate) async fn stored(
    conn: &mut AsyncPgConnection,
    group: &str,
    topic: &str,
) -> QueryResult<HashMap<i32, i64>> {
    let rows: Vec<(i32, i64)> = consumer_offsets::table
        .filter(consumer_offsets::group_id.eq(group))
        .filter(consumer_offsets::topic.eq(topic))
        .select((consumer_offsets::partition, consumer_offsets::next_offset))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}
