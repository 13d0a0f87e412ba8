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

CREATE FUNCTION user_info_remember_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_tombstones (user_id, version, deleted_at)
    VALUES (OLD.user_id, OLD.version, now())
    ON CONFLICT (user_id) DO UPDATE
        SET version = GREATEST(user_tombstones.version, EXCLUDED.version),
            deleted_at = EXCLUDED.deleted_at;
    RETURN OLD;
END;
$$;

CREATE TRIGGER user_info_remember_deletion
    AFTER DELETE ON user_info
    FOR EACH ROW EXECUTE FUNCTION user_info_remember_deletion();
