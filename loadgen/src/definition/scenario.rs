//! Scenario files (YAML): streams of load, each with a k6-style executor and a weighted mix of
//! operations, plus thresholds. Parsing reports errors with line and column; values are checked
//! while they are read, so a bad value is reported where it stands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::fault::Fault;
use super::stream::Stream;
use super::text::{checked_duration, duration_text};
use super::threshold::ThresholdExpr;
use crate::target::fixtures::Claimable;
use crate::target::operations::OperationKind;

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value is invalid (the message gives line and column).
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong, and where.
        message: String,
    },
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in the results folder's name.
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Duration of constant executors (ramping ones take their stages' sum).
    #[serde(
        default = "default_duration",
        serialize_with = "duration_text::serialize",
        deserialize_with = "de_duration"
    )]
    pub duration: Duration,
    /// How late an arrival may start before it counts as dropped.
    #[serde(
        default = "default_max_lateness",
        serialize_with = "duration_text::serialize",
        deserialize_with = "de_max_lateness"
    )]
    pub max_lateness: Duration,
    /// Streams by name.
    pub streams: BTreeMap<String, Stream>,
    /// Thresholds: metric → expressions.
    #[serde(default)]
    pub thresholds: BTreeMap<String, Vec<ThresholdExpr>>,
    /// Progress to seed before the run when the harness provisions the database itself.
    #[serde(default)]
    pub seed: Seed,
    /// CPU profiles of the SUT services over the middle of the run (scenario 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileSpec>,
    /// Faults injected during the load (`[{at: 20s, kind: db-stop, for: 10s}]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// Times an event refused as `RESOURCE_EXHAUSTED` or `UNAVAILABLE` is sent again, as the
    /// platform does (backoff from 100 ms, doubling, within the request timeout).
    #[serde(default)]
    pub event_retries: u32,
    /// The start of the run that growth trends (`leak` thresholds, the reports' growth table)
    /// leave out; a sixth of the duration unless set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration_text",
        deserialize_with = "de_warmup"
    )]
    pub warmup: Option<Duration>,
}

impl Scenario {
    /// The warm-up growth trends leave out: as written, else a sixth of the duration.
    pub fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(self.duration / 6)
    }
}

fn de_warmup<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    checked_duration(d, "warmup").map(Some)
}

fn optional_duration_text<S: serde::Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => duration_text::serialize(d, s),
        None => s.serialize_none(),
    }
}

/// `profile: {duration: 10s}`: flamegraphs of each SUT service over a window of that length
/// centred on the middle of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Length of the profiling window.
    #[serde(serialize_with = "duration_text::serialize", deserialize_with = "de_profile_duration")]
    pub duration: Duration,
}

fn de_profile_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked_duration(d, "profile.duration")
}

/// Seeding of a self-provisioned database.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Fraction (0–1) of each fixture user's goals stored as completed, so claims can succeed
    /// without an event stream.
    #[serde(default)]
    pub completed_fraction: f64,
    /// One goal stored as completed for one user: what `claim_stampede` claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimable: Option<Claimable>,
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked_duration(d, "duration")
}

fn de_max_lateness<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked_duration(d, "max_lateness")
}

/// A stream's latency limit when no threshold gives one.
pub const DEFAULT_LATENCY_LIMIT: Duration = Duration::from_secs(1);

fn default_duration() -> Duration {
    Duration::from_secs(60)
}

