ALTER TABLE user_info DROP COLUMN version;
