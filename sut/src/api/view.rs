//! The `GET /v1/challenges` response: every configured goal merged with the caller's progress
//! (none: progress 0, `not_started`; unset timestamps: `""`).
//!
//! Everything but progress, status and the two timestamps comes from the configuration and never
//! changes, so [`ViewTemplate`] renders it to JSON once, at start-up, as one fragment per goal;
//! a request copies the fragments and writes only the per-user values between them.

use chrono::{Datelike, NaiveDateTime, SecondsFormat, Timelike};
use serde::Serialize;

use crate::challenges::{ChallengeConfig, Goal, Reward, RewardType};
use crate::db::Status;
use crate::events::store::UserProgress;

/// A goal's reward, as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewardView<'a> {
    /// ITEM or WALLET.
    #[serde(rename = "type")]
    pub reward_type: RewardType,
    /// Item id or currency code.
    pub reward_id: &'a str,
    /// Amount.
    pub quantity: i32,
}

impl<'a> From<&'a Reward> for RewardView<'a> {
    fn from(reward: &'a Reward) -> Self {
        Self { reward_type: reward.reward_type, reward_id: &reward.reward_id, quantity: reward.quantity }
    }
}

/// The configuration part of one goal: every field before `progress`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GoalHead<'a> {
    goal_id: &'a str,
    name: &'a str,
    description: &'a str,
    requirement: Requirement<'a>,
    reward: RewardView<'a>,
    prerequisites: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Requirement<'a> {
    stat_code: &'a str,
    operator: &'a str,
    target_value: i32,
}

/// The challenge's fields before its goals.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeHead<'a> {
    challenge_id: &'a str,
    name: &'a str,
    description: &'a str,
}

/// The response's configuration part, rendered once.
#[derive(Debug, Clone)]
pub struct ViewTemplate {
    /// Per goal in configuration order: its dense index and the JSON before its progress value.
    fragments: Vec<(u32, String)>,
    /// Closes the last challenge and the document.
    tail: &'static str,
    /// Bytes of the fragments and the tail.
    static_len: usize,
}

/// The most a goal's per-user part takes: progress, the longest status, two timestamps.
const PER_GOAL_MAX: usize = 11 + 24 + 2 * (16 + 30) + 2;

impl ViewTemplate {
    /// Renders the configuration part of the response.
    pub fn new(config: &ChallengeConfig) -> Self {
        let mut fragments = Vec::with_capacity(config.goal_count());
        let mut index = 0u32;
        for (ci, challenge) in config.challenges().iter().enumerate() {
            let head = serde_json::to_string(&ChallengeHead {
                challenge_id: &challenge.id,
                name: &challenge.name,
                description: &challenge.description,
            })
            .expect("strings serialise");
            let open = if ci == 0 { "{\"challenges\":[" } else { "]}," };
            let mut prefix = format!("{open}{},\"goals\":[", &head[..head.len() - 1]);
            for (gi, goal) in challenge.goals.iter().enumerate() {
                if gi > 0 {
                    prefix.push(',');
                }
                let head = serde_json::to_string(&goal_head(goal)).expect("strings serialise");
                prefix.push_str(&head[..head.len() - 1]);
                prefix.push_str(",\"progress\":");
                fragments.push((index, std::mem::take(&mut prefix)));
                index += 1;
            }
        }
        let tail = if fragments.is_empty() { "{\"challenges\":[]}" } else { "]}]}" };
        let static_len = fragments.iter().map(|(_, f)| f.len()).sum::<usize>() + tail.len();
        Self { fragments, tail, static_len }
    }

    /// The whole response for a user with `progress`.
    pub fn render(&self, progress: &UserProgress) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.static_len + self.fragments.len() * PER_GOAL_MAX);
        let mut numbers = itoa::Buffer::new();
        for (index, fragment) in &self.fragments {
            out.extend_from_slice(fragment.as_bytes());
            let goal = progress.get(*index);
            out.extend_from_slice(numbers.format(goal.map_or(0, |g| g.progress)).as_bytes());
            out.extend_from_slice(b",\"status\":\"");
            out.extend_from_slice(goal.map_or(Status::NotStarted, |g| g.status).as_str().as_bytes());
            out.extend_from_slice(b"\",\"completedAt\":\"");
            write_timestamp(&mut out, goal.and_then(|g| g.completed_at));
            out.extend_from_slice(b"\",\"claimedAt\":\"");
            write_timestamp(&mut out, goal.and_then(|g| g.claimed_at));
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(self.tail.as_bytes());
        out
    }
}

fn goal_head(goal: &Goal) -> GoalHead<'_> {
    GoalHead {
        goal_id: &goal.id,
        name: &goal.name,
        description: &goal.description,
        requirement: Requirement {
            stat_code: &goal.stat_code,
            operator: &goal.operator,
            target_value: goal.target_value,
        },
        reward: (&goal.reward).into(),
        prerequisites: &goal.prerequisites,
    }
}

