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
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
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

/// Inserts each partition's row, or moves it from its `expected` value; a row
/// that is elsewhere (or exists while `expected` is NULL) is left alone - and
/// then fewer rows than partitions are written: the batch is fenced. One
/// statement for all the batch's partitions: one round trip, not one each.
/// Runs inside the caller's transaction; [`StoreError::Fenced`] (and the caller
/// rolls back) when any partition has moved.
pub(crate) async fn advance(
    mut conn: &AsyncPgConnection,
    group: &str,
    advances: &[OffsetAdvance],
) -> Result<(), StoreError> {
    if advances.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = advances.iter().map(|a| a.topic.as_str()).collect();
    let partitions: Vec<i32> = advances.iter().map(|a| a.partition).collect();
    let nexts: Vec<i64> = advances.iter().map(|a| a.next).collect();
    let expected: Vec<Option<i64>> = advances.iter().map(|a| a.expected).collect();
    let moved = Advance {
        group,
        topics: &topics,
        partitions: &partitions,
        nexts: &nexts,
        expected: &expected,
    }
    .execute(&mut conn)
    .await?;
    if moved < advances.len() {
        let partitions = advances
            .iter()
            .map(|a| format!("{}[{}]", a.topic, a.partition))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(StoreError::Fenced { partitions });
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

/// Moves each partition's offset to its `next` only from its `expected`: one
/// statement, which diesel prepares once per connection and reuses for every
/// batch (a `sql_query` it would parse and plan anew each time).
struct Advance<'a> {
    group: &'a str,
    topics: &'a [&'a str],
    partitions: &'a [i32],
    nexts: &'a [i64],
    expected: &'a [Option<i64>],
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Advance<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset) SELECT ",
        );
        out.push_bind_param::<Text, _>(&self.group)?;
        out.push_sql(", a.topic, a.partition, a.next FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.topics)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.partitions)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.nexts)?;
        out.push_sql(
            ") AS a(topic, partition, next) \
             ON CONFLICT (group_id, topic, partition) DO UPDATE \
             SET next_offset = EXCLUDED.next_offset, updated_at = now() \
             WHERE o.next_offset IS NOT DISTINCT FROM (SELECT e.expected FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.topics)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.partitions)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.expected)?;
        out.push_sql(
            ") AS e(topic, partition, expected) \
             WHERE e.topic = o.topic AND e.partition = o.partition)",
        );
        Ok(())
    }
}

prepared_by_sql_text!(Advance);
