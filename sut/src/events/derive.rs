//! The per-stat layout's rules (SPEC §1): what one (user, source) row holds, how a pending
//! [`StatDelta`] moves it, and how every goal on the source derives its progress and completion
//! from it. Pure functions, shared by the flush (which goals did this batch complete?) and the
//! reads (the `GET` view, the claim).
//!
//! A goal follows its source by one of four [`Rule`]s:
//! - `Latest` (absolute stat goals): progress is the last received non-negative value; completed once any
//!   value reached the target (the row's `max_value`);
//! - `Total` (increment goals, and every non-daily login goal): progress is the running total;
//! - `Days` (daily increment goals): progress is the number of distinct UTC days with an event;
//! - `Daily` (daily goals): progress 1 and completed from the first event on.
//!
//! Totals and day counts only grow and `max_value` never falls, so "completed stays completed"
//! holds by construction; claimed goals are frozen in their `user_goal_progress` row.

use chrono::{NaiveDate, NaiveDateTime};

use super::update::StatDelta;
use crate::challenges::{EventSource, Goal, GoalType};

/// One stored (user, source) row of the per-stat layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatState {
    /// The latest non-negative value, truncated.
    pub latest: Option<i32>,
    /// The highest such value.
    pub max: Option<i32>,
    /// The running total of increments, at most `i32::MAX` (what a progress can hold).
    pub total: i64,
    /// Distinct UTC days with an event.
    pub day_count: i32,
    /// The latest such day.
    pub last_day: Option<NaiveDate>,
    /// When the first event of this source was received.
    pub first_event_at: NaiveDateTime,
    /// When the latest one was.
    pub updated_at: NaiveDateTime,
}

impl StatState {
    /// The row after `delta` (events received up to `event_at`) was applied to `old`.
    pub fn after(old: Option<&StatState>, delta: &StatDelta, event_at: NaiveDateTime) -> StatState {
        let last_day = old.and_then(|o| o.last_day);
        let new_days = delta.days.iter().filter(|d| last_day.is_none_or(|last| **d > last)).count();
        let new_days = i32::try_from(new_days).unwrap_or(i32::MAX);
        // The latest value is the last received, not the last written: a replica may write an
        // earlier event after another wrote a later one.
        let old_latest = old.and_then(|o| o.latest);
        let newer = old.is_none_or(|o| event_at >= o.updated_at);
        StatState {
            latest: if newer { delta.latest.or(old_latest) } else { old_latest.or(delta.latest) },
            max: delta.max.max(old.and_then(|o| o.max)),
            total: (old.map_or(0, |o| o.total) + delta.inc).min(i64::from(i32::MAX)),
            day_count: old.map_or(0, |o| o.day_count).saturating_add(new_days),
            last_day: last_day.max(delta.days.last().copied()),
            first_event_at: old.map_or(event_at, |o| o.first_event_at),
            updated_at: old.map_or(event_at, |o| o.updated_at.max(event_at)),
        }
    }
}

/// How a goal follows its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The latest value; completed once the highest value reached the target.
    Latest,
    /// The running total.
    Total,
    /// Distinct days with an event.
    Days,
    /// 1 and completed from the first event on.
    Daily,
}

impl Rule {
    /// The rule of `goal` (a login event adds 1 to every login goal whatever its type).
    pub fn of(goal: &Goal) -> Rule {
        match (goal.event_source, goal.goal_type, goal.daily) {
            (_, GoalType::Daily, _) => Rule::Daily,
            (EventSource::Login, _, true) | (EventSource::Statistic, GoalType::Increment, true) => Rule::Days,
            (EventSource::Login, _, false) | (EventSource::Statistic, GoalType::Increment, false) => Rule::Total,
            (EventSource::Statistic, GoalType::Absolute, _) => Rule::Latest,
        }
    }
}

/// A goal's progress and whether it is completed, derived from its source's row.
pub fn progress(goal: &Goal, state: &StatState) -> (i32, bool) {
    let target = goal.target_value;
    match Rule::of(goal) {
        Rule::Latest => (state.latest.unwrap_or(0), state.max.is_some_and(|m| m >= target)),
        Rule::Total => {
            let total = i32::try_from(state.total).unwrap_or(i32::MAX);
            (total, total >= target)
        }
        Rule::Days => (state.day_count, state.day_count >= target),
        Rule::Daily => (i32::from(state.day_count > 0), state.day_count > 0),
    }
}

