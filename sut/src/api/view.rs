//! The `GET /v1/challenges` response: every configured goal merged with the caller's stored
//! progress (absent row: progress 0, `not_started`; unset timestamps: `""`).
//!
//! The view borrows the configuration's strings, so building it copies only what is per user.

use std::collections::HashMap;

use chrono::{NaiveDateTime, SecondsFormat};
use serde::Serialize;

use crate::challenges::{ChallengeConfig, Goal, Reward, RewardType};
use crate::db::{ProgressRow, Status};

/// The whole response.
#[derive(Debug, Serialize)]
pub struct ChallengesView<'a> {
    /// Every challenge, in configuration order.
    pub challenges: Vec<ChallengeView<'a>>,
}

/// One challenge.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeView<'a> {
    /// Its id.
    pub challenge_id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Display text.
    pub description: &'a str,
    /// Its goals with the caller's progress.
    pub goals: Vec<GoalView<'a>>,
}

/// One goal with the caller's progress.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalView<'a> {
    /// Its id.
    pub goal_id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Display text.
    pub description: &'a str,
    /// `stat_code >= target_value`.
    pub requirement: RequirementView<'a>,
    /// What claiming grants.
    pub reward: RewardView<'a>,
    /// Goals required first.
    pub prerequisites: &'a [String],
    /// Stored progress, or 0.
    pub progress: i32,
    /// Stored status, or `not_started`.
    pub status: Status,
    /// RFC 3339 UTC, or `""`.
    pub completed_at: String,
    /// RFC 3339 UTC, or `""`.
    pub claimed_at: String,
}

/// A goal's requirement.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementView<'a> {
    /// The stat code.
    pub stat_code: &'a str,
    /// Always `>=`.
    pub operator: &'a str,
    /// The target.
    pub target_value: i32,
}

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

/// Formats a stored UTC timestamp as RFC 3339 (`2026-11-29T10:00:00.123Z`), or `""`.
pub fn timestamp(value: Option<NaiveDateTime>) -> String {
    value.map_or_else(String::new, |t| t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Merges the configuration with one user's stored rows.
pub fn build<'a>(config: &'a ChallengeConfig, rows: &[ProgressRow]) -> ChallengesView<'a> {
    let by_goal: HashMap<&str, &ProgressRow> = rows.iter().map(|r| (r.goal_id.as_str(), r)).collect();
    let challenges = config
        .challenges()
        .iter()
        .map(|challenge| ChallengeView {
            challenge_id: &challenge.id,
            name: &challenge.name,
            description: &challenge.description,
            goals: challenge.goals.iter().map(|goal| goal_view(goal, by_goal.get(goal.id.as_str()).copied())).collect(),
        })
        .collect();
    ChallengesView { challenges }
}

fn goal_view<'a>(goal: &'a Goal, row: Option<&ProgressRow>) -> GoalView<'a> {
    GoalView {
        goal_id: &goal.id,
        name: &goal.name,
        description: &goal.description,
        requirement: RequirementView {
            stat_code: &goal.stat_code,
            operator: &goal.operator,
            target_value: goal.target_value,
        },
        reward: (&goal.reward).into(),
        prerequisites: &goal.prerequisites,
        progress: row.map_or(0, |r| r.progress),
        status: row.map_or(Status::NotStarted, |r| r.status),
        completed_at: timestamp(row.and_then(|r| r.completed_at)),
        claimed_at: timestamp(row.and_then(|r| r.claimed_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::{FixtureShape, generate_challenges, parse};

    #[test]
    fn absent_rows_are_not_started_and_stored_rows_are_merged() {
        let config = parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
        let completed = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap().naive_utc();
        let rows = vec![ProgressRow {
            goal_id: "challenge-002-goal-03".into(),
            progress: 7,
            status: Status::Completed,
            completed_at: Some(completed),
            claimed_at: None,
        }];
        let view = serde_json::to_value(build(&config, &rows)).unwrap();
        let challenges = view["challenges"].as_array().unwrap();
        assert_eq!(challenges.len(), 10);
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
    }
}