/// Formats a stored UTC timestamp as RFC 3339 (`2026-11-29T10:00:00.123Z`), or `""`.
pub fn timestamp(value: Option<NaiveDateTime>) -> String {
    value.map_or_else(String::new, |t| t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Appends what [`timestamp`] returns, digit by digit (this runs for up to two timestamps per
/// goal and request).
fn write_timestamp(out: &mut Vec<u8>, value: Option<NaiveDateTime>) {
    let Some(t) = value else { return };
    let nanos = t.nanosecond();
    let Ok(year) = u32::try_from(t.year()) else {
        out.extend_from_slice(timestamp(Some(t)).as_bytes());
        return;
    };
    if year > 9999 || nanos >= 1_000_000_000 {
        out.extend_from_slice(timestamp(Some(t)).as_bytes());
        return;
    }
    let mut text = [0u8; 30];
    let mut at = 0;
    let mut digits = |value: u32, width: u32| {
        for place in (0..width).rev() {
            text[at] = b'0' + u8::try_from(value / 10u32.pow(place) % 10).expect("a digit");
            at += 1;
        }
    };
    digits(year, 4);
    digits(t.month(), 2);
    digits(t.day(), 2);
    digits(t.hour(), 2);
    digits(t.minute(), 2);
    digits(t.second(), 2);
    // AutoSi: no fraction, or the fewest of 3, 6 or 9 digits that hold it exactly.
    if nanos % 1_000_000 == 0 && nanos != 0 {
        digits(nanos / 1_000_000, 3);
    } else if nanos % 1_000 == 0 && nanos != 0 {
        digits(nanos / 1_000, 6);
    } else if nanos != 0 {
        digits(nanos, 9);
    }
    let fraction = &text[14..at];
    let d = &text[..14];
    out.extend_from_slice(&[d[0], d[1], d[2], d[3], b'-', d[4], d[5], b'-', d[6], d[7], b'T']);
    out.extend_from_slice(&[d[8], d[9], b':', d[10], d[11], b':', d[12], d[13]]);
    if !fraction.is_empty() {
        out.push(b'.');
        out.extend_from_slice(fraction);
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::{FixtureShape, generate_challenges, parse};
    use crate::events::store::GoalProgress;

    #[test]
    fn absent_progress_is_not_started_and_stored_progress_is_merged() {
        let config = parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
        let completed = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc();
        let mut progress = UserProgress::empty(config.goal_count());
        let index = config.goal_position("challenge-002-goal-03").unwrap();
        let row =
            GoalProgress { progress: 7, status: Status::Completed, completed_at: Some(completed), claimed_at: None };
        progress.set(index, row);
        let view: serde_json::Value = serde_json::from_slice(&ViewTemplate::new(&config).render(&progress)).unwrap();
        let challenges = view["challenges"].as_array().unwrap();
        assert_eq!(challenges.len(), 10);
        assert_eq!(challenges[0]["challengeId"], "challenge-001");
        assert_eq!(challenges[0]["goals"].as_array().unwrap().len(), 50);
        let first = &challenges[0]["goals"][0];
        assert_eq!(first["status"], "not_started");
        assert_eq!(first["progress"], 0);
        assert_eq!(first["completedAt"], "");
        let merged = &challenges[1]["goals"][2];
        assert_eq!(merged["goalId"], "challenge-002-goal-03");
        assert_eq!(merged["progress"], 7);
        assert_eq!(merged["status"], "completed");
        assert_eq!(merged["completedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(merged["claimedAt"], "");
        assert_eq!(merged["requirement"]["statCode"], "games_played");
        assert_eq!(merged["requirement"]["operator"], ">=");
        assert!(merged["reward"]["type"] == "ITEM" || merged["reward"]["type"] == "WALLET");
        assert!(merged["reward"]["rewardId"].is_string());
        assert!(merged["prerequisites"].is_array());
    }

    #[test]
    fn the_fast_timestamp_equals_chronos_rfc3339() {
        let base = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap().naive_utc();
        for nanos in [0, 5_000_000, 123_000_000, 123_456_000, 1_000, 123_456_789, 7] {
            let t = base + chrono::Duration::nanoseconds(nanos);
            let mut out = Vec::new();
            write_timestamp(&mut out, Some(t));
            assert_eq!(String::from_utf8(out).unwrap(), timestamp(Some(t)), "{nanos} ns");
        }
    }

    #[test]
    fn configuration_strings_are_escaped_once_at_start_up() {
        let mut value = generate_challenges(FixtureShape::default());
        value["challenges"][0]["name"] = "quote \" and \\ and é <tag>".into();
        value["challenges"][0]["goals"][0]["description"] = "line\nbreak".into();
        let config = parse("f", &value.to_string(), false).unwrap();
        let body = ViewTemplate::new(&config).render(&UserProgress::empty(config.goal_count()));
        let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(view["challenges"][0]["name"], "quote \" and \\ and é <tag>");
        assert_eq!(view["challenges"][0]["goals"][0]["description"], "line\nbreak");
    }
}
