-- The consumer's transaction for a mixed batch of :batch records (the `mixed`
-- shape of crates/user-info-consumer/examples/produce.rs: 50 % new users, 40 %
-- updates of the 100,000 seeded users, 10 % tombstones of them), as apply_batch
-- runs it: the offsets, the DELETE of the tombstoned, the INSERT of every
-- upsert (the updates conflict and are left), then the UPDATE of those. Run
-- with `-M prepared`; the columns are made by PostgreSQL, not sent by a client.
\set next random(1, 1000000000)
\set seed random(0, 99999)
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
DELETE FROM user_info WHERE user_id = ANY(ARRAY(
    SELECT ('00000000-0000-4000-8000-' || lpad(((g * 7919 + :seed) % 100000 + 1)::text, 12, '0'))::uuid
    FROM generate_series(1, :batch / 10) AS g));
INSERT INTO user_info (user_id, first_name, last_name, email, phone_number)
SELECT c.user_id, COALESCE(c.first_name, ''), COALESCE(c.last_name, ''),
       COALESCE(c.email, ''), COALESCE(c.phone_number, '')
FROM unnest(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, :batch / 2)
                  UNION ALL
                  SELECT ('00000000-0000-4000-8000-' || lpad(((g * 104729 + :seed) % 100000 + 1)::text, 12, '0'))::uuid
                  FROM generate_series(1, :batch * 2 / 5) AS g),
            ARRAY(SELECT 'Changed' || g FROM generate_series(1, :batch * 9 / 10) AS g),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 9 / 10)),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 9 / 10)),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 9 / 10)))
     AS c(user_id, first_name, last_name, email, phone_number)
ON CONFLICT (user_id) DO NOTHING
RETURNING user_id;
UPDATE user_info AS u SET
    first_name = COALESCE(c.first_name, u.first_name),
    last_name = COALESCE(c.last_name, u.last_name),
    email = COALESCE(c.email, u.email),
    phone_number = COALESCE(c.phone_number, u.phone_number),
    updated_at = now(),
    version = u.version + 1
FROM unnest(ARRAY(SELECT ('00000000-0000-4000-8000-' || lpad(((g * 104729 + :seed) % 100000 + 1)::text, 12, '0'))::uuid
                  FROM generate_series(1, :batch * 2 / 5) AS g),
            ARRAY(SELECT 'Changed' || g FROM generate_series(1, :batch * 2 / 5) AS g),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 2 / 5)),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 2 / 5)),
            ARRAY(SELECT NULL::text FROM generate_series(1, :batch * 2 / 5)))
     AS c(user_id, first_name, last_name, email, phone_number)
WHERE u.user_id = c.user_id
RETURNING u.user_id;
COMMIT;
