-- A user_id's versions never repeat: a user deleted (by `DELETE /user`, a Kafka
-- tombstone, a batch that deletes and re-creates it, or by hand) leaves a tombstone
-- with its last version, and a user created again under that id starts after it.
-- Otherwise a client holding the old ETag "1" would get a 304 for other data, and its
-- `If-Match: "1"` would overwrite a user it never saw. No personal data is kept: the
-- id, the version and when.
CREATE TABLE user_tombstones (
    user_id    uuid        PRIMARY KEY,
    version    bigint      NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- One statement per deleting statement (a consumer's batch deletes hundreds of
-- users at once), not one per row.
CREATE FUNCTION user_info_remember_deletions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_tombstones (user_id, version, deleted_at)
    SELECT user_id, version, now() FROM gone
    ON CONFLICT (user_id) DO UPDATE
        SET version = GREATEST(user_tombstones.version, EXCLUDED.version),
            deleted_at = EXCLUDED.deleted_at;
    RETURN NULL;
END;
$$;

CREATE TRIGGER user_info_remember_deletions
    AFTER DELETE ON user_info
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION user_info_remember_deletions();
