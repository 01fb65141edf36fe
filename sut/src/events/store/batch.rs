//! Exactly-once batches: each batch's id is inserted into `applied_batches` in the batch's own
//! transaction, first. A retry of the same id after an ambiguous failure finds it (waiting, if the
//! first attempt is still committing) and skips the batch instead of applying it twice.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

/// How long a batch id is remembered: far beyond any retry of the batch.
pub const BATCH_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Opens the transaction of batch `batch_id` and records the id in it; `None` when an earlier
/// attempt committed the batch already.
pub(super) async fn begin(pool: &PgPool, batch_id: i64) -> Result<Option<Transaction<'static, Postgres>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query("INSERT INTO applied_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if fresh {
        Ok(Some(tx))
    } else {
        tx.rollback().await?;
        Ok(None)
    }
}

/// Deletes the ids older than [`BATCH_RETENTION`].
pub(super) async fn forget_old(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let seconds = BATCH_RETENTION.as_secs_f64();
    Ok(sqlx::query(
        "DELETE FROM applied_batches WHERE applied_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1)",
    )
    .bind(seconds)
    .execute(pool)
    .await?
    .rows_affected())
}
