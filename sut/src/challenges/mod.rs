//! The challenge configuration: challenges, their goals, and the indexes the services need.
//!
//! The configuration is loaded once at start-up ([`load`]) and shared read-only. Loading parses
//! JSON or YAML into loose records first, then validates them into the typed model here, so a bad
//! file is reported with its file name, challenge, goal and field rather than a serde position.

mod fixture;
mod load;

pub use fixture::{FixtureShape, FixtureUser, STAT_CODES, generate_challenges, generate_users};
pub use load::{ConfigError, load, parse};

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How a goal's progress follows the events that match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoalType {
    /// Progress is the stat's latest value.
    Absolute,
    /// Progress counts matching events (or sums a stat event's `inc`).
    Increment,
    /// Completed by the first matching event of a UTC day.
    Daily,
}

/// Which event stream feeds a goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// `UserLoggedIn` events.
    Login,
    /// `StatItemUpdated` events whose stat code equals the goal's.
    Statistic,
}

/// The kind of reward a goal grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RewardType {
    /// An entitlement (item) granted through the platform's entitlement API.
    Item,
    /// Virtual currency credited to a wallet.
    Wallet,
}

/// What claiming a goal grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// ITEM or WALLET.
    pub reward_type: RewardType,
    /// The item id, or the wallet's currency code.
    pub reward_id: String,
    /// How many items, or how much currency.
    pub quantity: i32,
}

/// One goal of a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// Unique across the whole configuration.
    pub id: String,
    /// The challenge this goal belongs to.
    pub challenge_id: String,
    /// Display name.
    pub name: String,
    /// Display text.
    pub description: String,
    /// How progress follows events.
    pub goal_type: GoalType,
    /// For `increment` goals: count at most once per UTC day.
    pub daily: bool,
    /// Which event stream feeds it.
    pub event_source: EventSource,
    /// The stat code of the requirement.
    pub stat_code: String,
    /// Always `>=` (validated).
    pub operator: String,
    /// Progress needed to complete, > 0.
    pub target_value: i32,
    /// What claiming grants.
    pub reward: Reward,
    /// Goal ids that must be completed or claimed before this one can be claimed.
    pub prerequisites: Vec<String>,
}

/// One challenge and its goals, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Unique challenge id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Display text.
    pub description: String,
    /// Goals in configuration order.
    pub goals: Vec<Goal>,
}

/// A validated configuration with lookup indexes, shared by every request and event.
#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    challenges: Vec<Challenge>,
    goal_index: HashMap<String, (usize, usize, u32)>,
    goals: Vec<GoalRef>,
    stat_goals: HashMap<String, Vec<GoalRef>>,
    login_goals: Vec<GoalRef>,
    sources: Vec<Source>,
    stat_sources: HashMap<String, u32>,
    login_source: Option<u32>,
}

/// The longest id, stat code or user id the schema stores (`varchar(100)`).
pub const MAX_ID_CHARS: usize = 100;

/// Why the schema cannot store an id (configuration ids, user ids and stat codes alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    /// More than [`MAX_ID_CHARS`] characters (this many).
    TooLong(usize),
    /// It contains this control character.
    Control(char),
}

/// What keeps the schema from storing `value`, if anything.
pub fn id_problem(value: &str) -> Option<IdProblem> {
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Some(IdProblem::TooLong(chars));
    }
    value.chars().find(|c| c.is_control()).map(IdProblem::Control)
}

/// One stream of values that goals follow: login events, or stat events of one stat code. The
/// per-stat layout keeps one row per user and source; its `stat_code` column is `""` for logins
/// (an empty stat code is refused at the door, so it cannot name a real stat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Dense index (0..source_count).
    pub index: u32,
    /// The stored stat code: the events' stat code, or `""` for login events.
    pub stat_code: Arc<str>,
    /// Login events or stat events.
    pub event_source: EventSource,
    /// The goals this source feeds.
    pub goals: Vec<GoalRef>,
}

