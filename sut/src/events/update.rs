//! What an event changes, and how several such changes to one key coalesce into one pending
//! write, for both layouts: the per-goal [`Update`] (one per matching goal) and the per-stat
//! [`StatDelta`] (one per event). Pure functions: no I/O, no clock (the caller passes `now`).
//!
//! Semantics (SPEC §1), per (user, goal), as if events were applied one by one:
//! - absolute: progress = the latest value (negative values ignored); in progress once any value
//!   was above 0, even if a later one is 0; completed once any value
//!   reached the target, and completed stays completed;
//! - increment: progress += 1 (or a stat event's positive `inc`, truncated); with `daily`, at most
//!   one count per UTC day;
//! - daily: progress = 1 and completed on the first matching event of a day;
//! - a login event feeds every login goal as a counter (a `daily` login goal as daily);
//! - claimed rows are never modified (enforced by the store's write).

use chrono::{NaiveDate, NaiveDateTime};

use crate::challenges::{ChallengeConfig, GoalRef, GoalType};

/// A buffered change that later changes of the same key fold into.
pub trait Coalesce: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Folds a later change of the same key into this one.
    fn coalesce(&mut self, later: Self);
}

/// The largest increment one event may carry (`inc`), and the largest absolute value: beyond
/// 2^53 a double no longer holds every integer, so such values are refused as out of range.
pub const MAX_EVENT_VALUE: f64 = 9_007_199_254_740_992.0;

/// One coalescable change to a (user, goal) row. Updates of one goal are always the same variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Set progress to `value`; `reached` if any coalesced value met the target, `started` if
    /// any was above 0 (a goal once in progress stays so when a later value is 0).
    Absolute {
        /// The latest value.
        value: i32,
        /// Whether any value since the last flush met the target.
        reached: bool,
        /// Whether any value since the last flush was above 0.
        started: bool,
    },
    /// Add `delta` to progress.
    Increment {
        /// The summed increments.
        delta: i64,
    },
    /// Complete with progress 1.
    Daily,
    /// Add one per distinct UTC day later than the row's last counted day.
    DailyIncrement {
        /// Distinct days of the coalesced events, ascending.
        days: Vec<NaiveDate>,
    },
}

impl Coalesce for Update {
    fn coalesce(&mut self, later: Update) {
        match (self, later) {
            (Update::Absolute { value, reached, started }, Update::Absolute { value: v, reached: r, started: s }) => {
                *value = v;
                *reached |= r;
                *started |= s;
            }
            (Update::Increment { delta }, Update::Increment { delta: d }) => {
                *delta = clamp_delta(delta.saturating_add(d))
            }
            (Update::Daily, Update::Daily) => {}
            (Update::DailyIncrement { days }, Update::DailyIncrement { days: later_days }) => {
                for day in later_days {
                    if let Err(at) = days.binary_search(&day) {
                        days.insert(at, day);
                    }
                }
            }
            (this, later) => {
                // A goal's type never changes while the service runs; keep the later update.
                debug_assert!(false, "mismatched updates {this:?} and {later:?}");
                *this = later;
            }
        }
    }
}

/// A stat event's fields that matter.
#[derive(Debug, Clone, Copy)]
pub struct StatValues {
    /// `latest_value`.
    pub latest_value: f64,
    /// `inc` (0 when absent).
    pub inc: f64,
}

/// The updates a login event makes: every login goal.
pub fn for_login(config: &ChallengeConfig, now: NaiveDateTime) -> Vec<(GoalRef, Update)> {
    config
        .login_goals()
        .iter()
        .map(|goal| {
            let update = match (goal.goal.goal_type, goal.goal.daily) {
                (GoalType::Daily, _) => Update::Daily,
                (_, true) => Update::DailyIncrement { days: vec![now.date()] },
                (_, false) => Update::Increment { delta: 1 },
            };
            (goal.clone(), update)
        })
        .collect()
}

/// The updates a stat event makes: every statistic goal on its stat code.
pub fn for_stat(
    config: &ChallengeConfig,
    stat_code: &str,
    values: StatValues,
    now: NaiveDateTime,
) -> Vec<(GoalRef, Update)> {
    config
        .goals_for_stat(stat_code)
        .iter()
        .filter_map(|goal| stat_update(goal, values, now).map(|u| (goal.clone(), u)))
        .collect()
}

fn stat_update(goal: &GoalRef, values: StatValues, now: NaiveDateTime) -> Option<Update> {
    match goal.goal.goal_type {
        GoalType::Absolute => {
            if !values.latest_value.is_finite() || values.latest_value < 0.0 {
                return None;
            }
            // `as` saturates at i32::MAX, which is what a stored progress can hold.
            let value = values.latest_value.trunc() as i32;
            Some(Update::Absolute { value, reached: value >= goal.goal.target_value, started: value > 0 })
        }
        GoalType::Increment if goal.goal.daily => Some(Update::DailyIncrement { days: vec![now.date()] }),
        GoalType::Increment => {
            let delta = increment(values.inc)?;
            Some(Update::Increment { delta })
        }
        GoalType::Daily => Some(Update::Daily),
    }
}

