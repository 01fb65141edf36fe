//! The fixtures a run acts with: the users (ids, tokens for an external target), the challenge
//! configuration, and the goal a stampede claims.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::FixtureError;

/// The goal `seed.claimable` names for one user, what a claim stampede claims:
/// `claimable: {user: user-000001, goal: challenge-001-goal-01}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claimable {
    /// The fixture user's id.
    pub user: String,
    /// The goal's id.
    pub goal: String,
}

/// The user ids of the users fixture at `path`.
pub fn load_users(path: &Path) -> Result<Vec<String>, FixtureError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FixtureError::Fixture(format!("{}: cannot read: {e}", path.display())))?;
    let users: Vec<sut::challenges::FixtureUser> = serde_json::from_str(&text)
        .map_err(|e| FixtureError::Fixture(format!("{}: not a users fixture: {e}", path.display())))?;
    if users.is_empty() {
        return Err(FixtureError::Fixture(format!("{}: no users", path.display())));
    }
    Ok(users.into_iter().map(|u| u.id).collect())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenEntry {
    user_id: String,
    token: String,
}

/// `count` generated user ids in `namespace` (`--seed-users`), as the fixture generator makes them.
pub fn generate_users(count: usize, namespace: &str) -> Vec<String> {
    sut::challenges::generate_users(count, namespace).into_iter().map(|u| u.id).collect()
}

/// An HS256 token for each of `users`, signed with `secret` and valid for `lifetime`.
pub fn mint_tokens(secret: &str, users: &[String], namespace: &str, lifetime: Duration) -> Vec<String> {
    users.iter().map(|u| sut::auth::mint_token(secret.as_bytes(), u, namespace, lifetime)).collect()
}

/// Each of `users`' token from `path` (`[{"userId", "token"}]`), in the same order.
pub fn load_tokens(path: &Path, users: &[String]) -> Result<Vec<String>, FixtureError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FixtureError::Fixture(format!("{}: cannot read: {e}", path.display())))?;
    let entries: Vec<TokenEntry> = serde_json::from_str(&text)
        .map_err(|e| FixtureError::Fixture(format!("{}: expected [{{\"userId\", \"token\"}}]: {e}", path.display())))?;
    let by_user: BTreeMap<String, String> = entries.into_iter().map(|e| (e.user_id, e.token)).collect();
    users
        .iter()
        .map(|u| {
            by_user
                .get(u)
                .cloned()
                .ok_or_else(|| FixtureError::Fixture(format!("{}: no token for user '{u}'", path.display())))
        })
        .collect()
}

/// The challenge configuration at `path`; an error names the file and what is wrong.
pub fn load_challenges(path: &Path) -> Result<sut::challenges::ChallengeConfig, FixtureError> {
    sut::challenges::load(path).map_err(|e| FixtureError::Fixture(e.to_string()))
}

/// The (user index, challenge, goal) `seed.claimable` names, checked against the fixtures.
pub fn stampede_target(
    challenges: &Path,
    users: &[String],
    claimable: &Claimable,
) -> Result<(usize, String, String), FixtureError> {
    let config = load_challenges(challenges)?;
    let user = users.iter().position(|u| *u == claimable.user).ok_or_else(|| {
        FixtureError::Fixture(format!("seed.claimable.user '{}' is not a fixture user", claimable.user))
    })?;
    let goal = config.goal(&claimable.goal).ok_or_else(|| {
        FixtureError::Fixture(format!("seed.claimable.goal '{}' is not a configured goal", claimable.goal))
    })?;
    Ok((user, goal.challenge_id.clone(), goal.id.clone()))
}
