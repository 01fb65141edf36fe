//! The plan's scenarios, embedded so `loadgen scenarioN` (and `loadgen run db-outage`, the
//! failure scenarios) works from any folder. The same files live in `scenarios/` as examples
//! for `loadgen run FILE`.

use crate::definition::scenario::{Scenario, ScenarioError};

/// Names and texts of the built-in scenarios.
pub const BUILTIN: [(&str, &str); 15] = [
    ("scenario1", include_str!("../../../scenarios/scenario1.yaml")),
    ("scenario2", include_str!("../../../scenarios/scenario2.yaml")),
    ("scenario3", include_str!("../../../scenarios/scenario3.yaml")),
    ("scenario4", include_str!("../../../scenarios/scenario4.yaml")),
    ("scenario5", include_str!("../../../scenarios/scenario5.yaml")),
    ("db-outage", include_str!("../../../scenarios/db-outage.yaml")),
    ("reward-slow", include_str!("../../../scenarios/reward-slow.yaml")),
    ("reward-failing", include_str!("../../../scenarios/reward-failing.yaml")),
    ("overload", include_str!("../../../scenarios/overload.yaml")),
    ("claim-stampede", include_str!("../../../scenarios/claim-stampede.yaml")),
    ("login-rush", include_str!("../../../scenarios/login-rush.yaml")),
    ("daily-curve", include_str!("../../../scenarios/daily-curve.yaml")),
    ("session-bursts", include_str!("../../../scenarios/session-bursts.yaml")),
    ("completion-waves", include_str!("../../../scenarios/completion-waves.yaml")),
    ("soak", include_str!("../../../scenarios/soak.yaml")),
];

/// A built-in scenario by name.
pub fn named(name: &str) -> Result<Scenario, ScenarioError> {
    let (_, text) = BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ScenarioError::Invalid { file: name.into(), message: "no such built-in scenario".into() })?;
    Scenario::parse(&format!("scenarios/{name}.yaml"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses_and_the_failure_ones_schedule_faults() {
        for (name, _) in BUILTIN {
            let scenario = named(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scenario.name, name);
            let faults = matches!(name, "db-outage" | "reward-slow" | "reward-failing" | "overload");
            assert_eq!(!scenario.faults.is_empty(), faults, "{name}");
        }
    }
}