/// What a stat event's `inc` adds to increment goals: 1 when absent, its integer part when at
/// least 1, nothing when negative or below 1. Clamped to what a stored progress can hold.
fn increment(inc: f64) -> Option<i64> {
    if inc == 0.0 {
        Some(1)
    } else if inc.is_finite() && inc >= 1.0 {
        Some(clamp_delta(inc.trunc() as i64))
    } else {
        None
    }
}

/// Progress is an `int`: a pending increment larger than that can never matter, and keeping it
/// there means adding it to a stored progress cannot overflow.
fn clamp_delta(delta: i64) -> i64 {
    delta.min(i64::from(i32::MAX))
}

/// The per-stat layout's pending change to one (user, source) row: what one or more events of
/// that source did, from which every goal on the source derives its progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatDelta {
    /// The latest non-negative value, truncated (absolute goals); `None`: no such value.
    pub latest: Option<i32>,
    /// The highest such value (an absolute goal completes once any value reached its target).
    pub max: Option<i32>,
    /// The summed increments (increment goals).
    pub inc: i64,
    /// The distinct UTC days of the events, ascending (daily and daily-increment goals).
    pub days: Vec<NaiveDate>,
}

impl Coalesce for StatDelta {
    fn coalesce(&mut self, later: StatDelta) {
        if later.latest.is_some() {
            self.latest = later.latest;
        }
        self.max = self.max.max(later.max);
        self.inc = clamp_delta(self.inc.saturating_add(later.inc));
        for day in later.days {
            if let Err(at) = self.days.binary_search(&day) {
                self.days.insert(at, day);
            }
        }
    }
}

/// A login event's change to its source: one count, on today.
pub fn login_delta(now: NaiveDateTime) -> StatDelta {
    StatDelta { latest: None, max: None, inc: 1, days: vec![now.date()] }
}

/// A stat event's change to its source.
pub fn stat_delta(values: StatValues, now: NaiveDateTime) -> StatDelta {
    let latest = (values.latest_value.is_finite() && values.latest_value >= 0.0)
        // `as` saturates at i32::MAX, which is what a stored progress can hold.
        .then(|| values.latest_value.trunc() as i32);
    StatDelta { latest, max: latest, inc: increment(values.inc).unwrap_or(0), days: vec![now.date()] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn absolute_keeps_the_last_value_and_remembers_reaching_the_target() {
        let mut u = Update::Absolute { value: 5, reached: false, started: true };
        u.coalesce(Update::Absolute { value: 12, reached: true, started: true });
        u.coalesce(Update::Absolute { value: 0, reached: false, started: false });
        assert_eq!(u, Update::Absolute { value: 0, reached: true, started: true });
    }

    #[test]
    fn increments_sum_and_daily_increments_keep_distinct_sorted_days() {
        let mut u = Update::Increment { delta: 2 };
        u.coalesce(Update::Increment { delta: 5 });
        assert_eq!(u, Update::Increment { delta: 7 });
        let mut d = Update::DailyIncrement { days: vec![day(28)] };
        d.coalesce(Update::DailyIncrement { days: vec![day(29)] });
        d.coalesce(Update::DailyIncrement { days: vec![day(28)] });
        d.coalesce(Update::DailyIncrement { days: vec![day(27)] });
        assert_eq!(d, Update::DailyIncrement { days: vec![day(27), day(28), day(29)] });
    }

    #[test]
    fn increments_are_clamped_to_what_progress_can_hold() {
        let mut u = Update::Increment { delta: i64::from(i32::MAX) };
        u.coalesce(Update::Increment { delta: 5 });
        assert_eq!(u, Update::Increment { delta: i64::from(i32::MAX) });
        assert_eq!(increment(1e15), Some(i64::from(i32::MAX)));
        assert_eq!((increment(0.5), increment(-3.0), increment(2.9)), (None, None, Some(2)));
    }

    #[test]
    fn stat_deltas_keep_latest_and_max_values_sum_increments_and_collect_days() {
        let at = |d: u32| day(d).and_hms_opt(12, 0, 0).unwrap();
        let mut delta = stat_delta(StatValues { latest_value: 700.9, inc: 0.0 }, at(28));
        delta.coalesce(stat_delta(StatValues { latest_value: -4.0, inc: 2.5 }, at(29)));
        assert_eq!(delta, StatDelta { latest: Some(700), max: Some(700), inc: 3, days: vec![day(28), day(29)] });
        delta.coalesce(stat_delta(StatValues { latest_value: 3.0, inc: -1.0 }, at(29)));
        assert_eq!(delta, StatDelta { latest: Some(3), max: Some(700), inc: 3, days: vec![day(28), day(29)] });
        delta.coalesce(login_delta(at(27)));
        assert_eq!(delta.days, vec![day(27), day(28), day(29)]);
        assert_eq!(delta.inc, 4);
    }
}
