//! Where buffered progress is written and read back: the [`ProgressStore`] interface that the
//! flusher, the `OnMessage` services and the REST API depend on, and its two PostgreSQL layouts.
//!
//! - [`per_goal`]: production's layout (SPEC §2), one `user_goal_progress` row per (user, goal),
//!   about 100 rows written per stat event with the reference configuration; a claim's row lock
//!   holds up the flush that touches the row.
//! - [`per_stat`]: one `user_stat_progress` row per (user, source) holding what goal progress is
//!   derived from (latest and highest value, running total, distinct days, timestamps), one row
//!   written per event; a `user_goal_progress` row only once a goal completes, after which only a
//!   claim writes it. The rules are in [`derive`](super::derive).
//!
//! Both write every batch exactly once ([`batch`]): the batch's id is recorded in the same
//! transaction, so a batch retried after an ambiguous failure (the commit's reply lost) is
//! recognised and not applied twice.

mod batch;
pub mod per_goal;
pub mod per_stat;
pub mod seed;

use std::future::Future;
use std::sync::Arc;

use chrono::{NaiveDateTime, Utc};
use sqlx::PgPool;

pub use batch::BATCH_RETENTION;
pub use per_goal::PerGoalStore;
pub use per_stat::PerStatStore;

use super::buffer::Entry;
use super::update::{Coalesce, StatValues};
use crate::challenges::ChallengeConfig;
use crate::db::Status;

/// Which layout stores progress (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// One row per (user, stat code); goal progress derived on read (the default).
    #[default]
    PerStat,
    /// Production's layout: one row per (user, goal).
    PerGoal,
}

impl StoreKind {
    /// The flag's value, `per-stat` or `per-goal`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::PerStat => "per-stat",
            StoreKind::PerGoal => "per-goal",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a batch was not (wholly) written. In every case nothing of it was written, except that an
/// `Unavailable` failure may hide a commit that succeeded: retrying the same batch id is safe.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable (or the connection broke); retry the same batch.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused the data itself (a value out of range, a constraint): retrying the
    /// same rows cannot succeed, so the flusher isolates the row at fault.
    #[error("rows refused: {0}")]
    Rejected(#[source] sqlx::Error),
    /// Anything else (a conflict, an exhausted resource); retry the same batch.
    #[error("write failed: {0}")]
    Failed(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            return StoreError::Unavailable(error);
        }
        // Class 22: data exception; class 23: integrity constraint violation.
        let refused = matches!(&error, sqlx::Error::Database(db)
            if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")));
        if refused { StoreError::Rejected(error) } else { StoreError::Failed(error) }
    }
}

/// What [`ProgressStore::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The batch was written now.
    Written,
    /// The batch id was found: an earlier attempt committed it (its reply was lost).
    AlreadyApplied,
}

/// One goal's progress for one user, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoalProgress {
    /// Current progress.
    pub progress: i32,
    /// Current status.
    pub status: Status,
    /// When the goal was completed (UTC).
    pub completed_at: Option<NaiveDateTime>,
    /// When the reward was claimed (UTC).
    pub claimed_at: Option<NaiveDateTime>,
}

/// A user's progress on every configured goal, by the goal's dense index; `None`: no progress
/// (`0`, `not_started`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProgress {
    goals: Vec<Option<GoalProgress>>,
}

impl UserProgress {
    /// No progress on any of `goal_count` goals.
    pub fn empty(goal_count: usize) -> Self {
        Self { goals: vec![None; goal_count] }
    }

    /// The progress of the goal with dense index `index`.
    pub fn get(&self, index: u32) -> Option<&GoalProgress> {
        self.goals.get(index as usize).and_then(Option::as_ref)
    }

    /// The status of the goal with dense index `index`.
    pub fn status(&self, index: u32) -> Status {
        self.get(index).map_or(Status::NotStarted, |g| g.status)
    }

    /// Sets the progress of the goal with dense index `index` (ignored when out of range).
    pub fn set(&mut self, index: u32, progress: GoalProgress) {
        if let Some(slot) = self.goals.get_mut(index as usize) {
            *slot = Some(progress);
        }
    }
}

/// The storage the event handler and the API need.
pub trait ProgressStore: Send + Sync + 'static {
    /// The buffered change this layout coalesces per (user, key).
    type Update: Coalesce;

    /// What a login event changes: (key, change) pairs.
    fn login_updates(&self, now: NaiveDateTime) -> Vec<(u32, Self::Update)>;

    /// What a stat event changes: (key, change) pairs.
    fn stat_updates(&self, stat_code: &str, values: StatValues, now: NaiveDateTime) -> Vec<(u32, Self::Update)>;

    /// The goal id or stat code a key stands for (for logs).
    fn key_name(&self, key: u32) -> &str;

    /// Applies `batch` atomically and exactly once per `batch_id`: all of it or none of it.
    fn apply(
        &self,
        batch_id: i64,
        batch: &[Entry<Self::Update>],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Every goal's progress for `user_id`.
    fn user_progress(&self, user_id: &str) -> impl Future<Output = Result<UserProgress, StoreError>> + Send;

    /// Forgets batch ids older than [`BATCH_RETENTION`]; returns how many.
    fn forget_old_batches(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Either layout, chosen at start-up, for the REST API.
#[derive(Debug, Clone)]
pub enum Store {
    /// Production's layout.
    PerGoal(Arc<PerGoalStore>),
    /// The per-stat layout.
    PerStat(Arc<PerStatStore>),
}

impl Store {
    /// A store of `kind` on `pool`.
    pub fn new(kind: StoreKind, pool: PgPool, config: Arc<ChallengeConfig>) -> Self {
        match kind {
            StoreKind::PerGoal => Store::PerGoal(Arc::new(PerGoalStore::new(pool, config))),
            StoreKind::PerStat => Store::PerStat(Arc::new(PerStatStore::new(pool, config))),
        }
    }

    /// Every goal's progress for `user_id`.
    pub async fn user_progress(&self, user_id: &str) -> Result<UserProgress, StoreError> {
        match self {
            Store::PerGoal(store) => store.user_progress(user_id).await,
            Store::PerStat(store) => store.user_progress(user_id).await,
        }
    }
}

/// The current time as stored (UTC, no zone).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}
