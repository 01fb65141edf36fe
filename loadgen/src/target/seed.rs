//! Progress stored before the load, in the challenge service's tables: a share of every user's
//! goals completed (so claims have something to claim), one claimable goal for a stampede, or
//! every user's progress in the SUT's own layout (`--seed-users`).

use std::path::Path;

use tokio::time::Instant;

use super::FixtureError;
use super::fixtures::{Claimable, load_challenges};

/// Stores a share of every user's goals as completed (goals without prerequisites), in one
/// statement, so claims have something to claim.
pub async fn completed_fraction(
    database_url: &str,
    challenges: &Path,
    users: &[String],
    namespace: &str,
    fraction: f64,
) -> Result<(), FixtureError> {
    let config = load_challenges(challenges)?;
    let goals: Vec<&sut::challenges::Goal> =
        config.challenges().iter().flat_map(|c| &c.goals).filter(|g| g.prerequisites.is_empty()).collect();
    let pool = sqlx::PgPool::connect(database_url).await.map_err(FixtureError::from)?;
    let started = Instant::now();
    let rows = sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at) \
         SELECT u.id, g.goal_id, g.challenge_id, $5, g.target, 'completed', now() AT TIME ZONE 'utc' \
         FROM unnest($1::varchar[]) AS u(id) \
         CROSS JOIN unnest($2::varchar[], $3::varchar[], $4::int4[]) AS g(goal_id, challenge_id, target) \
         WHERE random() < $6 ON CONFLICT DO NOTHING",
    )
    .bind(users)
    .bind(goals.iter().map(|g| g.id.clone()).collect::<Vec<_>>())
    .bind(goals.iter().map(|g| g.challenge_id.clone()).collect::<Vec<_>>())
    .bind(goals.iter().map(|g| g.target_value).collect::<Vec<_>>())
    .bind(namespace)
    .bind(fraction)
    .execute(&pool)
    .await
    .map_err(FixtureError::from)?;
    sqlx::query("ANALYZE user_goal_progress").execute(&pool).await.map_err(FixtureError::from)?;
    pool.close().await;
    eprintln!("gauntlet: seeded {} completed goals in {:.1}s", rows.rows_affected(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Stores `seed.claimable`'s goal as completed for its user (prerequisites too, so it can be
/// claimed).
pub async fn claimable(
    database_url: &str,
    challenges: &Path,
    claimable: &Claimable,
    namespace: &str,
) -> Result<(), FixtureError> {
    let config = load_challenges(challenges)?;
    let goal = config.goal(&claimable.goal).ok_or_else(|| {
        FixtureError::Fixture(format!("seed.claimable.goal '{}' is not a configured goal", claimable.goal))
    })?;
    let goals: Vec<&sut::challenges::Goal> =
        std::iter::once(goal).chain(goal.prerequisites.iter().filter_map(|p| config.goal(p))).collect();
    let pool = sqlx::PgPool::connect(database_url).await.map_err(FixtureError::from)?;
    for goal in goals {
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at) \
             VALUES ($1, $2, $3, $4, $5, 'completed', now() AT TIME ZONE 'utc') \
             ON CONFLICT (user_id, goal_id) DO UPDATE SET status = 'completed', progress = EXCLUDED.progress, \
             completed_at = EXCLUDED.completed_at, claimed_at = NULL",
        )
        .bind(&claimable.user)
        .bind(&goal.id)
        .bind(&goal.challenge_id)
        .bind(namespace)
        .bind(goal.target_value)
        .execute(&pool)
        .await
        .map_err(FixtureError::from)?;
    }
    pool.close().await;
    Ok(())
}

/// Stores progress for every user in the SUT's layout before the load (`--seed-users`).
pub async fn users(
    database_url: &str,
    challenges: &Path,
    users: &[String],
    namespace: &str,
    store: sut::events::store::StoreKind,
) -> Result<(), FixtureError> {
    let config = load_challenges(challenges)?;
    let pool = sqlx::PgPool::connect(database_url).await.map_err(FixtureError::from)?;
    let started = Instant::now();
    let rows = sut::events::store::seed::seed_users(&pool, std::sync::Arc::new(config), store, users, namespace)
        .await
        .map_err(|e| FixtureError::Fixture(format!("seeding {} users: {e}", users.len())))?;
    pool.close().await;
    eprintln!(
        "gauntlet: seeded {} users ({rows} {store} rows) in {:.1}s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