/// Whether the goal ever made progress: an absolute goal stays in progress when its latest
/// value falls back to 0 after a higher one.
pub fn started(goal: &Goal, state: &StatState) -> bool {
    match Rule::of(goal) {
        Rule::Latest => state.max.is_some_and(|m| m > 0),
        Rule::Total | Rule::Days | Rule::Daily => progress(goal, state).0 > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::parse;
    use crate::events::update::{StatValues, login_delta, stat_delta};

    const CONFIG: &str = r#"{"challenges":[{"id":"c","name":"C","goals":[
     {"id":"abs","name":"n","type":"absolute","requirement":{"stat_code":"wins","target_value":50},"reward":{"type":"ITEM","reward_id":"r","quantity":1}},
     {"id":"inc","name":"n","type":"increment","requirement":{"stat_code":"wins","target_value":3},"reward":{"type":"ITEM","reward_id":"r","quantity":1}},
     {"id":"days","name":"n","type":"increment","daily":true,"requirement":{"stat_code":"wins","target_value":2},"reward":{"type":"ITEM","reward_id":"r","quantity":1}},
     {"id":"daily","name":"n","type":"daily","requirement":{"stat_code":"wins","target_value":1},"reward":{"type":"ITEM","reward_id":"r","quantity":1}},
     {"id":"login-abs","name":"n","type":"absolute","event_source":"login","requirement":{"stat_code":"login_count","target_value":2},"reward":{"type":"ITEM","reward_id":"r","quantity":1}}]}]}"#;

    fn at(day: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap().and_hms_opt(8, 0, 0).unwrap()
    }

    fn goal<'a>(config: &'a crate::challenges::ChallengeConfig, id: &str) -> &'a Goal {
        config.goal(id).unwrap()
    }

    #[test]
    fn each_goal_type_derives_from_one_row() {
        let config = parse("c", CONFIG, false).unwrap();
        let event = |value: f64, inc: f64, day: u32| stat_delta(StatValues { latest_value: value, inc }, at(day));
        let s1 = StatState::after(None, &event(60.0, 0.0, 28), at(28));
        assert_eq!(progress(goal(&config, "abs"), &s1), (60, true));
        assert_eq!(progress(goal(&config, "inc"), &s1), (1, false));
        assert_eq!(progress(goal(&config, "days"), &s1), (1, false));
        assert_eq!(progress(goal(&config, "daily"), &s1), (1, true));
        // A lower value later: absolute progress follows it, completion stays.
        let s2 = StatState::after(Some(&s1), &event(7.0, 2.0, 28), at(28));
        assert_eq!(progress(goal(&config, "abs"), &s2), (7, true));
        assert_eq!(progress(goal(&config, "inc"), &s2), (3, true));
        assert_eq!(progress(goal(&config, "days"), &s2), (1, false), "same day counts once");
        // A negative value is ignored by absolute goals but still counts for the others.
        let s3 = StatState::after(Some(&s2), &event(-1.0, 0.0, 29), at(29));
        assert_eq!(progress(goal(&config, "abs"), &s3), (7, true));
        assert_eq!(progress(goal(&config, "inc"), &s3), (4, true));
        assert_eq!(progress(goal(&config, "days"), &s3), (2, true));
        assert_eq!((s3.first_event_at, s3.updated_at), (at(28), at(29)));
    }

    #[test]
    fn login_goals_count_whatever_their_type_and_days_before_the_last_are_not_recounted() {
        let config = parse("c", CONFIG, false).unwrap();
        let s1 = StatState::after(None, &login_delta(at(28)), at(28));
        assert_eq!(progress(goal(&config, "login-abs"), &s1), (1, false));
        let s2 = StatState::after(Some(&s1), &login_delta(at(27)), at(28));
        assert_eq!(progress(goal(&config, "login-abs"), &s2), (2, true));
        assert_eq!(s2.day_count, 1, "a day before the last counted one adds nothing");
    }

    #[test]
    fn absolute_goals_without_a_value_have_no_progress() {
        let config = parse("c", CONFIG, false).unwrap();
        let s = StatState::after(None, &stat_delta(StatValues { latest_value: -3.0, inc: 0.5 }, at(28)), at(28));
        assert_eq!(progress(goal(&config, "abs"), &s), (0, false));
        assert_eq!(progress(goal(&config, "inc"), &s), (0, false), "an inc below 1 adds nothing");
    }
}