fn default_max_lateness() -> Duration {
    Duration::from_millis(50)
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { file: file.clone(), source })?;
        Self::parse(&file, &text)
    }

    /// Validates scenario text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_yaml::from_str(text).map_err(|e| ScenarioError::Invalid {
            file: file.into(),
            message: refine_location(text, &e.to_string()),
        })?;
        scenario
            .check()
            .map_err(|message| ScenarioError::Invalid { file: file.into(), message: at_line(text, &message) })?;
        Ok(scenario)
    }

    /// Rules that span fields (single values are checked while parsing).
    pub fn check(&self) -> Result<(), String> {
        if self.streams.is_empty() {
            return Err("streams: give at least one stream".into());
        }
        if self.duration.is_zero() {
            return Err("duration must be > 0".into());
        }
        for (name, stream) in &self.streams {
            let sessions = stream.operations.keys().all(|o| o.is_mixed());
            if !(stream.is_rest() || stream.is_grpc() || sessions) {
                return Err(format!(
                    "streams.{name}: mixes REST, gRPC and session operations; use one stream for each"
                ));
            }
            stream.executor(self.duration, self.latency_limit(name)).map_err(|e| format!("streams.{name}: {e}"))?;
        }
        for (name, expressions) in &self.thresholds {
            let metric =
                crate::definition::threshold::Metric::parse(name).map_err(|e| format!("thresholds.{name}: {e}"))?;
            if let Some(stream) = metric.scenario().filter(|s| !self.streams.contains_key(*s)) {
                let known: Vec<&str> = self.streams.keys().map(String::as_str).collect();
                return Err(format!("thresholds.{name}: unknown scenario '{stream}' (streams: {})", known.join(", ")));
            }
            for expr in expressions {
                expr.check_against(&metric, name).map_err(|e| format!("thresholds.{name}: {e}"))?;
            }
        }
        if !(0.0..=1.0).contains(&self.seed.completed_fraction) {
            return Err("seed.completed_fraction must be between 0 and 1".into());
        }
        let stampede = self.streams.values().any(|s| s.operations.contains_key(&OperationKind::ClaimStampede));
        if stampede && self.seed.claimable.is_none() {
            return Err("operation claim_stampede claims seed.claimable: give it ({user: ..., goal: ...})".into());
        }
        for (i, fault) in self.faults.iter().enumerate() {
            fault.check(self.load_duration()).map_err(|e| format!("faults[{i}] ({}): {e}", fault.label()))?;
        }
        Ok(())
    }

    /// The latency a stream's requests may take before its thresholds fail: the highest limit
    /// of the latency thresholds (`latency`, and `http_req_duration` or `grpc_req_duration` by
    /// the stream's protocol) that apply to it, or [`DEFAULT_LATENCY_LIMIT`].
    pub fn latency_limit(&self, stream: &str) -> Duration {
        use crate::definition::threshold::{Aggregation, Comparison, Metric, MetricBase};
        let Some(s) = self.streams.get(stream) else { return DEFAULT_LATENCY_LIMIT };
        let mut limit_ms: Option<f64> = None;
        for (name, expressions) in &self.thresholds {
            let Ok(metric) = Metric::parse(name) else { continue };
            let protocol = match metric.base {
                MetricBase::Latency | MetricBase::ServiceTime => true,
                MetricBase::HttpReqDuration => s.is_rest(),
                MetricBase::GrpcReqDuration => s.is_grpc(),
                _ => false,
            };
            if !protocol || metric.scenario().is_some_and(|n| n != stream) {
                continue;
            }
            for e in expressions {
                let latency = matches!(
                    e.aggregation,
                    Aggregation::Percentile(_) | Aggregation::Avg | Aggregation::Med | Aggregation::Max
                );
                if latency && matches!(e.comparison, Comparison::Lt | Comparison::Le) {
                    limit_ms = Some(limit_ms.map_or(e.limit, |l: f64| l.max(e.limit)));
                }
            }
        }
        limit_ms.map_or(DEFAULT_LATENCY_LIMIT, |ms| Duration::from_secs_f64(ms.max(1.0) / 1000.0))
    }

    /// How long the load lasts: the longest stream.
    pub fn load_duration(&self) -> Duration {
        self.streams
            .values()
            .filter_map(|s| s.executor(self.duration, DEFAULT_LATENCY_LIMIT).ok())
            .map(|e| e.duration())
            .max()
            .unwrap_or(self.duration)
    }
}

/// serde_yaml places errors raised by our own checks at the start of the enclosing mapping; when
/// the message names the field (`` `rate` must be… ``), move the position to that field's line.
fn refine_location(text: &str, message: &str) -> String {
    let Some((before, position)) = message.rsplit_once(" at line ") else { return message.to_owned() };
    let Some(line) = position.split_whitespace().next().and_then(|l| l.parse::<usize>().ok()) else {
        return message.to_owned();
    };
    let Some(field) = before.split('`').nth(1) else { return message.to_owned() };
    let key = format!("{field}:");
    let found = text.lines().enumerate().skip(line.saturating_sub(1)).find(|(_, l)| {
        let trimmed = l.trim_start().trim_start_matches("- ");
        trimmed.starts_with(&key)
    });
    match found {
        Some((index, l)) => {
            let column = l.len() - l.trim_start().trim_start_matches("- ").len() + 1;
            format!("{before} at line {} column {column}", index + 1)
        }
        None => message.to_owned(),
    }
}

