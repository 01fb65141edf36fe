//! Stored progress for many users before a load test, in either layout, so a run can start from
//! a database of realistic size (`loadgen --seed-users`). Deterministic per user: the same users
//! get the same progress on every run.
//!
//! - per-goal: 20 goals per user (spread over the configuration), each with progress between 1
//!   and its target: `in_progress`, or `completed` where it reached the target;
//! - per-stat: 2 sources per user, each with a latest value below 100, a total of 1–10 and one
//!   day; every goal on those sources derives its progress from them.

use sqlx::PgPool;

use super::StoreKind;
use crate::challenges::ChallengeConfig;

/// Goals with progress per user (per-goal).
pub const GOALS_PER_USER: i32 = 20;
/// Sources with a row per user (per-stat).
pub const SOURCES_PER_USER: i32 = 2;

const PER_GOAL_SQL: &str = "INSERT INTO user_goal_progress \
        (user_id, goal_id, challenge_id, namespace, progress, status, completed_at) \
     SELECT u.id, g.goal_id, g.challenge_id, $5, p.progress, \
            CASE WHEN p.progress >= g.target THEN 'completed' ELSE 'in_progress' END, \
            CASE WHEN p.progress >= g.target THEN now() AT TIME ZONE 'utc' END \
     FROM unnest($1::varchar[]) WITH ORDINALITY AS u(id, n) \
     CROSS JOIN generate_series(0, $7 - 1) AS k \
     JOIN unnest($2::varchar[], $3::varchar[], $4::int4[]) WITH ORDINALITY AS g(goal_id, challenge_id, target, i) \
       ON g.i = 1 + (u.n * 7 + k * ($6 / $7)) % $6 \
     CROSS JOIN LATERAL (SELECT LEAST(1 + ((u.n * 31 + k) % g.target), g.target)::int4 AS progress) AS p \
     ON CONFLICT DO NOTHING";

const PER_STAT_SQL: &str = "INSERT INTO user_stat_progress \
        (user_id, stat_code, namespace, latest_value, max_value, total, day_count, last_day, first_event_at, updated_at) \
     SELECT u.id, s.code, $3, v.latest, v.latest, 1 + (u.n + k) % 10, 1, (now() AT TIME ZONE 'utc')::date, \
            now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc' \
     FROM unnest($1::varchar[]) WITH ORDINALITY AS u(id, n) \
     CROSS JOIN generate_series(0, $5 - 1) AS k \
     JOIN unnest($2::varchar[]) WITH ORDINALITY AS s(code, i) ON s.i = 1 + (u.n + k * 2) % $4 \
     CROSS JOIN LATERAL (SELECT CASE WHEN s.code = '' THEN NULL ELSE ((u.n * 13 + k) % 100)::int4 END AS latest) AS v \
     ON CONFLICT DO NOTHING";

/// Stores progress for `users` in the `kind` layout; returns the rows written.
pub async fn seed_users(
    pool: &PgPool,
    config: &ChallengeConfig,
    kind: StoreKind,
    users: &[String],
    namespace: &str,
) -> Result<u64, sqlx::Error> {
    let done = match kind {
        StoreKind::PerGoal => {
            let goals = config.goal_refs();
            let count = i32::try_from(goals.len()).unwrap_or(i32::MAX);
            sqlx::query(PER_GOAL_SQL)
                .bind(users)
                .bind(goals.iter().map(|g| g.goal.id.as_str()).collect::<Vec<_>>())
                .bind(goals.iter().map(|g| g.goal.challenge_id.as_str()).collect::<Vec<_>>())
                .bind(goals.iter().map(|g| g.goal.target_value).collect::<Vec<_>>())
                .bind(namespace)
                .bind(count)
                .bind(GOALS_PER_USER.min(count))
                .execute(pool)
                .await?
        }
        StoreKind::PerStat => {
            let sources = config.sources();
            let count = i32::try_from(sources.len()).unwrap_or(i32::MAX);
            sqlx::query(PER_STAT_SQL)
                .bind(users)
                .bind(sources.iter().map(|s| &*s.stat_code).collect::<Vec<_>>())
                .bind(namespace)
                .bind(count)
                .bind(SOURCES_PER_USER.min(count))
                .execute(pool)
                .await?
        }
    };
    for table in ["user_goal_progress", "user_stat_progress"] {
        sqlx::query(&format!("ANALYZE {table}")).execute(pool).await?;
    }
    Ok(done.rows_affected())
}
