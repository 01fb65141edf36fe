//! Production's layout (SPEC §2): one `user_goal_progress` row per (user, goal), written by one
//! `MERGE` per batch. About 100 rows per stat event with the reference configuration, and the
//! `MERGE` waits on any row a claim holds locked while it grants the reward: the faithful
//! bottleneck the harness measures against [`per_stat`](super::per_stat).

use std::sync::Arc;

use chrono::NaiveDateTime;
use sqlx::PgPool;

use super::{Applied, GoalProgress, ProgressStore, StoreError, UserProgress, batch};
use crate::challenges::ChallengeConfig;
use crate::db::ProgressRow;
use crate::events::buffer::Entry;
use crate::events::update::{self, StatValues, Update};

/// The per-goal row layout in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PerGoalStore {
    pool: PgPool,
    config: Arc<ChallengeConfig>,
}

impl PerGoalStore {
    /// A store on `pool` for the goals of `config`.
    pub fn new(pool: PgPool, config: Arc<ChallengeConfig>) -> Self {
        Self { pool, config }
    }
}

/// One `MERGE` per batch: the batch travels as parallel arrays (10 parameters whatever its size),
/// and the semantics of [`Update`] are evaluated against each row's stored state.
///
/// `kind`: 0 absolute (`amount` = value, kept out when the row holds a later event), 1 increment (`amount` = delta), 2 daily, 3 daily
/// increment (`days` = comma-separated distinct days; counts those after the row's last update).
/// `started`: an absolute update saw a value above 0 (an `in_progress` row stays so anyway).
/// Claimed rows match but are not updated.
const MERGE_BATCH: &str = r"
MERGE INTO user_goal_progress AS t
USING (
    SELECT u.*,
           CASE u.kind WHEN 3 THEN string_to_array(u.days, ',')::date[] END AS day_list
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::int2[],
                $6::int8[], $7::bool[], $8::int4[], $9::text[], $10::timestamp[], $11::bool[])
         AS u(user_id, goal_id, challenge_id, namespace, kind, amount, reached, target, days, event_at, started)
) AS s
ON t.user_id = s.user_id AND t.goal_id = s.goal_id
WHEN MATCHED AND t.status <> 'claimed' THEN UPDATE SET
    progress = n.progress,
    status = CASE WHEN n.completed THEN 'completed'
                  WHEN n.progress > 0 OR s.started OR t.status = 'in_progress' THEN 'in_progress'
                  ELSE 'not_started' END,
    completed_at = COALESCE(t.completed_at, CASE WHEN n.completed THEN s.event_at END),
    updated_at = GREATEST(t.updated_at, s.event_at)
WHEN NOT MATCHED THEN INSERT
    (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, created_at, updated_at)
    VALUES (s.user_id, s.goal_id, s.challenge_id, s.namespace, LEAST(s.amount, 2147483647)::int4,
            CASE WHEN s.reached OR s.kind = 2 OR s.amount >= s.target THEN 'completed'
                 WHEN s.amount > 0 OR s.started THEN 'in_progress'
                 ELSE 'not_started' END,
            CASE WHEN s.reached OR s.kind = 2 OR s.amount >= s.target THEN s.event_at END,
            s.event_at, s.event_at)
";

/// The MERGE's `n.progress` / `n.completed`, spelled out (MERGE has no per-row variables).
static MERGE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(merge_sql);

/// The flush's MERGE of a coalesced batch (parameters: the column arrays of [`MERGE_BATCH`]);
/// the harness explains it too.
pub fn merge_statement() -> &'static str {
    MERGE_SQL.as_str()
}

fn merge_sql() -> String {
    let progress = "LEAST(CASE s.kind \
            WHEN 0 THEN CASE WHEN s.event_at >= t.updated_at THEN s.amount ELSE t.progress END \
            WHEN 1 THEN t.progress + s.amount \
            WHEN 2 THEN 1 \
            ELSE t.progress + (SELECT count(*) FROM unnest(s.day_list) AS d WHERE d > t.updated_at::date) \
        END, 2147483647)::int4";
    let completed = format!("(t.status = 'completed' OR s.reached OR s.kind = 2 OR {progress} >= s.target)");
    MERGE_BATCH.replace("n.progress", progress).replace("n.completed", &completed)
}

