-- The consumer's transaction: the 500-row batch of batch_upsert.sql plus the
-- advance of the group's stored offset of each of the topic's three partitions
-- (the statement of crates/user-store/src/offsets.rs), committed together.
-- Beside batch_upsert.sql it measures what keeping offsets in PostgreSQL costs.
\set next random(1, 1000000000)
BEGIN;
INSERT INTO bench_batch (user_id, first_name, last_name, email, phone_number)
SELECT gen_random_uuid(), 'First' || g, 'Bench', 'user' || g || '@example.com', '+1 555 0100'
FROM generate_series(1, 500) AS g
ON CONFLICT (user_id) DO UPDATE
SET first_name = excluded.first_name, updated_at = now();
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
VALUES ('bench', 'bench_users', 0, :next)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now() WHERE o.next_offset <> EXCLUDED.next_offset;
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
VALUES ('bench', 'bench_users', 1, :next)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now() WHERE o.next_offset <> EXCLUDED.next_offset;
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
VALUES ('bench', 'bench_users', 2, :next)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now() WHERE o.next_offset <> EXCLUDED.next_offset;
COMMIT;
