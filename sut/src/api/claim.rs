//! The claim flow: one transaction that locks the user's goal row, checks completion and
//! prerequisites, grants the reward over HTTP within the claim budget, and marks the row claimed.
//! A concurrent claim of the same row waits on the lock and then sees `claimed` (409).
//!
//! With the per-stat layout, completion and prerequisites are derived from the user's progress
//! first. A completed goal without a row (one added to the configuration later) gets its row
//! written outside the claim's transaction, so the transaction holds no new row that a flush
//! could wait on; the claimed row freezes the progress derived at that moment.

use chrono::{NaiveDateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::view::{RewardView, timestamp};
use crate::auth::Caller;
use crate::challenges::Goal;
use crate::db::Status;
use crate::events::store::{GoalProgress, PerStatStore, ProgressStore, Store};

/// The successful claim's body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResponse<'a> {
    /// The claimed goal.
    pub goal_id: &'a str,
    /// Always `claimed`.
    pub status: Status,
    /// What was granted.
    pub reward: RewardView<'a>,
    /// When (RFC 3339 UTC).
    pub claimed_at: String,
}

/// Looks the goal up, insisting it belongs to the named challenge.
pub fn find_goal<'a>(state: &'a AppState, challenge_id: &str, goal_id: &str) -> Result<&'a Goal, ApiError> {
    if state.config.challenge(challenge_id).is_none() {
        return Err(ApiError::NotFound(format!("challenge '{challenge_id}' not found")));
    }
    match state.config.goal(goal_id) {
        Some(goal) if goal.challenge_id == challenge_id => Ok(goal),
        _ => Err(ApiError::NotFound(format!("goal '{goal_id}' not found in challenge '{challenge_id}'"))),
    }
}

/// The claim's update (`$1` user, `$2` goal, `$3` claimed at, `$4` the progress to freeze, or
/// NULL to keep the stored one); the harness explains it too.
pub const CLAIM_UPDATE_SQL: &str = "UPDATE user_goal_progress \
     SET status = 'claimed', claimed_at = $3, updated_at = $3, progress = COALESCE($4, progress) \
     WHERE user_id = $1 AND goal_id = $2 AND status = 'completed'";

/// 409 for a claimed goal, 400 for one not completed.
fn require_completed(status: Status, goal: &Goal) -> Result<(), ApiError> {
    match status {
        Status::Claimed => Err(ApiError::AlreadyClaimed(format!("goal '{}' is already claimed", goal.id))),
        Status::Completed => Ok(()),
        Status::NotStarted | Status::InProgress => {
            Err(ApiError::FailedPrecondition(format!("goal '{}' is not completed", goal.id)))
        }
    }
}

fn prerequisites_missing(goal: &Goal, missing: &[&str]) -> Result<(), ApiError> {
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::FailedPrecondition(format!("prerequisites of goal '{}' not met: {}", goal.id, missing.join(", "))))
}

/// Per-stat: checks the derived status and prerequisites; returns the goal's current progress
/// (to freeze in the claimed row).
async fn check_per_stat(
    state: &AppState,
    store: &PerStatStore,
    caller: &Caller,
    goal: &Goal,
) -> Result<GoalProgress, ApiError> {
    let progress = store.user_progress(&caller.user_id).await?;
    let index = state.config.goal_position(&goal.id).expect("find_goal returned a configured goal");
    require_completed(progress.status(index), goal)?;
    let missing: Vec<&str> = goal
        .prerequisites
        .iter()
        .filter(|p| !state.config.goal_position(p).is_some_and(|i| progress.status(i).is_done()))
        .map(String::as_str)
        .collect();
    prerequisites_missing(goal, &missing)?;
    Ok(*progress.get(index).expect("a completed goal has progress"))
}

/// Locks the goal's row in `tx`; its status, or `None` without a row.
async fn lock_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    goal: &Goal,
) -> Result<Option<Status>, ApiError> {
    let row = sqlx::query("SELECT status FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2 FOR UPDATE")
        .bind(&caller.user_id)
        .bind(&goal.id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        None => None,
        Some(row) => Some(Status::parse(row.try_get::<&str, _>("status")?).unwrap_or(Status::NotStarted)),
    })
}

/// Claims `goal` for `caller`.
pub async fn claim<'a>(state: &'a AppState, caller: &Caller, goal: &'a Goal) -> Result<ClaimResponse<'a>, ApiError> {
    let deadline = Instant::now() + state.claim_budget;
    let per_stat = match &state.store {
        Store::PerStat(store) => Some((store, check_per_stat(state, store, caller, goal).await?)),
        Store::PerGoal(_) => None,
    };
    let mut tx = state.pool.begin().await?;
    let mut status = lock_row(&mut tx, caller, goal).await?;
    if let (None, Some((store, current))) = (status, &per_stat) {
        // Completed without a row (a goal added to the configuration later): write the row
        // outside this transaction, so no flush waits on it, then lock it.
        tx.rollback().await?;
        store.record_completion(&caller.user_id, &caller.namespace, goal, current).await?;
        tx = state.pool.begin().await?;
        status = lock_row(&mut tx, caller, goal).await?;
    }
    require_completed(status.unwrap_or(Status::NotStarted), goal)?;
    if per_stat.is_none() {
        check_prerequisites(&mut tx, caller, goal).await?;
    }

    state.rewards.grant(&caller.namespace, &caller.user_id, goal, deadline).await?;

    let claimed_at: NaiveDateTime = Utc::now().naive_utc();
    let updated = sqlx::query(CLAIM_UPDATE_SQL)
        .bind(&caller.user_id)
        .bind(&goal.id)
        .bind(claimed_at)
        .bind(per_stat.map(|(_, current)| current.progress))
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() != 1 {
        // The row lock makes this unreachable; refuse rather than report a claim that didn't happen.
        return Err(ApiError::Internal(anyhow::anyhow!("claim update matched {} rows", updated.rows_affected())));
    }
    tx.commit().await?;
    Ok(ClaimResponse {
        goal_id: &goal.id,
        status: Status::Claimed,
        reward: (&goal.reward).into(),
        claimed_at: timestamp(Some(claimed_at)),
    })
}

async fn check_prerequisites(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    goal: &Goal,
) -> Result<(), ApiError> {
    if goal.prerequisites.is_empty() {
        return Ok(());
    }
    let done: Vec<String> = sqlx::query_scalar(
        "SELECT goal_id FROM user_goal_progress \
         WHERE user_id = $1 AND goal_id = ANY($2) AND status IN ('completed', 'claimed')",
    )
    .bind(&caller.user_id)
    .bind(&goal.prerequisites)
    .fetch_all(&mut **tx)
    .await?;
    let missing: Vec<&str> = goal.prerequisites.iter().filter(|p| !done.contains(p)).map(String::as_str).collect();
    prerequisites_missing(goal, &missing)
}
