//! The database's own view of the run: every second, connections by state and by service
//! (`application_name`), commits and rollbacks, the cache hit ratio, lock waits and the table's
//! rows and size; over the whole run, `pg_stat_statements` deltas; at the end,
//! `EXPLAIN (ANALYZE, BUFFERS)` of the three key queries on the run's data, inside a transaction
//! that is rolled back.
//!
//! Against a database the harness did not provision, whatever is not available (no
//! `pg_stat_statements`, no rights) is noted and the rest goes on.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use super::Observation;
use crate::target::database::{self, ExplainedQuery, is_harness_statement, shorten};

/// The component name of the database's observations.
pub const COMPONENT: &str = "postgres";
/// Top statements kept in the summary.
const TOP_STATEMENTS: usize = 10;

/// One statement's activity during the run, from `pg_stat_statements`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementDelta {
    /// The normalised statement (shortened).
    pub query: String,
    /// Executions during the run.
    pub calls: i64,
    /// Execution time during the run, ms.
    pub total_ms: f64,
    /// Mean execution time during the run, ms.
    pub mean_ms: f64,
    /// Slowest execution (since the statistics were reset; the harness resets them at the start of
    /// a self-provisioned run).
    pub max_ms: f64,
    /// Rows returned or affected during the run.
    pub rows: i64,
    /// Shared buffer hits and reads during the run.
    pub shared_blocks_hit: i64,
    /// Shared buffer reads (from the OS or disk) during the run.
    pub shared_blocks_read: i64,
}

/// What the sampler found over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseEnd {
    /// Statements by execution time during the run.
    pub top_statements: Vec<StatementDelta>,
    /// Plans of the key queries.
    pub explain: Vec<ExplainedQuery>,
    /// Whole-run cache hit ratio (shared buffers).
    pub cache_hit_ratio: Option<f64>,
    /// Commits during the run.
    pub commits: Option<i64>,
    /// Rollbacks during the run.
    pub rollbacks: Option<i64>,
    /// What could not be observed, and why.
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct DbCounters {
    commits: i64,
    rollbacks: i64,
    blocks_hit: i64,
    blocks_read: i64,
}

#[derive(Debug, Clone)]
struct StatementCounters {
    query: String,
    calls: i64,
    total_ms: f64,
    max_ms: f64,
    rows: i64,
    hit: i64,
    read: i64,
}

/// Samples one database.
#[derive(Debug)]
pub struct PgSampler {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    previous: Option<(Instant, DbCounters)>,
    first: Option<DbCounters>,
    statements_at_start: Option<HashMap<i64, StatementCounters>>,
    /// The statement with the most execution time so far, refreshed every few seconds once
    /// [`PgSampler::track_top_statement`] asks for it.
    top: Option<StatementDelta>,
    track_top: bool,
    unavailable: Vec<String>,
}

/// How often (in seconds of the load) the top statement so far is refreshed.
const TOP_EVERY_S: u64 = 5;

