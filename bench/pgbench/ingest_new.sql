-- The consumer's transaction for a batch of :batch new users (apply_batch in
-- crates/user-store/src/database.rs): the advance of its partitions' offsets,
-- then the INSERT of the batch, run with `-M prepared`. The batch's columns are
-- made by PostgreSQL here rather than sent by a client: this is cheaper than
-- the consumer's transaction, never dearer.
\set next random(1, 1000000000)
BEGIN;
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
SELECT 'bench', a.topic, a.partition, a.next
FROM unnest(ARRAY['bench', 'bench', 'bench'], ARRAY[0, 1, 2], ARRAY[:next, :next, :next]::bigint[])
     AS a(topic, partition, next)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = EXCLUDED.next_offset, updated_at = now()
WHERE o.next_offset IS NOT DISTINCT FROM (
    SELECT o.next_offset FROM unnest(ARRAY['bench', 'bench', 'bench'], ARRAY[0, 1, 2]) AS e(topic, partition)
    WHERE e.topic = o.topic AND e.partition = o.partition);
INSERT INTO user_info (user_id, first_name, last_name, email, phone_number)
SELECT c.user_id, COALESCE(c.first_name, ''), COALESCE(c.last_name, ''),
       COALESCE(c.email, ''), COALESCE(c.phone_number, '')
FROM unnest(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, :batch)),
            ARRAY(SELECT 'First' || g FROM generate_series(1, :batch) AS g),
            ARRAY(SELECT 'Bench' FROM generate_series(1, :batch)),
            ARRAY(SELECT 'user' || g || '@example.com' FROM generate_series(1, :batch) AS g),
            ARRAY(SELECT '+1 555 0100' FROM generate_series(1, :batch)))
     AS c(user_id, first_name, last_name, email, phone_number)
ON CONFLICT (user_id) DO NOTHING
RETURNING user_id;
COMMIT;
