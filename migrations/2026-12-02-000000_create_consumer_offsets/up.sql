-- Where each consumer group is in each partition: the offset of the next record
-- to apply. Advanced in the same transaction as the rows the records changed,
-- and only from the value the batch started from, so a member that lost its
-- partition (a zombie) can never apply a batch over a newer one.
CREATE TABLE consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