/// Column arrays for [`MERGE_BATCH`].
#[derive(Default)]
struct Columns {
    user_id: Vec<String>,
    goal_id: Vec<String>,
    challenge_id: Vec<String>,
    namespace: Vec<String>,
    kind: Vec<i16>,
    amount: Vec<i64>,
    reached: Vec<bool>,
    target: Vec<i32>,
    days: Vec<String>,
    event_at: Vec<NaiveDateTime>,
    started: Vec<bool>,
}

impl Columns {
    fn from_batch(config: &ChallengeConfig, batch: &[Entry<Update>]) -> Self {
        let mut c = Columns::default();
        for entry in batch {
            let goal = &config.goal_refs()[entry.key as usize].goal;
            let (kind, amount, reached, days, started) = match &entry.update {
                Update::Absolute { value, reached, started } => {
                    (0, i64::from(*value), *reached, String::new(), *started)
                }
                Update::Increment { delta } => (1, *delta, false, String::new(), false),
                Update::Daily => (2, 1, true, String::new(), false),
                Update::DailyIncrement { days } => {
                    let list: Vec<String> = days.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
                    (3, i64::try_from(days.len()).unwrap_or(i64::MAX), false, list.join(","), false)
                }
            };
            c.user_id.push(entry.user_id.to_string());
            c.goal_id.push(goal.id.clone());
            c.challenge_id.push(goal.challenge_id.clone());
            c.namespace.push(entry.namespace.to_string());
            c.kind.push(kind);
            c.amount.push(amount);
            c.reached.push(reached);
            c.target.push(goal.target_value);
            c.days.push(days);
            c.event_at.push(entry.last_event_at);
            c.started.push(started);
        }
        c
    }
}

/// A user's progress from their stored rows (rows of goals no longer configured are ignored).
pub fn progress_from_rows(config: &ChallengeConfig, rows: Vec<ProgressRow>) -> UserProgress {
    let mut progress = UserProgress::empty(config.goal_count());
    for ProgressRow { goal_id, progress: value, status, completed_at, claimed_at } in rows {
        if let Some(index) = config.goal_position(&goal_id) {
            progress.set(index, GoalProgress { progress: value, status, completed_at, claimed_at });
        }
    }
    progress
}

impl ProgressStore for PerGoalStore {
    type Update = Update;

    fn login_updates(&self, now: NaiveDateTime) -> Vec<(u32, Update)> {
        update::for_login(&self.config, now).into_iter().map(|(goal, u)| (goal.index, u)).collect()
    }

    fn stat_updates(&self, stat_code: &str, values: StatValues, now: NaiveDateTime) -> Vec<(u32, Update)> {
        update::for_stat(&self.config, stat_code, values, now).into_iter().map(|(goal, u)| (goal.index, u)).collect()
    }

    fn key_name(&self, key: u32) -> &str {
        self.config.goal_refs().get(key as usize).map_or("?", |g| g.goal.id.as_str())
    }

    async fn apply(&self, batch_id: i64, batch: &[Entry<Update>]) -> Result<Applied, StoreError> {
        if batch.is_empty() {
            return Ok(Applied::Written);
        }
        let c = Columns::from_batch(&self.config, batch);
        let Some(mut tx) = batch::begin(&self.pool, batch_id).await? else { return Ok(Applied::AlreadyApplied) };
        sqlx::query(MERGE_SQL.as_str())
            .bind(c.user_id)
            .bind(c.goal_id)
            .bind(c.challenge_id)
            .bind(c.namespace)
            .bind(c.kind)
            .bind(c.amount)
            .bind(c.reached)
            .bind(c.target)
            .bind(c.days)
            .bind(c.event_at)
            .bind(c.started)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Applied::Written)
    }

    async fn user_progress(&self, user_id: &str) -> Result<UserProgress, StoreError> {
        Ok(progress_from_rows(&self.config, crate::db::user_progress(&self.pool, user_id).await?))
    }

    async fn forget_old_batches(&self) -> Result<u64, StoreError> {
        Ok(batch::forget_old(&self.pool).await?)
    }
}
