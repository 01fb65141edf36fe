//! The challenge service's database as the harness watches it: the progress tables of either
//! layout, the statements the harness itself runs (not the SUT's), and the three key queries
//! explained at the end of a run (the read, the claim, the flush upsert) for the user with the
//! most rows, in a transaction rolled back afterwards.

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, Row};

/// The progress tables of either layout (per goal, per stat), watched together.
pub const TABLES: [&str; 2] = ["user_goal_progress", "user_stat_progress"];

/// `EXPLAIN (ANALYZE, BUFFERS)` of one key query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedQuery {
    /// Which query: `flush upsert`, `progress read`, `claim update`.
    pub name: String,
    /// The statement explained.
    pub statement: String,
    /// The plan text, or why there is none.
    pub plan: String,
}

/// Statements the harness itself ran (this sampler, the seeding) are not the SUT's.
pub fn is_harness_statement(query: &str) -> bool {
    let lower = query.to_ascii_lowercase();
    [
        "pg_stat_",
        "pg_extension",
        "pg_database",
        "explain",
        "analyze user_goal_progress",
        "unnest($1::varchar[]) as u(id)",
        "unnest($1::varchar[]) with ordinality as u(id, n)",
        "analyze user_stat_progress",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

/// `query` on one line, cut at `limit` characters.
pub fn shorten(query: &str, limit: usize) -> String {
    let flat = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(limit) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// Explains the three key queries of the layout in use for the user with the most rows, in a
/// transaction rolled back afterwards (ANALYZE runs them).
pub async fn explain_key_queries(conn: &mut PgConnection) -> Result<Vec<ExplainedQuery>, sqlx::Error> {
    // The per-stat layout is in use when its table holds rows (production's database has none).
    let per_stat_user: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM user_stat_progress GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten();
    match per_stat_user {
        Some(user) => explain_per_stat(conn, &user).await,
        None => explain_per_goal(conn).await,
    }
}

/// The per-stat layout's read, claim and flush upsert for `user`.
async fn explain_per_stat(conn: &mut PgConnection, user: &str) -> Result<Vec<ExplainedQuery>, sqlx::Error> {
    let stats = sqlx::query("SELECT stat_code, namespace FROM user_stat_progress WHERE user_id = $1")
        .bind(user)
        .fetch_all(&mut *conn)
        .await?;
    let column = |i: usize| stats.iter().map(|r| r.try_get::<String, _>(i)).collect::<Result<Vec<_>, _>>();
    let (codes, namespaces) = (column(0)?, column(1)?);
    let goal: Option<String> = sqlx::query_scalar(
        "SELECT goal_id FROM user_goal_progress WHERE user_id = $1 ORDER BY (status = 'completed') DESC, goal_id LIMIT 1",
    )
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    let n = codes.len();
    let now = chrono::Utc::now().naive_utc();

    let mut tx = conn.begin().await?;
    let mut plans = Vec::new();
    let read = sut::events::store::per_stat::USER_READ_SQL;
    let plan =
        plan_text(&sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {read}")).bind(user).fetch_all(&mut *tx).await?);
    plans.push(ExplainedQuery { name: "progress read".into(), statement: shorten(read, 2000), plan });

    let claim = sut::api::CLAIM_UPDATE_SQL;
    let plan = plan_text(
        &sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {claim}"))
            .bind(user)
            .bind(goal.as_deref().unwrap_or(""))
            .bind(now)
            .bind(Some(1_i32))
            .fetch_all(&mut *tx)
            .await?,
    );
    plans.push(ExplainedQuery { name: "claim update".into(), statement: claim.into(), plan });

    // One event on each of the user's sources.
    let upsert = sut::events::store::per_stat::UPSERT_STATS_SQL;
    let plan = plan_text(
        &sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {upsert}"))
            .bind(vec![user.to_owned(); n])
            .bind(&codes)
            .bind(&namespaces)
            .bind(vec![Some(1_i32); n])
            .bind(vec![Some(1_i32); n])
            .bind(vec![1_i64; n])
            .bind(vec![1_i32; n])
            .bind(vec![Some(now.date()); n])
            .bind(vec![now; n])
            .bind(vec![now; n])
            .bind(vec![false; n])
            .fetch_all(&mut *tx)
            .await?,
    );
    plans.push(ExplainedQuery { name: format!("flush upsert ({n} rows)"), statement: shorten(upsert, 2000), plan });
    tx.rollback().await?;
    Ok(plans)
}

/// Production's layout: the read, claim and flush `MERGE` for the user with the most rows.
async fn explain_per_goal(conn: &mut PgConnection) -> Result<Vec<ExplainedQuery>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM user_goal_progress GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(user) = user else {
        return Ok(vec![ExplainedQuery {
            name: "all".into(),
            statement: String::new(),
            plan: "user_goal_progress is empty: nothing to explain".into(),
        }]);
    };
    let goals = sqlx::query(
        "SELECT goal_id, challenge_id, namespace FROM user_goal_progress WHERE user_id = $1 \
         ORDER BY (status = 'completed') DESC, goal_id LIMIT 100",
    )
    .bind(&user)
    .fetch_all(&mut *conn)
    .await?;
    let column = |i: usize| goals.iter().map(|r| r.try_get::<String, _>(i)).collect::<Result<Vec<_>, _>>();
    let (goal_ids, challenge_ids, namespaces) = (column(0)?, column(1)?, column(2)?);
    let n = goal_ids.len();
    let now = chrono::Utc::now().naive_utc();

    let mut tx = conn.begin().await?;
    let mut plans = Vec::new();
    let read = sut::db::USER_PROGRESS_SQL;
    let plan =
        plan_text(&sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {read}")).bind(&user).fetch_all(&mut *tx).await?);
    plans.push(ExplainedQuery { name: "progress read".into(), statement: read.into(), plan });

    let claim = sut::api::CLAIM_UPDATE_SQL;
    let plan = plan_text(
        &sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {claim}"))
            .bind(&user)
            .bind(&goal_ids[0])
            .bind(now)
            .bind(None::<i32>)
            .fetch_all(&mut *tx)
            .await?,
    );
    plans.push(ExplainedQuery { name: "claim update".into(), statement: claim.into(), plan });

    // One stat event's worth: an increment on each of the user's goals.
    let merge = sut::events::store::per_goal::merge_statement();
    let plan = plan_text(
        &sqlx::query(&format!("EXPLAIN (ANALYZE, BUFFERS) {merge}"))
            .bind(vec![user.clone(); n])
            .bind(&goal_ids)
            .bind(&challenge_ids)
            .bind(&namespaces)
            .bind(vec![1_i16; n])
            .bind(vec![1_i64; n])
            .bind(vec![false; n])
            .bind(vec![1_000_000_i32; n])
            .bind(vec![String::new(); n])
            .bind(vec![now; n])
            .bind(vec![false; n])
            .fetch_all(&mut *tx)
            .await?,
    );
    plans.push(ExplainedQuery { name: format!("flush upsert ({n} rows)"), statement: shorten(merge, 2000), plan });
    tx.rollback().await?;
    Ok(plans)
}

fn plan_text(rows: &[sqlx::postgres::PgRow]) -> String {
    rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect::<Vec<_>>().join("\n")
}
