-- The single-row upsert POST /user performs, as one statement per transaction.
\set n random(1, 10000)
INSERT INTO user_info (user_id, first_name, phone_number)
VALUES (('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid, 'Name' || :n, '+1 555 0100')
ON CONFLICT (user_id) DO UPDATE
SET first_name = excluded.first_name, phone_number = excluded.phone_number, updated_at = now(),
    version = user_info.version + 1;
