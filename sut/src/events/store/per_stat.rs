//! The per-stat layout: one `user_stat_progress` row per (user, source), one row written per
//! event whatever the number of goals, and goal progress derived from it on read
//! ([`derive`](crate::events::derive)).
//!
//! A flush locks the batch's stat rows (`FOR UPDATE`, in key order), computes their new state and
//! which goals this batch completed, and writes both in the batch's transaction: the stat rows by
//! one upsert, a `user_goal_progress` row per newly completed goal (`ON CONFLICT DO NOTHING`). It
//! never updates a goal row, so it never waits on a claim holding one locked.
//!
//! Rows that do not exist yet cannot be locked: with several event handler replicas on one
//! database, two flushes can both find a new user's row missing. So new rows are inserted apart
//! (`ON CONFLICT DO NOTHING RETURNING`, in key order), and a key another flush inserted meanwhile
//! is locked then and written on top of what that flush committed: no event is counted from a
//! state that was not the row's.
//!
//! Reads merge the two: a `claimed` goal row is frozen; a `completed` row gives the status and
//! `completed_at` while progress keeps following the source; other goals are derived from their
//! source alone.
//!
//! A goal added to the configuration later sees its source's whole history (totals and days
//! counted before it existed), so it may show as completed at once; it then has no goal row
//! until it is claimed, and its `completedAt` shows the source's latest event until then.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::{PgPool, Row};

use super::{Applied, GoalProgress, ProgressStore, StoreError, UserProgress, batch};
use crate::challenges::{ChallengeConfig, Goal};
use crate::db::Status;
use crate::events::buffer::Entry;
use crate::events::derive::{StatState, progress, started};
use crate::events::update::{StatDelta, StatValues, login_delta, stat_delta};

/// The per-stat layout in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PerStatStore {
    pool: PgPool,
    config: Arc<ChallengeConfig>,
}

/// Locks the stat rows a batch changes (`$1` users, `$2` stat codes).
const LOCK_STATS_SQL: &str = "SELECT s.user_id, s.stat_code, s.latest_value, s.max_value, s.total, s.day_count, \
            s.last_day, s.first_event_at, s.updated_at \
     FROM user_stat_progress s \
     JOIN unnest($1::varchar[], $2::varchar[]) AS k(user_id, stat_code) \
       ON s.user_id = k.user_id AND s.stat_code = k.stat_code \
     ORDER BY s.user_id, s.stat_code \
     FOR UPDATE OF s";

/// Writes a batch's new stat rows (parameters: the columns of [`StatColumns`]); the harness
/// explains it too.
pub const UPSERT_STATS_SQL: &str = "INSERT INTO user_stat_progress \
        (user_id, stat_code, namespace, latest_value, max_value, total, day_count, last_day, first_event_at, updated_at) \
     SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::int4[], $5::int4[], $6::int8[], \
                          $7::int4[], $8::date[], $9::timestamp[], $10::timestamp[]) \
     ON CONFLICT (user_id, stat_code) DO UPDATE SET \
        latest_value = EXCLUDED.latest_value, max_value = EXCLUDED.max_value, total = EXCLUDED.total, \
        day_count = EXCLUDED.day_count, last_day = EXCLUDED.last_day, updated_at = EXCLUDED.updated_at";

/// Inserts the rows of keys that had none when the batch locked its rows (same parameters as
/// [`UPSERT_STATS_SQL`]); returns the keys it inserted. A key another flush inserted meanwhile
/// is skipped (after waiting for that flush to commit) and written on top of by the upsert.
const INSERT_NEW_STATS_SQL: &str = "INSERT INTO user_stat_progress \
        (user_id, stat_code, namespace, latest_value, max_value, total, day_count, last_day, first_event_at, updated_at) \
     SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::int4[], $5::int4[], $6::int8[], \
                          $7::int4[], $8::date[], $9::timestamp[], $10::timestamp[]) \
     ON CONFLICT (user_id, stat_code) DO NOTHING \
     RETURNING user_id, stat_code";

/// Records goals completed by a batch (or found completed by a claim).
const COMPLETE_GOALS_SQL: &str = "INSERT INTO user_goal_progress \
        (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, created_at, updated_at) \
     SELECT u.user_id, u.goal_id, u.challenge_id, u.namespace, u.progress, 'completed', u.at, u.at, u.at \
     FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::int4[], $6::timestamp[]) \
          AS u(user_id, goal_id, challenge_id, namespace, progress, at) \
     ON CONFLICT (user_id, goal_id) DO NOTHING";

