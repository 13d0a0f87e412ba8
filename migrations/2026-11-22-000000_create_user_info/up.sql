-- One row per user. Blank text is stored as '' (never NULL), so clients always
-- get strings back; timestamps are maintained by the application (updated_at
-- moves on every change).
CREATE TABLE user_info (
    user_id      uuid        PRIMARY KEY,
    first_name   text        NOT NULL DEFAULT '',
    last_name    text        NOT NULL DEFAULT '',
    email        text        NOT NULL DEFAULT '',
    phone_number text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
