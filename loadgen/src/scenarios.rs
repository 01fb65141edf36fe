//! The plan's scenarios, embedded so `loadgen scenarioN` works from any folder. The same files
//! live in `scenarios/` as examples for `loadgen run FILE`.

use crate::scenario::{Scenario, ScenarioError};

/// Names and texts of the built-in scenarios.
pub const BUILTIN: [(&str, &str); 5] = [
    ("scenario1", include_str!("../../scenarios/scenario1.yaml")),
    ("scenario2", include_str!("../../scenarios/scenario2.yaml")),
    ("scenario3", include_str!("../../scenarios/scenario3.yaml")),
    ("scenario4", include_str!("../../scenarios/scenario4.yaml")),
    ("scenario5", include_str!("../../scenarios/scenario5.yaml")),
];

/// A built-in scenario by name.
pub fn builtin(name: &str) -> Result<Scenario, ScenarioError> {
    let (_, text) = BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ScenarioError::Invalid { file: name.into(), message: "no such built-in scenario".into() })?;
    Scenario::parse(&format!("scenarios/{name}.yaml"), text)
}
