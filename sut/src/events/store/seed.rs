//! Stored progress for many users before a load test, in either layout, so a run can start from
//! a database of realistic size (`loadgen --seed-users`). Deterministic per user: the same users
//! get the same progress on every run.
//!
//! - per-goal: 20 goals per user (spread over the configuration), each with progress between 1
//!   and its target: `in_progress`, or `completed` where it reached the target;
//! - per-stat: 2 sources per user, each with a latest value below 100, a total of 1–10 and one
//!   day, written through the layout's own flush path (so the goals these values complete get
//!   their rows, as after real events); every goal on those sources derives its progress from them.

use std::sync::Arc;

use sqlx::PgPool;

use super::{PerStatStore, ProgressStore, StoreError, StoreKind};
use crate::challenges::ChallengeConfig;
use crate::events::buffer::Entry;
use crate::events::update::StatDelta;

/// Rows written per transaction by the per-stat seed.
const CHUNK: usize = 5_000;

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

/// Stores progress for `users` in the `kind` layout; returns the rows written.
pub async fn seed_users(
    pool: &PgPool,
    config: Arc<ChallengeConfig>,
    kind: StoreKind,
    users: &[String],
    namespace: &str,
) -> Result<u64, StoreError> {
    let written = match kind {
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
                .rows_affected()
        }
        StoreKind::PerStat => seed_per_stat(pool, config, users, namespace).await?,
    };
    for table in ["user_goal_progress", "user_stat_progress"] {
        sqlx::query(&format!("ANALYZE {table}")).execute(pool).await?;
    }
    Ok(written)
}

async fn seed_per_stat(
    pool: &PgPool,
    config: Arc<ChallengeConfig>,
    users: &[String],
    namespace: &str,
) -> Result<u64, StoreError> {
    let sources = config.sources().len();
    if sources == 0 {
        return Ok(0);
    }
    let store = PerStatStore::new(pool.clone(), config.clone());
    let now = super::now();
    let namespace: Arc<str> = namespace.into();
    let mut entries = Vec::with_capacity(users.len() * SOURCES_PER_USER as usize);
    for (n, user) in users.iter().enumerate() {
        let user: Arc<str> = user.as_str().into();
        let mut keys: Vec<u32> = (0..SOURCES_PER_USER as usize)
            .map(|k| u32::try_from((n + 2 * k) % sources).expect("fewer than 4 billion sources"))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (k, key) in keys.into_iter().enumerate() {
            let login = config.sources()[key as usize].stat_code.is_empty();
            let value = (!login).then(|| i32::try_from((n * 13 + k) % 100).expect("below 100"));
            let update = StatDelta {
                latest: value,
                max: value,
                inc: i64::try_from(1 + (n + k) % 10).expect("below 11"),
                days: vec![now.date()],
            };
            entries.push(Entry {
                user_id: user.clone(),
                namespace: namespace.clone(),
                key,
                update,
                last_event_at: now,
            });
        }
    }
    for chunk in entries.chunks(CHUNK) {
        store.apply(rand::random(), chunk).await?;
    }
    Ok(entries.len() as u64)
}