impl PgSampler {
    /// Connects and takes the starting point. `owned`: the harness provisioned this database, so
    /// it may reset `pg_stat_statements` (making the maxima the run's own).
    pub async fn connect(url: &str, owned: bool) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("gauntlet-observer");
        let mut conn = PgConnection::connect_with(&options).await?;
        let mut unavailable = Vec::new();
        let statements_at_start = match enable_statements(&mut conn, owned).await {
            Ok(()) => match statements(&mut conn).await {
                Ok(s) => Some(s),
                Err(e) => {
                    unavailable.push(format!("pg_stat_statements: {e}"));
                    None
                }
            },
            Err(reason) => {
                unavailable.push(reason);
                None
            }
        };
        if !owned && statements_at_start.is_some() {
            unavailable.push(
                "statement maxima are since pg_stat_statements was last reset (the harness resets it only in \
                 databases it provisioned)"
                    .into(),
            );
        }
        Ok(Self {
            options,
            conn: Some(conn),
            previous: None,
            first: None,
            statements_at_start,
            top: None,
            track_top: false,
            unavailable,
        })
    }

    async fn connection(&mut self) -> Option<&mut PgConnection> {
        if self.conn.is_none() {
            self.conn = PgConnection::connect_with(&self.options).await.ok();
        }
        self.conn.as_mut()
    }

    fn note(&mut self, what: String) {
        if !self.unavailable.contains(&what) {
            self.unavailable.push(what);
        }
    }

    /// One second's observations; a failed query drops the connection (it is retried next
    /// second) and is noted once.
    pub async fn sample(&mut self, t_s: u64) -> Vec<Observation> {
        let Some(conn) = self.connection().await else {
            return vec![Observation::new(t_s, COMPONENT, "sampler_up", 0.0)];
        };
        let result = sample_queries(conn, t_s).await;
        match result {
            Ok((mut rows, counters)) => {
                let now = Instant::now();
                if let Some((at, before)) = self.previous {
                    let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
                    let per_s = |a: i64, b: i64| (a - b).max(0) as f64 / seconds;
                    rows.push(Observation::new(
                        t_s,
                        COMPONENT,
                        "commits_per_s",
                        per_s(counters.commits, before.commits),
                    ));
                    rows.push(Observation::new(
                        t_s,
                        COMPONENT,
                        "rollbacks_per_s",
                        per_s(counters.rollbacks, before.rollbacks),
                    ));
                    if let Some(ratio) = hit_ratio(&before, &counters) {
                        rows.push(Observation::new(t_s, COMPONENT, "cache_hit_ratio", ratio));
                    }
                }
                self.previous = Some((now, counters));
                self.first.get_or_insert(counters);
                rows.push(Observation::new(t_s, COMPONENT, "sampler_up", 1.0));
                if self.track_top
                    && t_s % TOP_EVERY_S == 0
                    && let (Some(start), Some(conn)) = (&self.statements_at_start, self.conn.as_mut())
                    && let Ok(now) = statements(conn).await
                {
                    self.top = top_deltas(start, &now).into_iter().next();
                }
                rows
            }
            Err(e) => {
                self.conn = None;
                self.note(format!("database sampling failed at {t_s}s: {e}"));
                vec![Observation::new(t_s, COMPONENT, "sampler_up", 0.0)]
            }
        }
    }

    /// Keeps the top statement so far up to date (a query of `pg_stat_statements` every
    /// few seconds), for a live dashboard.
    pub fn track_top_statement(&mut self) {
        self.track_top = true;
    }

    /// The statement with the most execution time since the load began, as of the last refresh.
    pub fn top_statement(&self) -> Option<&StatementDelta> {
        self.top.as_ref()
    }

    /// The end of the run: statement deltas, plans of the key queries, whole-run counters.
    pub async fn finish(mut self) -> DatabaseEnd {
        let mut end = DatabaseEnd::default();
        let (first, start) = (self.first, self.statements_at_start.take());
        let Some(conn) = self.connection().await else {
            self.note("the database was not reachable at the end of the run".into());
            end.unavailable = self.unavailable;
            return end;
        };
        if let (Some(first), Ok(last)) = (first, database_counters(conn).await) {
            end.cache_hit_ratio = hit_ratio(&first, &last);
            end.commits = Some(last.commits - first.commits);
            end.rollbacks = Some(last.rollbacks - first.rollbacks);
        }
        if let Some(start) = &start {
            match statements(conn).await {
                Ok(now) => end.top_statements = top_deltas(start, &now),
                Err(e) => end.unavailable.push(format!("pg_stat_statements at the end: {e}")),
            }
        }
        match database::explain_key_queries(conn).await {
            Ok(plans) => end.explain = plans,
            Err(e) => end.unavailable.push(format!("EXPLAIN of the key queries: {e}")),
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        end.unavailable.splice(0..0, self.unavailable);
        end
    }
}

fn hit_ratio(before: &DbCounters, after: &DbCounters) -> Option<f64> {
    let hit = (after.blocks_hit - before.blocks_hit).max(0) as f64;
    let read = (after.blocks_read - before.blocks_read).max(0) as f64;
    (hit + read > 0.0).then(|| hit / (hit + read))
}

async fn enable_statements(conn: &mut PgConnection, owned: bool) -> Result<(), String> {
    let installed: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("pg_stat_statements: {e}"))?;
    if installed == 0 {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("pg_stat_statements is not installed and could not be: {e}"))?;
    }
    // Fails when the library is not in shared_preload_libraries.
    sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("pg_stat_statements is not available: {e}"))?;
    if owned {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("pg_stat_statements_reset: {e}"))?;
    }
    Ok(())
}