/// Prefixes a cross-field error (`streams.api: …`, `thresholds.x: …`) with the line of the key
/// it names, found in the text, since those rules are checked after parsing.
fn at_line(text: &str, message: &str) -> String {
    let path = message.split(':').next().unwrap_or("");
    let mut keys = path.split('.');
    let (Some(section), Some(key)) = (keys.next(), keys.next()) else { return message.to_owned() };
    let mut in_section = false;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if !line.starts_with(' ') {
            in_section = trimmed.starts_with(&format!("{section}:"));
        } else if in_section && trimmed.trim_start_matches(['\'', '"']).starts_with(key) {
            return format!("line {}: {message}", number + 1);
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
name: s
duration: 30s
streams:
  api:
    executor: constant-arrival-rate
    rate: 500
    pre_allocated_vus: 100
    max_vus: 200
    operations: {get_challenges: 80, get_then_claim: 20}
  events:
    executor: ramping-arrival-rate
    start_rate: 10
    stages: [{target: 100, duration: 10s}, {target: 100, duration: 20s}]
    pre_allocated_vus: 500
    max_vus: 500
    operations: {login: 20, stat: 80}
thresholds:
  http_req_duration: ['p(95)<300']
  grpc_req_failed: ['rate<0.01']
";

    #[test]
    fn a_good_scenario_parses() {
        let s = Scenario::parse("good.yaml", GOOD).unwrap();
        assert_eq!(s.duration, Duration::from_secs(30));
        assert!(s.streams["api"].is_rest());
        assert!(s.streams["events"].is_grpc());
        assert_eq!(s.load_duration(), Duration::from_secs(30));
    }

    fn error(text: &str) -> String {
        Scenario::parse("bad.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_are_reported_with_line_and_column() {
        let e = error(&GOOD.replace("rate: 500", "rate: -5"));
        assert_eq!(e, "bad.yaml: streams.api: `rate` must be a number > 0, got -5 at line 7 column 5");
        let e = error(&GOOD.replace("constant-arrival-rate", "constant-arival-rate"));
        assert!(e.contains("line 6 column 15") && e.contains("constant-arival-rate"), "{e}");
        let e = error(&GOOD.replace("'p(95)<300'", "'p95<<300'"));
        assert!(e.contains("line 19") && e.contains("p95<<300"), "{e}");
        let e = error(&GOOD.replace("duration: 30s", "duration: soon"));
        assert!(e.ends_with("`duration`: 'soon' is not a duration like 30s, 250ms or 2m at line 3 column 1"), "{e}");
        let e = error(&GOOD.replace("duration: 10s}", "duration: 10 seconds}"));
        assert!(e.contains("stages[0]") && e.contains("line 14") && e.contains("10 seconds"), "{e}");
        let e = error(&GOOD.replace("get_then_claim", "get_then_clam"));
        assert!(e.contains("get_then_clam") && e.contains("line 10"), "{e}");
    }

    #[test]
    fn cross_field_rules_name_the_stream() {
        let e = error(&GOOD.replace("max_vus: 200", "max_vus: 50"));
        assert_eq!(e, "bad.yaml: line 5: streams.api: max_vus (50) is below pre_allocated_vus (100)");
        let e = error(&GOOD.replace("{login: 20, stat: 80}", "{login: 20, get_challenges: 80}"));
        assert!(e.contains("streams.events") && e.contains("mixes"), "{e}");
        let e = error(&GOOD.replace("http_req_duration", "http_req_durations"));
        assert!(e.contains("thresholds.http_req_durations"), "{e}");
        let e = error(&GOOD.replace("http_req_duration:", "'http_req_duration{scenario:apii}':"));
        assert!(e.contains("unknown scenario 'apii'") && e.contains("streams: api, events"), "{e}");
        let e = error(&GOOD.replace("'p(95)<300'", "'rate<0.01'"));
        assert!(e.contains("'rate<0.01' does not apply to http_req_duration"), "{e}");
    }

    #[test]
    fn an_auto_pool_is_the_rate_times_the_streams_latency_limit() {
        let s = Scenario::parse("auto.yaml", &GOOD.replace("max_vus: 200", "max_vus: auto")).unwrap();
        let limit = s.latency_limit("api");
        assert_eq!(limit, Duration::from_millis(300), "from http_req_duration p(95)<300");
        let executor = s.streams["api"].executor(s.duration, limit).unwrap();
        assert_eq!(executor.pool_size(), 150, "500/s × 0.3 s");
    }

    #[test]
    fn the_shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                count += 1;
            }
        }
        assert!(count >= 5, "scenario1..5 ship with the harness");
    }
}
