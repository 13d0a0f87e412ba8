-- Every user's version: 1 when created, +1 on every change, moved by the same
-- statement as the change (HTTP or Kafka). Answered as the strong ETag "<version>"
-- and checked by If-Match / If-None-Match in the statement that writes.
ALTER TABLE user_info ADD COLUMN version bigint NOT NULL DEFAULT 1;
