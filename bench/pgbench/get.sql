-- GET /user's statement (crates/user-store/src/read.rs), run with `-M prepared`
-- like the service's; :users seeded ids as bench/run.sh makes them.
\set n random(1, :users)
SELECT user_id, first_name, last_name, email, phone_number, created_at, updated_at, version
FROM user_info
WHERE user_id = ('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid;
