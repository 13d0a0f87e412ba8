-- POST /user's statement for an existing user without preconditions (the
-- ConditionalUpdate of crates/user-store/src/merge.rs, its arrays NULL), with the
-- two fields bench/post_user.lua changes, run with `-M prepared` like the service's.
\set n random(1, :users)
\set v random(1, 1000000)
\set p random(0, 9999)
UPDATE user_info AS u SET
    first_name = COALESCE(c.first_name, u.first_name),
    last_name = COALESCE(c.last_name, u.last_name),
    email = COALESCE(c.email, u.email),
    phone_number = COALESCE(c.phone_number, u.phone_number),
    updated_at = now(),
    version = u.version + 1
FROM (VALUES (('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))::uuid,
              'Name' || :v, NULL::text, NULL::text, '+1 555 ' || lpad(:p::text, 4, '0')))
     AS c(user_id, first_name, last_name, email, phone_number)
WHERE u.user_id = c.user_id
  AND u.version = ANY(COALESCE(NULL::bigint[], ARRAY[u.version]))
  AND u.version <> ALL(COALESCE(NULL::bigint[], '{}'::bigint[]))
RETURNING u.*;
