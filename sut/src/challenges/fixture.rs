//! Deterministic reference fixtures: the challenge configuration and the users list.
//!
//! The reference shape is 10 challenges × 50 goals, 100 goals on each of the five stat codes.
//! Larger shapes (more challenges or goals) come from the same rules, so results at different
//! sizes stay comparable.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The five stat codes of the reference fixture; the first is fed by login events.
pub const STAT_CODES: [&str; 5] = ["login_count", "enemy_kills", "games_played", "headshots", "wins"];

/// The size of a generated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureShape {
    /// Number of challenges.
    pub challenges: usize,
    /// Goals in each challenge.
    pub goals_per_challenge: usize,
}

impl Default for FixtureShape {
    fn default() -> Self {
        Self { challenges: 10, goals_per_challenge: 50 }
    }
}

/// One entry of the users fixture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixtureUser {
    /// The user id, `user-000001` onwards.
    pub id: String,
    /// The namespace the user belongs to.
    pub namespace: String,
}

/// The challenge configuration of `shape`, in the production file format (snake_case).
///
/// Goal `j` of a challenge uses stat code `STAT_CODES[(j-1) % 5]`. Login goals are mostly
/// counters, every fourth a daily goal and every sixth a once-a-day counter; stat goals alternate
/// between absolute thresholds (within the 0–999 range the harness sends) and counters. Every
/// tenth goal requires the goal five before it.
pub fn generate_challenges(shape: FixtureShape) -> Value {
    let challenges: Vec<Value> = (1..=shape.challenges)
        .map(|c| {
            let goals: Vec<Value> = (1..=shape.goals_per_challenge).map(|g| goal(c, g)).collect();
            json!({
                "id": challenge_id(c),
                "name": format!("Challenge {c}"),
                "description": format!("Reference challenge {c} of the load-test fixture"),
                "goals": goals,
            })
        })
        .collect();
    json!({ "challenges": challenges })
}

fn challenge_id(c: usize) -> String {
    format!("challenge-{c:03}")
}

fn goal_id(c: usize, g: usize) -> String {
    format!("challenge-{c:03}-goal-{g:02}")
}

fn goal(c: usize, g: usize) -> Value {
    let stat_code = STAT_CODES[(g - 1) % STAT_CODES.len()];
    let round = (g - 1) / STAT_CODES.len() + 1; // 1.. within this stat code
    let (goal_type, daily, source, target) = if stat_code == "login_count" {
        match round % 12 {
            0 | 4 | 8 => ("daily", false, "login", 1),
            6 => ("increment", true, "login", 1 + round % 3),
            _ => ("increment", false, "login", round * c.min(5)),
        }
    } else if round % 2 == 1 {
        ("absolute", false, "statistic", (100 * round + 13 * c) % 950 + 10)
    } else {
        ("increment", false, "statistic", round * 2 + c)
    };
    let reward = if g % 2 == 1 {
        json!({"type": "WALLET", "reward_id": if c % 2 == 1 { "GEMS" } else { "GOLD" }, "quantity": 10 * round})
    } else {
        json!({"type": "ITEM", "reward_id": format!("item-{c:03}-{g:02}"), "quantity": 1})
    };
    let prerequisites: Vec<String> = if g % 10 == 0 { vec![goal_id(c, g - 5)] } else { vec![] };
    json!({
        "id": goal_id(c, g),
        "name": format!("Goal {g}"),
        "description": format!("Reach {target} {stat_code}"),
        "type": goal_type,
        "daily": daily,
        "event_source": source,
        "requirement": {"stat_code": stat_code, "operator": ">=", "target_value": target},
        "reward": reward,
        "prerequisites": prerequisites,
    })
}

/// `count` users `user-000001`… in `namespace`.
pub fn generate_users(count: usize, namespace: &str) -> Vec<FixtureUser> {
    (1..=count).map(|i| FixtureUser { id: format!("user-{i:06}"), namespace: namespace.to_owned() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::{EventSource, parse};

    #[test]
    fn the_reference_shape_has_100_goals_on_each_stat_code_and_validates() {
        let text = generate_challenges(FixtureShape::default()).to_string();
        let config = parse("generated", &text, false).unwrap();
        assert_eq!(config.challenges().len(), 10);
        assert_eq!(config.goal_count(), 500);
        assert_eq!(config.login_goals().len(), 100);
        assert!(config.login_goals().iter().all(|g| g.goal.event_source == EventSource::Login));
        for code in &STAT_CODES[1..] {
            assert_eq!(config.goals_for_stat(code).len(), 100, "{code}");
        }
        let all = config.challenges().iter().flat_map(|c| &c.goals);
        assert!(all.clone().all(|g| g.target_value < 1000));
    }

    #[test]
    fn the_committed_fixture_is_the_generated_one() {
        let committed: Value = serde_json::from_str(include_str!("../../../fixtures/challenges.json")).unwrap();
        assert_eq!(committed, generate_challenges(FixtureShape::default()));
    }
}
