-- The per-stat layout: one row per (user, source) from which every goal on the source derives
-- its progress (sut/src/events/derive.rs). stat_code '' holds login events. A goal gets its
-- user_goal_progress row once it completes; from then on only a claim writes that row.
CREATE TABLE user_stat_progress (
    user_id        varchar(100) NOT NULL,
    stat_code      varchar(100) NOT NULL,
    namespace      varchar(100) NOT NULL,
    latest_value   integer      NULL,
    max_value      integer      NULL,
    total          bigint       NOT NULL DEFAULT 0,
    day_count      integer      NOT NULL DEFAULT 0,
    last_day       date         NULL,
    first_event_at timestamp    NOT NULL,
    updated_at     timestamp    NOT NULL,
    PRIMARY KEY (user_id, stat_code),
    CONSTRAINT check_total_non_negative CHECK (total >= 0),
    CONSTRAINT check_day_count_non_negative CHECK (day_count >= 0)
);

-- Exactly-once flushes (both layouts): a batch's id is inserted in the batch's own transaction.
CREATE TABLE applied_batches (
    batch_id   bigint    PRIMARY KEY,
    applied_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX idx_applied_batches_applied_at ON applied_batches (applied_at);
