-- 500 distinct new rows per transaction into a scratch copy of user_info: the
-- database's own ceiling for batched ingest, in rows/s = tps * 500.
INSERT INTO bench_batch (user_id, first_name, last_name, email, phone_number)
SELECT gen_random_uuid(), 'First' || g, 'Bench', 'user' || g || '@example.com', '+1 555 0100'
FROM generate_series(1, 500) AS g
ON CONFLICT (user_id) DO UPDATE
SET first_name = excluded.first_name, updated_at = now(), version = bench_batch.version + 1;
