//! Parsing and validating a challenge configuration file (JSON or YAML).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::{
    Challenge, ChallengeConfig, EventSource, Goal, GoalType, IdProblem, MAX_ID_CHARS, Reward, RewardType, id_problem,
};

/// Why a configuration could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not well-formed JSON/YAML of the expected shape.
    #[error("{file}: cannot parse: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value breaks a rule.
    #[error("{file}: {location}field `{field}`: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// `challenge 'x', goal 'y', ` (as far as known).
        location: String,
        /// The offending field, e.g. `requirement.target_value`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    challenges: Vec<RawChallenge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChallenge {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    goals: Vec<RawGoal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(rename = "type")]
    goal_type: Option<String>,
    #[serde(default)]
    daily: bool,
    event_source: Option<String>,
    requirement: Option<RawRequirement>,
    reward: Option<RawReward>,
    #[serde(default)]
    prerequisites: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    stat_code: Option<String>,
    operator: Option<String>,
    target_value: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReward {
    #[serde(rename = "type")]
    reward_type: Option<String>,
    reward_id: Option<String>,
    quantity: Option<i64>,
}

/// Reads and validates the configuration at `path` (`.yaml`/`.yml` as YAML, anything else JSON).
pub fn load(path: &Path) -> Result<ChallengeConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    parse(&file, &text, yaml)
}

/// Validates configuration text; `file` is the name used in errors.
///
/// Text that is not JSON (YAML) at all is a parse error with its position. Text that is, but
/// whose values have the wrong shape (a string where a number belongs, an unknown field), is an
/// error naming the challenge, the goal and the field, with the position too.
pub fn parse(file: &str, text: &str, yaml: bool) -> Result<ChallengeConfig, ConfigError> {
    let document: serde_json::Value = if yaml {
        serde_yaml::from_str(text).map_err(|e| parse_error(file, e))?
    } else {
        serde_json::from_str(text).map_err(|e| parse_error(file, e))?
    };
    let raw: RawFile = if yaml {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
            .map_err(|e| shape_error(file, &document, e.path(), e.inner()))?
    } else {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
            .map_err(|e| shape_error(file, &document, e.path(), e.inner()))?
    };
    Validator { file, ids: HashSet::new() }.run(raw)
}

fn parse_error(file: &str, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::Parse { file: file.to_owned(), message: error.to_string() }
}

/// A value of the wrong shape at `path`, located by challenge and goal (their ids read from
/// `document` where it has them, their positions otherwise).
fn shape_error(
    file: &str,
    document: &serde_json::Value,
    path: &serde_path_to_error::Path,
    error: &dyn std::fmt::Display,
) -> ConfigError {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut location = String::new();
    let mut rest = segments.as_slice();
    let mut node = document;
    for (list, what) in [("challenges", "challenge"), ("goals", "goal")] {
        let [Segment::Map { key }, Segment::Seq { index }, tail @ ..] = rest else { break };
        if key != list {
            break;
        }
        node = &node[list][*index];
        match node.get("id").and_then(serde_json::Value::as_str) {
            Some(id) if !tail.is_empty() && !matches!(tail, [Segment::Map { key }] if key == "id") => {
                location.push_str(&format!("{what} '{id}', "));
            }
            _ => location.push_str(&format!("{what} #{}, ", index + 1)),
        }
        rest = tail;
    }
    let field = rest
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { .. } | Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect::<Vec<_>>()
        .join(".");
    let field = if field.is_empty() { "?".to_owned() } else { field };
    ConfigError::Invalid { file: file.to_owned(), location, field, problem: error.to_string() }
}

struct Validator<'a> {
    file: &'a str,
    ids: HashSet<String>,
}

