DROP INDEX idempotency_keys_user_id;
ALTER TABLE idempotency_keys DROP COLUMN user_id;
