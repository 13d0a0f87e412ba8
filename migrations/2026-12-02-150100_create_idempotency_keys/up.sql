-- The first answer to each `POST /user` sent with an `Idempotency-Key`, kept until
-- `expires_at` (IDEMPOTENCY_KEY_TTL after it was given) so that a retry gets it
-- again instead of a second effect. Written in the same transaction as the user
-- it answers for; expired rows count as absent and are purged by the service.
CREATE TABLE idempotency_keys (
    key           text        PRIMARY KEY,
    -- SHA-256 of the request body, byte for byte: the same key with another
    -- body is refused (422).
    fingerprint   bytea       NOT NULL,
    status        smallint    NOT NULL,
    -- The answer's body (JSON text) and ETag, replayed as they were.
    response_body text        NOT NULL,
    etag          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
