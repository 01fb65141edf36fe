//! What an event does to each goal it matches, and how several such updates to one (user, goal)
//! coalesce into one pending write. Pure functions: no I/O, no clock (the caller passes `now`).
//!
//! Semantics (SPEC §1), per (user, goal), as if events were applied one by one:
//! - absolute: progress = the latest value (negative values ignored); completed once any value
//!   reached the target, and completed stays completed;
//! - increment: progress += 1 (or a stat event's positive `inc`, truncated); with `daily`, at most
//!   one count per UTC day;
//! - daily: progress = 1 and completed on the first matching event of a day;
//! - a login event feeds every login goal as a counter (a `daily` login goal as daily);
//! - claimed rows are never modified (enforced by the store's write).

use chrono::{NaiveDate, NaiveDateTime};

use crate::challenges::{ChallengeConfig, GoalRef, GoalType};

/// One coalescable change to a (user, goal) row. Updates of one goal are always the same variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Set progress to `value`; `reached` if any coalesced value met the target.
    Absolute {
        /// The latest value.
        value: i32,
        /// Whether any value since the last flush met the target.
        reached: bool,
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

impl Update {
    /// Folds a later update of the same goal into this one.
    pub fn coalesce(&mut self, later: Update) {
        match (self, later) {
            (Update::Absolute { value, reached }, Update::Absolute { value: v, reached: r }) => {
                *value = v;
                *reached |= r;
            }
            (Update::Increment { delta }, Update::Increment { delta: d }) => *delta = delta.saturating_add(d),
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
            Some(Update::Absolute { value, reached: value >= goal.goal.target_value })
        }
        GoalType::Increment if goal.goal.daily => Some(Update::DailyIncrement { days: vec![now.date()] }),
        GoalType::Increment => {
            let delta = if values.inc == 0.0 {
                1
            } else if values.inc.is_finite() && values.inc >= 1.0 {
                values.inc.trunc() as i64
            } else {
                return None; // negative or fractional-below-one increments add nothing
            };
            Some(Update::Increment { delta })
        }
        GoalType::Daily => Some(Update::Daily),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn absolute_keeps_the_last_value_and_remembers_reaching_the_target() {
        let mut u = Update::Absolute { value: 5, reached: false };
        u.coalesce(Update::Absolute { value: 12, reached: true });
        u.coalesce(Update::Absolute { value: 3, reached: false });
        assert_eq!(u, Update::Absolute { value: 3, reached: true });
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
}
