-- Where each dead letter stands in its user's history, so that replaying it
-- never undoes a later change (`replay-dlq`). Written by the consumer in the
-- transaction of the batch that dead-letters the record: the user's version
-- once that batch is applied (0 when the user never existed; a deleted user's
-- is its tombstone's, so versions never repeat) and whether the batch applied
-- a later record of the same user after it. A replayed record whose user is no
-- longer at that point was superseded and is skipped. No personal data: the
-- record's place, the user's id and version. Rows older than 30 days (twice the
-- dead-letter topics' retention) are deleted by the consumer as it adds new ones.
CREATE TABLE dead_letter_marks (
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    user_id          uuid        NOT NULL,
    user_version     bigint      NOT NULL,
    user_existed     boolean     NOT NULL,
    superseded       boolean     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);

CREATE INDEX dead_letter_marks_created_at ON dead_letter_marks (created_at);
CREATE INDEX dead_letter_marks_user_id ON dead_letter_marks (user_id);
