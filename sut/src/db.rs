//! PostgreSQL access shared by the services: the pool, migrations, the progress row, and the
//! classification of errors into "the database is unavailable" versus everything else.

use std::time::Duration;

use chrono::NaiveDateTime;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Embedded migrations (`sut/migrations`), applied at every service's start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How a service connects to PostgreSQL.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `postgres://…` URL.
    pub url: String,
    /// Maximum pool size.
    pub pool_size: u32,
    /// How long a request waits for a pooled connection (or a new one) before giving up.
    pub acquire_timeout: Duration,
    /// Shown in `pg_stat_activity.application_name`, so the harness can tell services apart.
    pub application_name: String,
}

/// Builds a pool that connects lazily: a service starts (and answers 503) even while its
/// database is down, and recovers by itself when it comes back.
pub fn lazy_pool(settings: &DbSettings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.url.parse()?;
    let options = options.application_name(&settings.application_name);
    Ok(PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(options))
}

/// Applies the migrations, retrying while the database is unreachable, for at most `wait`.
pub async fn migrate(pool: &PgPool, wait: Duration) -> Result<(), sqlx::migrate::MigrateError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Duration::from_millis(100);
    loop {
        match MIGRATOR.run(pool).await {
            Err(sqlx::migrate::MigrateError::Execute(e))
                if is_unavailable(&e) && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(error = %e, "database not reachable yet; retrying migrations");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// True when the error means "the database can't be reached right now" (connection refused or
/// lost, pool exhausted, server shutting down) rather than a bad query or constraint.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now.
            code.starts_with("08") || code.starts_with("57P")
        }),
        _ => false,
    }
}

/// A goal's status for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No progress yet (also: no row).
    NotStarted,
    /// Some progress, requirement not met.
    InProgress,
    /// Requirement met; claimable.
    Completed,
    /// Reward granted. Never modified by events again.
    Claimed,
}

impl Status {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "not_started",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Claimed => "claimed",
        }
    }

    /// Parses a `status` column value.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "not_started" => Status::NotStarted,
            "in_progress" => Status::InProgress,
            "completed" => Status::Completed,
            "claimed" => Status::Claimed,
            _ => return None,
        })
    }

    /// Completed or claimed: satisfies a prerequisite.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Completed | Status::Claimed)
    }
}

/// One stored `user_goal_progress` row, as the API reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressRow {
    /// The goal.
    pub goal_id: String,
    /// Current progress.
    pub progress: i32,
    /// Current status.
    pub status: Status,
    /// When the goal was completed (UTC).
    pub completed_at: Option<NaiveDateTime>,
    /// When the reward was claimed (UTC).
    pub claimed_at: Option<NaiveDateTime>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for ProgressRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let status: String = row.try_get("status")?;
        Ok(Self {
            goal_id: row.try_get("goal_id")?,
            progress: row.try_get("progress")?,
            status: Status::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "status".into(),
                source: format!("unknown status '{status}'").into(),
            })?,
            completed_at: row.try_get("completed_at")?,
            claimed_at: row.try_get("claimed_at")?,
        })
    }
}

/// The read of one user's rows (`$1` user); the harness explains it too.
pub const USER_PROGRESS_SQL: &str =
    "SELECT goal_id, progress, status, completed_at, claimed_at FROM user_goal_progress WHERE user_id = $1";

/// Every stored row of one user.
pub async fn user_progress(pool: &PgPool, user_id: &str) -> Result<Vec<ProgressRow>, sqlx::Error> {
    sqlx::query_as(USER_PROGRESS_SQL).bind(user_id).fetch_all(pool).await
}
