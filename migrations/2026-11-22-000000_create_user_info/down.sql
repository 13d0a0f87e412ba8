DROP TABLE user_info;
