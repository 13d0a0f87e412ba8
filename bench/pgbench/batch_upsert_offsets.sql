-- The consumer's transaction: the 500-row batch of batch_upsert.sql plus the
-- advance of the group's stored offsets of the topic's three partitions (one
-- statement of the shape of crates/user-store/src/offsets.rs), committed together.
-- Beside batch_upsert.sql it measures what keeping offsets in PostgreSQL costs.
\set next random(1, 1000000000)
BEGIN;
INSERT INTO bench_batch (user_id, first_name, last_name, email, phone_number)
SELECT gen_random_uuid(), 'First' || g, 'Bench', 'user' || g || '@example.com', '+1 555 0100'
FROM generate_series(1, 500) AS g
ON CONFLICT (user_id) DO UPDATE
SET first_name = excluded.first_name, updated_at = now();
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
SELECT 'bench', a.topic, a.partition, a.next
FROM unnest(ARRAY['bench_users', 'bench_users', 'bench_users'], ARRAY[0, 1, 2],
            ARRAY[:next, :next, :next]::bigint[]) AS a(topic, partition, next)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now()
WHERE o.next_offset IS NOT DISTINCT FROM (
    SELECT o.next_offset
    FROM unnest(ARRAY['bench_users', 'bench_users', 'bench_users'], ARRAY[0, 1, 2]) AS e(topic, partition)
    WHERE e.topic = o.topic AND e.partition = o.partition);
COMMIT;