/// One user's stat rows and goal rows in one round trip (`$1` user); the harness explains it too.
pub const USER_READ_SQL: &str = "SELECT 0::int2 AS kind, stat_code AS id, latest_value AS a, max_value AS b, total, \
            day_count, last_day, NULL::varchar AS status, first_event_at AS t1, updated_at AS t2 \
     FROM user_stat_progress WHERE user_id = $1 \
     UNION ALL \
     SELECT 1::int2, goal_id, progress, NULL, NULL, NULL, NULL, status, completed_at, claimed_at \
     FROM user_goal_progress WHERE user_id = $1";

/// A stat row's key: (user, stat code).
type StatKey = (String, String);

/// An entry written: its row's state before (None: no row) and after.
type Written<'a> = (&'a Entry<StatDelta>, Option<StatState>, StatState);

impl PerStatStore {
    /// A store on `pool` for the goals of `config`.
    pub fn new(pool: PgPool, config: Arc<ChallengeConfig>) -> Self {
        Self { pool, config }
    }

    fn code(&self, entry: &Entry<StatDelta>) -> &str {
        &self.config.sources()[entry.key as usize].stat_code
    }

    fn key(&self, entry: &Entry<StatDelta>) -> StatKey {
        (entry.user_id.to_string(), self.code(entry).to_owned())
    }

    /// Each entry with its row's state in `rows` (None: no row).
    fn with_rows<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Entry<StatDelta>>,
        rows: &HashMap<StatKey, StatState>,
    ) -> Vec<(&'a Entry<StatDelta>, Option<StatState>)> {
        entries.into_iter().map(|entry| (entry, rows.get(&self.key(entry)).cloned())).collect()
    }

    /// Locks the rows of `entries` that exist, in key order, and reads their state.
    async fn lock(
        &self,
        tx: &mut sqlx::PgConnection,
        entries: &[&Entry<StatDelta>],
    ) -> Result<HashMap<StatKey, StatState>, StoreError> {
        let users: Vec<&str> = entries.iter().map(|e| &*e.user_id).collect();
        let codes: Vec<&str> = entries.iter().map(|e| self.code(e)).collect();
        let locked = sqlx::query(LOCK_STATS_SQL).bind(&users).bind(&codes).fetch_all(&mut *tx).await?;
        let mut before = HashMap::with_capacity(locked.len());
        for row in &locked {
            let key = (row.try_get("user_id")?, row.try_get("stat_code")?);
            before.insert(key, stat_state(row, "latest_value", "max_value", "first_event_at", "updated_at")?);
        }
        Ok(before)
    }

    /// Writes each entry on top of its row's state with `sql` (the upsert, or the insert of new
    /// rows); returns the keys the statement reported (the insert's) and each entry's states.
    async fn write<'a>(
        &self,
        tx: &mut sqlx::PgConnection,
        sql: &str,
        entries: Vec<(&'a Entry<StatDelta>, Option<StatState>)>,
    ) -> Result<(HashSet<StatKey>, Vec<Written<'a>>), StoreError> {
        if entries.is_empty() {
            return Ok((HashSet::new(), Vec::new()));
        }
        let mut stats = StatColumns::default();
        let mut written = Vec::with_capacity(entries.len());
        for (entry, old) in entries {
            let new = StatState::after(old.as_ref(), &entry.update, entry.last_event_at);
            stats.user_id.push(&entry.user_id);
            stats.stat_code.push(self.code(entry));
            stats.namespace.push(&entry.namespace);
            stats.latest.push(new.latest);
            stats.max.push(new.max);
            stats.total.push(new.total);
            stats.day_count.push(new.day_count);
            stats.last_day.push(new.last_day);
            stats.first_event_at.push(new.first_event_at);
            stats.updated_at.push(new.updated_at);
            written.push((entry, old, new));
        }
        let reported = sqlx::query(sql)
            .bind(stats.user_id)
            .bind(stats.stat_code)
            .bind(stats.namespace)
            .bind(stats.latest)
            .bind(stats.max)
            .bind(stats.total)
            .bind(stats.day_count)
            .bind(stats.last_day)
            .bind(stats.first_event_at)
            .bind(stats.updated_at)
            .fetch_all(&mut *tx)
            .await?;
        let mut keys = HashSet::with_capacity(reported.len());
        for row in &reported {
            keys.insert((row.try_get("user_id")?, row.try_get("stat_code")?));
        }
        Ok((keys, written))
    }

    /// The goals the written entries completed (done after, not before).
    fn completed<'a>(&'a self, written: &[Written<'a>]) -> CompletedColumns<'a> {
        let mut completed = CompletedColumns::default();
        for (entry, old, new) in written {
            for goal in &self.config.sources()[entry.key as usize].goals {
                let (value, done) = progress(&goal.goal, new);
                if done && !old.as_ref().is_some_and(|old| progress(&goal.goal, old).1) {
                    completed.user_id.push(&entry.user_id);
                    completed.goal_id.push(&goal.goal.id);
                    completed.challenge_id.push(&goal.goal.challenge_id);
                    completed.namespace.push(&entry.namespace);
                    completed.progress.push(value);
                    completed.at.push(entry.last_event_at);
                }
            }
        }
        completed
    }

    /// Writes the goal row of a goal the reads derive as completed but that has none (a goal
    /// added to the configuration later), so a claim can lock it. Autocommitted: the caller's
    /// claim transaction must not hold a new row that flushes would wait on.
    pub async fn record_completion(
        &self,
        user_id: &str,
        namespace: &str,
        goal: &Goal,
        progress: &GoalProgress,
    ) -> Result<(), StoreError> {
        let at = progress.completed_at.unwrap_or_else(super::now);
        sqlx::query(COMPLETE_GOALS_SQL)
            .bind([user_id])
            .bind([goal.id.as_str()])
            .bind([goal.challenge_id.as_str()])
            .bind([namespace])
            .bind([progress.progress])
            .bind([at])
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Column arrays for [`UPSERT_STATS_SQL`].
#[derive(Default)]
struct StatColumns<'a> {
    user_id: Vec<&'a str>,
    stat_code: Vec<&'a str>,
    namespace: Vec<&'a str>,
    latest: Vec<Option<i32>>,
    max: Vec<Option<i32>>,
    total: Vec<i64>,
    day_count: Vec<i32>,
    last_day: Vec<Option<NaiveDate>>,
    first_event_at: Vec<NaiveDateTime>,
    updated_at: Vec<NaiveDateTime>,
}

/// Column arrays for [`COMPLETE_GOALS_SQL`].
#[derive(Default)]
struct CompletedColumns<'a> {
    user_id: Vec<&'a str>,
    goal_id: Vec<&'a str>,
    challenge_id: Vec<&'a str>,
    namespace: Vec<&'a str>,
    progress: Vec<i32>,
    at: Vec<NaiveDateTime>,
}

