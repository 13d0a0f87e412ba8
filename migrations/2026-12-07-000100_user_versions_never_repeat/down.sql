DROP TRIGGER user_info_remember_deletions ON user_info;
DROP FUNCTION user_info_remember_deletions();
DROP TABLE user_tombstones;
