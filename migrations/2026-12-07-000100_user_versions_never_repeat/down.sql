DROP TRIGGER user_info_remember_deletion ON user_info;
DROP FUNCTION user_info_remember_deletion();
DROP TABLE user_tombstones;