fn stat_state(
    row: &sqlx::postgres::PgRow,
    latest: &str,
    max: &str,
    first: &str,
    updated: &str,
) -> Result<StatState, sqlx::Error> {
    Ok(StatState {
        latest: row.try_get(latest)?,
        max: row.try_get(max)?,
        total: row.try_get("total")?,
        day_count: row.try_get("day_count")?,
        last_day: row.try_get("last_day")?,
        first_event_at: row.try_get(first)?,
        updated_at: row.try_get(updated)?,
    })
}

impl ProgressStore for PerStatStore {
    type Update = StatDelta;

    fn login_updates(&self, now: NaiveDateTime) -> Vec<(u32, StatDelta)> {
        self.config.login_source().map(|source| (source.index, login_delta(now))).into_iter().collect()
    }

    fn stat_updates(&self, stat_code: &str, values: StatValues, now: NaiveDateTime) -> Vec<(u32, StatDelta)> {
        self.config.stat_source(stat_code).map(|source| (source.index, stat_delta(values, now))).into_iter().collect()
    }

    fn key_name(&self, key: u32) -> &str {
        self.config
            .sources()
            .get(key as usize)
            .map_or("?", |s| if s.stat_code.is_empty() { "(login)" } else { &s.stat_code })
    }

    async fn apply(&self, batch_id: i64, batch: &[Entry<StatDelta>]) -> Result<Applied, StoreError> {
        if batch.is_empty() {
            return Ok(Applied::Written);
        }
        let Some(mut tx) = batch::begin(&self.pool, batch_id).await? else { return Ok(Applied::AlreadyApplied) };
        let all: Vec<&Entry<StatDelta>> = batch.iter().collect();
        let before = self.lock(&mut tx, &all).await?;
        let (known, mut new): (Vec<_>, Vec<_>) =
            self.with_rows(all, &before).into_iter().partition(|(_, old)| old.is_some());
        let mut written = self.write(&mut tx, UPSERT_STATS_SQL, known).await?.1;
        // Keys with no row yet: inserted in key order, so two flushes inserting the same keys
        // wait on each other in one order. Another replica's flush may have inserted some since
        // the lock above (it found no row either); those are locked now and written on top of
        // what it committed, as if the row had been there all along.
        new.sort_by(|(a, _), (b, _)| (&*a.user_id, self.code(a)).cmp(&(&*b.user_id, self.code(b))));
        let (inserted, fresh) = self.write(&mut tx, INSERT_NEW_STATS_SQL, new).await?;
        let (fresh, raced): (Vec<_>, Vec<_>) =
            fresh.into_iter().partition(|(entry, _, _)| inserted.contains(&self.key(entry)));
        written.extend(fresh);
        if !raced.is_empty() {
            let raced: Vec<&Entry<StatDelta>> = raced.into_iter().map(|(entry, _, _)| entry).collect();
            let now_there = self.lock(&mut tx, &raced).await?;
            written.extend(self.write(&mut tx, UPSERT_STATS_SQL, self.with_rows(raced, &now_there)).await?.1);
        }
        let completed = self.completed(&written);
        if !completed.user_id.is_empty() {
            sqlx::query(COMPLETE_GOALS_SQL)
                .bind(completed.user_id)
                .bind(completed.goal_id)
                .bind(completed.challenge_id)
                .bind(completed.namespace)
                .bind(completed.progress)
                .bind(completed.at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Applied::Written)
    }

    async fn user_progress(&self, user_id: &str) -> Result<UserProgress, StoreError> {
        let rows = sqlx::query(USER_READ_SQL).bind(user_id).fetch_all(&self.pool).await?;
        let mut stats = Vec::new();
        let mut goals = Vec::new();
        for row in &rows {
            let kind: i16 = row.try_get("kind")?;
            let id: &str = row.try_get("id")?;
            if kind == 0 {
                if let Some(source) = self.config.source_by_code(id) {
                    stats.push((source.index, stat_state(row, "a", "b", "t1", "t2")?));
                }
            } else if let Some(index) = self.config.goal_position(id) {
                let status: &str = row.try_get("status")?;
                let stored = GoalProgress {
                    progress: row.try_get("a")?,
                    status: Status::parse(status).unwrap_or(Status::NotStarted),
                    completed_at: row.try_get("t1")?,
                    claimed_at: row.try_get("t2")?,
                };
                goals.push((index, stored));
            }
        }
        Ok(derive_user(&self.config, &stats, &goals))
    }

    async fn forget_old_batches(&self) -> Result<u64, StoreError> {
        Ok(batch::forget_old(&self.pool).await?)
    }
}

/// Every goal's progress from a user's stat rows (by source index) and goal rows (by goal index).
pub fn derive_user(
    config: &ChallengeConfig,
    stats: &[(u32, StatState)],
    goal_rows: &[(u32, GoalProgress)],
) -> UserProgress {
    let mut user = UserProgress::empty(config.goal_count());
    for (source, state) in stats {
        for goal in &config.sources()[*source as usize].goals {
            let (value, done) = progress(&goal.goal, state);
            let status = if done {
                Status::Completed
            } else if value > 0 || started(&goal.goal, state) {
                Status::InProgress
            } else {
                Status::NotStarted
            };
            let completed_at = done.then_some(state.updated_at);
            user.set(goal.index, GoalProgress { progress: value, status, completed_at, claimed_at: None });
        }
    }
    for &(index, stored) in goal_rows {
        match stored.status {
            Status::Claimed => user.set(index, stored),
            Status::Completed => {
                let progress = user.get(index).map_or(stored.progress, |derived| derived.progress);
                user.set(index, GoalProgress { progress, ..stored });
            }
            // Rows the per-stat layout never writes (another layout's): the source decides.
            Status::NotStarted | Status::InProgress => {}
        }
    }
    user
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::{FixtureShape, generate_challenges, parse};
    use crate::events::update::stat_delta;

    #[test]
    fn goal_rows_decide_claimed_and_completed_and_the_source_the_rest() {
        let config = parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap().naive_utc();
        let wins = config.stat_source("wins").unwrap();
        let state = StatState::after(None, &stat_delta(StatValues { latest_value: 3.0, inc: 0.0 }, at), at);
        let (claimed, completed) = (wins.goals[0].index, wins.goals[1].index);
        let rows = [
            (
                claimed,
                GoalProgress { progress: 77, status: Status::Claimed, completed_at: Some(at), claimed_at: Some(at) },
            ),
            (
                completed,
                GoalProgress { progress: 99, status: Status::Completed, completed_at: Some(at), claimed_at: None },
            ),
        ];
        let user = derive_user(&config, &[(wins.index, state)], &rows);
        assert_eq!(user.get(claimed).unwrap().progress, 77, "claimed goals are frozen");
        let done = user.get(completed).unwrap();
        assert_eq!((done.status, done.completed_at), (Status::Completed, Some(at)));
        assert!(done.progress < 99, "progress follows the source: {}", done.progress);
        let other = wins.goals[2].index;
        assert!(matches!(user.status(other), Status::InProgress | Status::Completed));
        let login_goal = config.login_source().unwrap().goals[0].index;
        assert_eq!(user.get(login_goal), None, "no login row: no progress");
    }
}