async fn sample_queries(conn: &mut PgConnection, t_s: u64) -> Result<(Vec<Observation>, DbCounters), sqlx::Error> {
    let mut rows = Vec::new();
    let activity = sqlx::query(
        "SELECT coalesce(nullif(application_name, ''), 'unnamed') AS app, \
                replace(coalesce(state, 'unknown'), ' ', '_') AS state, \
                count(*)::int8 AS n, \
                (count(*) FILTER (WHERE wait_event_type = 'Lock'))::int8 AS lock_waits \
         FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid() \
         GROUP BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_state: HashMap<String, i64> = HashMap::new();
    let mut by_app: HashMap<String, i64> = HashMap::new();
    let (mut total, mut lock_waits) = (0, 0);
    for row in &activity {
        let n: i64 = row.try_get("n")?;
        *by_state.entry(row.try_get("state")?).or_default() += n;
        *by_app.entry(row.try_get("app")?).or_default() += n;
        total += n;
        lock_waits += row.try_get::<i64, _>("lock_waits")?;
    }
    let mut states: Vec<_> = by_state.into_iter().collect();
    states.sort();
    let mut apps: Vec<_> = by_app.into_iter().collect();
    apps.sort();
    for (state, n) in states {
        rows.push(Observation::new(t_s, COMPONENT, format!("connections{{state={state}}}"), n as f64));
    }
    for (app, n) in apps {
        rows.push(Observation::new(t_s, COMPONENT, format!("connections{{app={app}}}"), n as f64));
    }
    rows.push(Observation::new(t_s, COMPONENT, "connections_total", total as f64));
    rows.push(Observation::new(t_s, COMPONENT, "lock_waits", lock_waits as f64));

    // The progress tables of either layout, together.
    let table = sqlx::query(
        "SELECT sum(n_live_tup)::int8, sum(n_dead_tup)::int8, sum(pg_total_relation_size(relid))::int8 \
         FROM pg_stat_user_tables WHERE relname = ANY($1) HAVING count(*) > 0",
    )
    .bind(&database::TABLES[..])
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(table) = table {
        rows.push(Observation::new(t_s, COMPONENT, "table_live_rows", table.try_get::<i64, _>(0)? as f64));
        rows.push(Observation::new(t_s, COMPONENT, "table_dead_rows", table.try_get::<i64, _>(1)? as f64));
        rows.push(Observation::new(t_s, COMPONENT, "table_size_bytes", table.try_get::<i64, _>(2)? as f64));
    }
    Ok((rows, database_counters(conn).await?))
}

async fn database_counters(conn: &mut PgConnection) -> Result<DbCounters, sqlx::Error> {
    let row = sqlx::query(
        "SELECT xact_commit, xact_rollback, blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(DbCounters {
        commits: row.try_get(0)?,
        rollbacks: row.try_get(1)?,
        blocks_hit: row.try_get(2)?,
        blocks_read: row.try_get(3)?,
    })
}

async fn statements(conn: &mut PgConnection) -> Result<HashMap<i64, StatementCounters>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT queryid, query, calls, total_exec_time, max_exec_time, rows, shared_blks_hit, shared_blks_read \
         FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<i64, _>("queryid")?,
                StatementCounters {
                    query: row.try_get("query")?,
                    calls: row.try_get("calls")?,
                    total_ms: row.try_get("total_exec_time")?,
                    max_ms: row.try_get("max_exec_time")?,
                    rows: row.try_get("rows")?,
                    hit: row.try_get("shared_blks_hit")?,
                    read: row.try_get("shared_blks_read")?,
                },
            ))
        })
        .collect()
}

fn top_deltas(start: &HashMap<i64, StatementCounters>, end: &HashMap<i64, StatementCounters>) -> Vec<StatementDelta> {
    let mut deltas: Vec<StatementDelta> = end
        .iter()
        .filter(|(_, s)| !is_harness_statement(&s.query))
        .filter_map(|(id, now)| {
            let before = start.get(id);
            let calls = now.calls - before.map_or(0, |b| b.calls);
            (calls > 0).then(|| {
                let total_ms = now.total_ms - before.map_or(0.0, |b| b.total_ms);
                StatementDelta {
                    query: shorten(&now.query, 400),
                    calls,
                    total_ms,
                    mean_ms: total_ms / calls as f64,
                    max_ms: now.max_ms,
                    rows: now.rows - before.map_or(0, |b| b.rows),
                    shared_blocks_hit: now.hit - before.map_or(0, |b| b.hit),
                    shared_blocks_read: now.read - before.map_or(0, |b| b.read),
                }
            })
        })
        .collect();
    deltas.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    deltas.truncate(TOP_STATEMENTS);
    deltas
}
