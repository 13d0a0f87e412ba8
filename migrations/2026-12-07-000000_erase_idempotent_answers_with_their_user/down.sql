DROP TRIGGER idempotency_keys_erase_with_user ON user_info;
DROP FUNCTION idempotency_keys_erase_with_user();
DROP INDEX idempotency_keys_user_id;
ALTER TABLE idempotency_keys DROP COLUMN user_id;