/// A shared handle on a goal with its dense index (0..goal_count), for per-goal bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalRef {
    /// Position in configuration order across all challenges.
    pub index: u32,
    /// The goal.
    pub goal: Arc<Goal>,
}

impl ChallengeConfig {
    /// Builds the indexes. Callers pass challenges that [`load`] validated (ids unique).
    fn new(challenges: Vec<Challenge>) -> Self {
        let mut goal_index = HashMap::new();
        let mut goals = Vec::new();
        let mut stat_goals: HashMap<String, Vec<GoalRef>> = HashMap::new();
        let mut login_goals = Vec::new();
        for (ci, challenge) in challenges.iter().enumerate() {
            for (gi, goal) in challenge.goals.iter().enumerate() {
                let index = u32::try_from(goal_index.len()).expect("fewer than 4 billion goals");
                goal_index.insert(goal.id.clone(), (ci, gi, index));
                let shared = GoalRef { index, goal: Arc::new(goal.clone()) };
                goals.push(shared.clone());
                match goal.event_source {
                    EventSource::Login => login_goals.push(shared),
                    EventSource::Statistic => stat_goals.entry(goal.stat_code.clone()).or_default().push(shared),
                }
            }
        }
        let mut sources = Vec::new();
        let mut push = |stat_code: &str, event_source, goals: &[GoalRef]| {
            let index = u32::try_from(sources.len()).expect("fewer than 4 billion sources");
            sources.push(Source { index, stat_code: stat_code.into(), event_source, goals: goals.to_vec() });
            index
        };
        let login_source = (!login_goals.is_empty()).then(|| push("", EventSource::Login, &login_goals));
        let mut codes: Vec<&String> = stat_goals.keys().collect();
        codes.sort();
        let stat_sources = codes
            .into_iter()
            .map(|code| (code.clone(), push(code, EventSource::Statistic, &stat_goals[code])))
            .collect();
        Self { challenges, goal_index, goals, stat_goals, login_goals, sources, stat_sources, login_source }
    }

    /// Every challenge, in configuration order.
    pub fn challenges(&self) -> &[Challenge] {
        &self.challenges
    }

    /// The goal with this id, if configured.
    pub fn goal(&self, goal_id: &str) -> Option<&Goal> {
        self.goal_index.get(goal_id).map(|&(ci, gi, _)| &self.challenges[ci].goals[gi])
    }

    /// The challenge with this id, if configured.
    pub fn challenge(&self, challenge_id: &str) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.id == challenge_id)
    }

    /// Goals fed by stat events with this stat code.
    pub fn goals_for_stat(&self, stat_code: &str) -> &[GoalRef] {
        self.stat_goals.get(stat_code).map_or(&[], Vec::as_slice)
    }

    /// Goals fed by login events.
    pub fn login_goals(&self) -> &[GoalRef] {
        &self.login_goals
    }

    /// How many goals are configured in all.
    pub fn goal_count(&self) -> usize {
        self.goal_index.len()
    }

    /// Every goal by its dense index.
    pub fn goal_refs(&self) -> &[GoalRef] {
        &self.goals
    }

    /// The dense index of the goal with this id.
    pub fn goal_position(&self, goal_id: &str) -> Option<u32> {
        self.goal_index.get(goal_id).map(|&(_, _, index)| index)
    }

    /// Every source (login events, each stat code with goals), by index.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The source fed by stat events of `stat_code`, if any goal follows it.
    pub fn stat_source(&self, stat_code: &str) -> Option<&Source> {
        self.stat_sources.get(stat_code).map(|&i| &self.sources[i as usize])
    }

    /// The source fed by login events, if any goal follows them.
    pub fn login_source(&self) -> Option<&Source> {
        self.login_source.map(|i| &self.sources[i as usize])
    }

    /// The source with this stored stat code (`""`: logins).
    pub fn source_by_code(&self, stored_code: &str) -> Option<&Source> {
        if stored_code.is_empty() { self.login_source() } else { self.stat_source(stored_code) }
    }
}
