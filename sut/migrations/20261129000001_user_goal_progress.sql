-- Per user and goal: progress and status. Rows are created by the event handler's upsert.
-- Timestamps are UTC, stored without a zone.
CREATE TABLE user_goal_progress (
    user_id      varchar(100) NOT NULL,
    goal_id      varchar(100) NOT NULL,
    challenge_id varchar(100) NOT NULL,
    namespace    varchar(100) NOT NULL,
    progress     integer      NOT NULL DEFAULT 0,
    status       varchar(20)  NOT NULL DEFAULT 'not_started',
    completed_at timestamp    NULL,
    claimed_at   timestamp    NULL,
    created_at   timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    updated_at   timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (user_id, goal_id),
    CONSTRAINT check_status CHECK (status IN ('not_started', 'in_progress', 'completed', 'claimed')),
    CONSTRAINT check_progress_non_negative CHECK (progress >= 0),
    CONSTRAINT check_claimed_implies_completed CHECK (claimed_at IS NULL OR completed_at IS NOT NULL)
);

CREATE INDEX idx_user_goal_progress_user_challenge ON user_goal_progress (user_id, challenge_id);