impl Validator<'_> {
    fn run(mut self, raw: RawFile) -> Result<ChallengeConfig, ConfigError> {
        if raw.challenges.is_empty() {
            return Err(self.invalid("", "challenges", "must list at least one challenge"));
        }
        let mut challenge_ids = HashSet::new();
        let mut challenges = Vec::with_capacity(raw.challenges.len());
        for (index, rc) in raw.challenges.into_iter().enumerate() {
            let at = format!("challenge #{}, ", index + 1);
            let id = self.identifier(&at, "id", rc.id)?;
            let at = format!("challenge '{id}', ");
            if !challenge_ids.insert(id.clone()) {
                return Err(self.invalid(&at, "id", "is used by another challenge"));
            }
            let name = self.required(&at, "name", rc.name)?;
            if rc.goals.is_empty() {
                return Err(self.invalid(&at, "goals", "must list at least one goal"));
            }
            let goals = rc
                .goals
                .into_iter()
                .enumerate()
                .map(|(gi, rg)| self.goal(&id, gi, rg))
                .collect::<Result<Vec<_>, _>>()?;
            challenges.push(Challenge { id, name, description: rc.description, goals });
        }
        self.check_prerequisites(&challenges)?;
        self.check_cycles(&challenges)?;
        Ok(ChallengeConfig::new(challenges))
    }

    fn goal(&mut self, challenge_id: &str, index: usize, rg: RawGoal) -> Result<Goal, ConfigError> {
        let at = format!("challenge '{challenge_id}', goal #{}, ", index + 1);
        let id = self.identifier(&at, "id", rg.id)?;
        let at = format!("challenge '{challenge_id}', goal '{id}', ");
        if !self.ids.insert(id.clone()) {
            return Err(self.invalid(&at, "id", "is used by another goal"));
        }
        let name = self.required(&at, "name", rg.name)?;
        let goal_type = match rg.goal_type.as_deref().unwrap_or("absolute") {
            "absolute" => GoalType::Absolute,
            "increment" => GoalType::Increment,
            "daily" => GoalType::Daily,
            other => {
                return Err(self.invalid(&at, "type", &format!("'{other}' is not one of absolute, increment, daily")));
            }
        };
        let event_source = match rg.event_source.as_deref().unwrap_or("statistic") {
            "login" => EventSource::Login,
            "statistic" => EventSource::Statistic,
            other => {
                return Err(self.invalid(&at, "event_source", &format!("'{other}' is not one of login, statistic")));
            }
        };
        let requirement = rg.requirement.ok_or_else(|| self.invalid(&at, "requirement", "is missing"))?;
        let stat_code = self.identifier(&at, "requirement.stat_code", requirement.stat_code)?;
        let operator = requirement.operator.unwrap_or_else(|| ">=".to_owned());
        if operator != ">=" {
            return Err(self.invalid(
                &at,
                "requirement.operator",
                &format!("'{operator}' is not supported (only '>=')"),
            ));
        }
        let target_value = self.positive(&at, "requirement.target_value", requirement.target_value)?;
        let reward = rg.reward.ok_or_else(|| self.invalid(&at, "reward", "is missing"))?;
        let reward_type = match reward.reward_type.as_deref() {
            Some("ITEM") => RewardType::Item,
            Some("WALLET") => RewardType::Wallet,
            Some(other) => {
                return Err(self.invalid(&at, "reward.type", &format!("'{other}' is not one of ITEM, WALLET")));
            }
            None => return Err(self.invalid(&at, "reward.type", "is missing")),
        };
        let reward_id = self.required(&at, "reward.reward_id", reward.reward_id)?;
        let quantity = self.positive(&at, "reward.quantity", reward.quantity)?;
        Ok(Goal {
            id,
            challenge_id: challenge_id.to_owned(),
            name,
            description: rg.description,
            goal_type,
            daily: rg.daily,
            event_source,
            stat_code,
            operator,
            target_value,
            reward: Reward { reward_type, reward_id, quantity },
            prerequisites: rg.prerequisites,
        })
    }

    /// Refuses a chain of prerequisites that leads back to where it started: none of its goals
    /// could ever be claimed.
    fn check_cycles(&self, challenges: &[Challenge]) -> Result<(), ConfigError> {
        let goals: HashMap<&str, &Goal> =
            challenges.iter().flat_map(|c| &c.goals).map(|g| (g.id.as_str(), g)).collect();
        // 0: not seen, 1: on the current path, 2: done (no cycle through it).
        let mut state: HashMap<&str, u8> = HashMap::new();
        for goal in challenges.iter().flat_map(|c| &c.goals) {
            let mut path: Vec<&str> = Vec::new();
            if let Some(cycle) = find_cycle(&goals, goal.id.as_str(), &mut state, &mut path) {
                let first = goals[cycle[0]];
                let at = format!("challenge '{}', goal '{}', ", first.challenge_id, first.id);
                let chain: Vec<String> = cycle.iter().map(|id| format!("'{id}'")).collect();
                return Err(self.invalid(
                    &at,
                    "prerequisites",
                    &format!("{} is a cycle: none of them could ever be claimed", chain.join(" → ")),
                ));
            }
        }
        Ok(())
    }

    fn check_prerequisites(&self, challenges: &[Challenge]) -> Result<(), ConfigError> {
        for goal in challenges.iter().flat_map(|c| &c.goals) {
            for prerequisite in &goal.prerequisites {
                let at = format!("challenge '{}', goal '{}', ", goal.challenge_id, goal.id);
                if prerequisite == &goal.id {
                    return Err(self.invalid(&at, "prerequisites", "a goal cannot require itself"));
                }
                if !self.ids.contains(prerequisite) {
                    return Err(self.invalid(
                        &at,
                        "prerequisites",
                        &format!("'{prerequisite}' is not a configured goal"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn required(&self, at: &str, field: &str, value: Option<String>) -> Result<String, ConfigError> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.invalid(at, field, "is missing or empty")),
        }
    }

    /// A required id the database stores: at most [`MAX_ID_CHARS`] characters, no control
    /// characters.
    fn identifier(&self, at: &str, field: &str, value: Option<String>) -> Result<String, ConfigError> {
        let value = self.required(at, field, value)?;
        match id_problem(&value) {
            Some(IdProblem::TooLong(chars)) => Err(self.invalid(
                at,
                field,
                &format!("has {chars} characters; the schema stores at most {MAX_ID_CHARS}"),
            )),
            Some(IdProblem::Control(_)) => Err(self.invalid(at, field, "contains a control character")),
            None => Ok(value),
        }
    }

    fn positive(&self, at: &str, field: &str, value: Option<i64>) -> Result<i32, ConfigError> {
        match value {
            None => Err(self.invalid(at, field, "is missing")),
            Some(v) if v <= 0 => Err(self.invalid(at, field, &format!("must be > 0, got {v}"))),
            Some(v) => i32::try_from(v).map_err(|_| self.invalid(at, field, &format!("{v} is too large"))),
        }
    }

    fn invalid(&self, location: &str, field: &str, problem: &str) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            location: location.to_owned(),
            field: field.to_owned(),
            problem: problem.to_owned(),
        }
    }
}

/// Depth-first search from `id`; the cycle (first goal repeated at the end) if one is reachable.
fn find_cycle<'a>(
    goals: &HashMap<&'a str, &'a Goal>,
    id: &'a str,
    state: &mut HashMap<&'a str, u8>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    match state.get(id).copied().unwrap_or(0) {
        2 => return None,
        1 => {
            let start = path.iter().position(|p| *p == id).expect("a goal on the path is in it");
            let mut cycle = path[start..].to_vec();
            cycle.push(id);
            return Some(cycle);
        }
        _ => {}
    }
    state.insert(id, 1);
    path.push(id);
    for prerequisite in goals.get(id).map(|g| g.prerequisites.as_slice()).unwrap_or_default() {
        if let Some(cycle) = find_cycle(goals, prerequisite, state, path) {
            return Some(cycle);
        }
    }
    path.pop();
    state.insert(id, 2);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"challenges":[{"id":"c1","name":"C","description":"d","goals":[
      {"id":"g1","name":"G1","type":"absolute","event_source":"statistic",
       "requirement":{"stat_code":"wins","operator":">=","target_value":3},
       "reward":{"type":"WALLET","reward_id":"GEMS","quantity":10},"prerequisites":[]},
      {"id":"g2","name":"G2","type":"increment","daily":true,"event_source":"login",
       "requirement":{"stat_code":"login_count","operator":">=","target_value":2},
       "reward":{"type":"ITEM","reward_id":"SWORD","quantity":1},"prerequisites":["g1"]}]}]}"#;

    fn error_of(text: &str) -> String {
        parse("bad.json", text, false).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_file_is_indexed_by_goal_stat_and_source() {
        let config = parse("good.json", GOOD, false).unwrap();
        assert_eq!(config.goal_count(), 2);
        assert_eq!(config.goal("g2").unwrap().prerequisites, vec!["g1"]);
        assert_eq!(config.goals_for_stat("wins").len(), 1);
        assert_eq!(config.login_goals().len(), 1);
        assert!(config.goals_for_stat("login_count").is_empty());
    }

    #[test]
    fn yaml_and_json_give_the_same_configuration() {
        let value: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let yaml = serde_yaml::to_string(&value).unwrap();
        let from_yaml = parse("good.yaml", &yaml, true).unwrap();
        let from_json = parse("good.json", GOOD, false).unwrap();
        assert_eq!(from_yaml.challenges(), from_json.challenges());
    }

    #[test]
    fn errors_name_the_file_challenge_goal_and_field() {
        let bad = GOOD.replace("\"target_value\":3", "\"target_value\":0");
        assert_eq!(
            error_of(&bad),
            "bad.json: challenge 'c1', goal 'g1', field `requirement.target_value`: must be > 0, got 0"
        );
        let bad = GOOD.replace("\">=\",\"target_value\":2", "\"<\",\"target_value\":2");
        assert!(error_of(&bad).contains("goal 'g2', field `requirement.operator`"));
        let bad = GOOD.replace("\"WALLET\"", "\"COINS\"");
        assert!(error_of(&bad).contains("goal 'g1', field `reward.type`: 'COINS'"));
        let bad = GOOD.replace("\"quantity\":1}", "\"quantity\":-1}");
        assert!(error_of(&bad).contains("goal 'g2', field `reward.quantity`"));
        let bad = GOOD.replace("[\"g1\"]", "[\"nope\"]");
        assert!(error_of(&bad).contains("field `prerequisites`: 'nope' is not a configured goal"));
        let bad = GOOD.replace("\"id\":\"g2\"", "\"id\":\"g1\"");
        assert!(error_of(&bad).contains("goal 'g1', field `id`: is used by another goal"));
        let bad = GOOD.replace("\"type\":\"increment\"", "\"type\":\"weekly\"");
        assert!(error_of(&bad).contains("field `type`: 'weekly'"));
        let bad = GOOD.replace("\"event_source\":\"login\"", "\"event_source\":\"chat\"");
        assert!(error_of(&bad).contains("field `event_source`"));
    }

    #[test]
    fn ids_the_schema_cannot_store_stop_start_up_naming_where() {
        let long = "x".repeat(101);
        let bad = GOOD.replace("\"id\":\"g2\"", &format!("\"id\":\"{long}\""));
        assert_eq!(
            error_of(&bad),
            "bad.json: challenge 'c1', goal #2, field `id`: has 101 characters; the schema stores at most 100"
        );
        let bad = GOOD.replace("\"id\":\"c1\"", &format!("\"id\":\"{long}\""));
        assert!(error_of(&bad).contains("challenge #1, field `id`: has 101 characters"), "{}", error_of(&bad));
        let bad = GOOD.replace("\"stat_code\":\"wins\"", &format!("\"stat_code\":\"{long}\""));
        assert!(error_of(&bad).contains("goal 'g1', field `requirement.stat_code`: has 101"), "{}", error_of(&bad));
        let bad = GOOD.replace("\"id\":\"g1\"", "\"id\":\"g\\u00001\"");
        assert!(error_of(&bad).contains("goal #1, field `id`: contains a control character"), "{}", error_of(&bad));
        let ok = GOOD.replace("\"id\":\"g2\"", &format!("\"id\":\"{}\"", "é".repeat(100)));
        assert!(parse("ok.json", &ok, false).is_ok(), "100 characters fit, however many bytes");
    }

    #[test]
    fn sources_index_login_and_each_stat_code() {
        let config = parse("good.json", GOOD, false).unwrap();
        assert_eq!(config.sources().len(), 2);
        let login = config.login_source().unwrap();
        assert_eq!((&*login.stat_code, login.goals.len()), ("", 1));
        let wins = config.stat_source("wins").unwrap();
        assert_eq!(wins.goals[0].goal.id, "g1");
        assert_eq!(config.source_by_code("wins"), Some(wins));
        assert!(config.stat_source("login_count").is_none());
        assert_eq!(config.goal_position("g2"), Some(1));
        assert_eq!(config.goal_refs()[1].goal.id, "g2");
    }

    #[test]
    fn parse_errors_give_the_position() {
        let message = error_of("{\"challenges\": [ }");
        assert!(message.starts_with("bad.json: cannot parse:"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn unknown_fields_are_rejected_rather_than_ignored() {
        let bad = GOOD.replace("\"daily\":true", "\"dayly\":true");
        let message = error_of(&bad);
        assert!(message.contains("dayly") && message.contains("challenge 'c1', goal 'g2'"), "{message}");
    }

    #[test]
    fn type_mismatches_name_the_challenge_goal_field_and_line() {
        let bad = GOOD.replace("\"target_value\":3", "\"target_value\":\"3\"");
        let message = error_of(&bad);
        assert!(
            message.starts_with("bad.json: challenge 'c1', goal 'g1', field `requirement.target_value`: "),
            "{message}"
        );
        assert!(message.contains("line 3"), "{message}");
        let bad = GOOD.replace("\"name\":\"C\"", "\"name\":5");
        assert!(error_of(&bad).starts_with("bad.json: challenge 'c1', field `name`: "), "{}", error_of(&bad));
        let bad = GOOD.replace("[\"g1\"]", "\"g1\"");
        assert!(error_of(&bad).contains("goal 'g2', field `prerequisites`: "), "{}", error_of(&bad));
        let bad = GOOD.replace("\"id\":\"g1\"", "\"id\":1");
        assert!(error_of(&bad).contains("challenge 'c1', goal #1, field `id`: "), "{}", error_of(&bad));
        let bad = GOOD.replace("\"quantity\":10", "\"quantity\":10.5");
        assert!(error_of(&bad).contains("goal 'g1', field `reward.quantity`: "), "{}", error_of(&bad));
        assert!(error_of(r#"{"challenges": {}}"#).starts_with("bad.json: field `challenges`: "));

        let value: serde_json::Value =
            serde_json::from_str(&GOOD.replace("\"target_value\":3", "\"target_value\":\"3\"")).unwrap();
        let yaml = serde_yaml::to_string(&value).unwrap();
        let message = parse("bad.yaml", &yaml, true).unwrap_err().to_string();
        assert!(
            message.starts_with("bad.yaml: challenge 'c1', goal 'g1', field `requirement.target_value`: "),
            "{message}"
        );
        assert!(message.contains("line"), "{message}");
    }

    #[test]
    fn prerequisite_cycles_are_refused_naming_the_cycle() {
        let cycle = GOOD.replace("\"prerequisites\":[]", "\"prerequisites\":[\"g2\"]");
        assert_eq!(
            error_of(&cycle),
            "bad.json: challenge 'c1', goal 'g1', field `prerequisites`: 'g1' → 'g2' → 'g1' is a cycle: none of them could ever be claimed"
        );
    }
}
