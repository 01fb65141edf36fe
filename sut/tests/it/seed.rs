//! Seeding many users' progress before a load (`loadgen --seed-users`), in either layout.

use std::collections::HashSet;

use sqlx::PgPool;
use sut::events::store::seed::{GOALS_PER_USER, seed_users};
use sut::events::store::{Store, StoreKind};

use crate::helpers::{NAMESPACE, fresh_database, reference_config};

#[tokio::test]
async fn every_seeded_user_has_progress_in_either_layout_and_per_stat_completions_have_their_rows() {
    for kind in [StoreKind::PerGoal, StoreKind::PerStat] {
        let database = fresh_database().await;
        let pool = PgPool::connect(&database).await.unwrap();
        sut::db::MIGRATOR.run(&pool).await.unwrap();
        let config = reference_config();
        let users: Vec<String> = (1..=300).map(|i| format!("user-{i:06}")).collect();
        let written = seed_users(&pool, config.clone(), kind, &users, NAMESPACE).await.expect("seeds");
        assert!(written >= 300, "{kind}: {written} rows");
        let store = Store::new(kind, pool.clone(), config.clone());
        for user in &users {
            let progress = store.user_progress(user).await.unwrap();
            let with_progress: Vec<u32> = config
                .goal_refs()
                .iter()
                .map(|g| g.index)
                .filter(|i| progress.get(*i).is_some_and(|g| g.progress > 0))
                .collect();
            assert!(with_progress.len() >= GOALS_PER_USER as usize, "{kind} {user}: {} goals", with_progress.len());
            if kind == StoreKind::PerStat {
                let rows: HashSet<String> =
                    sqlx::query_scalar("SELECT goal_id FROM user_goal_progress WHERE user_id = $1")
                        .bind(user)
                        .fetch_all(&pool)
                        .await
                        .unwrap()
                        .into_iter()
                        .collect();
                for goal in config.goal_refs() {
                    if progress.status(goal.index) == sut::db::Status::Completed {
                        assert!(rows.contains(&goal.goal.id), "{user}: {} completed without its row", goal.goal.id);
                    }
                }
            }
        }
    }
}
