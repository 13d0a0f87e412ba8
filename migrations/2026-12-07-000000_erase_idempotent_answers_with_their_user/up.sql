-- An idempotent answer that holds a user (a 200 or 201 of `POST /user`: the whole
-- stored user, personal data included) goes with that user: deleting the user - by
-- `DELETE /user`, a Kafka tombstone, or by hand - deletes its kept answers, so a
-- retry of that POST answers as a new request would. Answers without a user (412,
-- 404: a version or a field name, no personal data) keep `user_id` NULL.
ALTER TABLE idempotency_keys ADD COLUMN user_id uuid;
CREATE INDEX idempotency_keys_user_id ON idempotency_keys (user_id);

-- One statement per deleting statement (a consumer's batch deletes hundreds of
-- users at once), not a query per row as a cascading foreign key would run.
CREATE FUNCTION idempotency_keys_erase_with_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM idempotency_keys WHERE user_id IN (SELECT user_id FROM gone);
    RETURN NULL;
END;
$$;

CREATE TRIGGER idempotency_keys_erase_with_user
    AFTER DELETE ON user_info
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION idempotency_keys_erase_with_user();

-- Answers kept before this migration: tied to their user when it still exists,
-- dropped when it is already gone (its data must not outlive it).
UPDATE idempotency_keys AS k SET user_id = u.user_id
    FROM user_info AS u
    WHERE k.status BETWEEN 200 AND 299
      AND u.user_id::text = (k.response_body::jsonb ->> 'user_id');
DELETE FROM idempotency_keys WHERE status BETWEEN 200 AND 299 AND user_id IS NULL;
