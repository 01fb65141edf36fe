//! A fault a scenario schedules, as written (`faults: [{at: 20s, kind: db-stop, for: 10s}]`),
//! and its checks against the load; [`crate::faults`] injects it and judges the SUT.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::text::duration_text;

/// One scheduled fault, as written in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// When it begins, from the start of the load.
    #[serde(with = "duration_text")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "for", with = "duration_text")]
    pub lasts: Duration,
    /// What it is.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// The database server stopped.
    DbStop,
    /// The reward mock answers after this latency (`fixed:4.5s`, `uniform:1s..5s`).
    RewardLatency {
        /// The latency spec.
        latency: String,
    },
    /// The reward mock fails this share of grants.
    RewardFailure {
        /// Share of grant requests that fail, 0–1.
        rate: f64,
        /// Share of the failures that strike after granting, 0–1.
        #[serde(default)]
        after_grant: f64,
    },
    /// The load itself (the stages of a stream) is the fault; nothing is injected.
    LoadSpike {
        /// What the load does meanwhile, for the reader.
        note: String,
    },
}

impl Fault {
    /// `db-stop at 20s for 10s`.
    pub fn label(&self) -> String {
        let what = match &self.kind {
            FaultKind::DbStop => "db-stop".to_owned(),
            FaultKind::RewardLatency { latency } => format!("reward-latency {latency}"),
            FaultKind::RewardFailure { rate, after_grant } => {
                format!("reward-failure {:.0}% ({:.0}% after granting)", rate * 100.0, after_grant * 100.0)
            }
            FaultKind::LoadSpike { note } => format!("load-spike ({note})"),
        };
        format!("{what} at {}s for {}s", self.at.as_secs_f64(), self.lasts.as_secs_f64())
    }

    /// Checks the fault against a load of `duration`.
    pub fn check(&self, duration: Duration) -> Result<(), String> {
        if self.lasts.is_zero() {
            return Err("`for` must be > 0".into());
        }
        if self.at + self.lasts > duration {
            return Err(format!(
                "ends at {}s, after the load ({}s)",
                (self.at + self.lasts).as_secs_f64(),
                duration.as_secs_f64()
            ));
        }
        match &self.kind {
            FaultKind::DbStop | FaultKind::LoadSpike { .. } => Ok(()),
            FaultKind::RewardLatency { latency } => latency.parse::<sut::reward::Latency>().map(drop),
            FaultKind::RewardFailure { rate, after_grant } => {
                if !(0.0..=1.0).contains(rate) || !(0.0..=1.0).contains(after_grant) {
                    return Err("`rate` and `after_grant` must be between 0 and 1".into());
                }
                Ok(())
            }
        }
    }

    /// Whether this fault needs the harness's own database.
    pub fn needs_database(&self) -> bool {
        matches!(self.kind, FaultKind::DbStop)
    }

    /// Whether this fault changes the reward mock.
    pub fn needs_mock(&self) -> bool {
        matches!(self.kind, FaultKind::RewardLatency { .. } | FaultKind::RewardFailure { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_a_scenario_and_are_checked() {
        let faults: Vec<Fault> = serde_yaml::from_str(
            "- {at: 20s, kind: db-stop, for: 10s}\n- {at: 5s, for: 1s, kind: reward-failure, rate: 0.5, after_grant: 0.5}\n- {at: 1s, for: 2s, kind: reward-latency, latency: fixed:4.5s}",
        )
        .unwrap();
        assert_eq!(
            faults[0],
            Fault { at: Duration::from_secs(20), lasts: Duration::from_secs(10), kind: FaultKind::DbStop }
        );
        assert_eq!(faults[1].label(), "reward-failure 50% (50% after granting) at 5s for 1s");
        assert!(faults[0].check(Duration::from_secs(30)).is_ok());
        assert!(faults[0].check(Duration::from_secs(29)).unwrap_err().contains("after the load"));
        let bad = Fault { kind: FaultKind::RewardLatency { latency: "soon".into() }, ..faults[2].clone() };
        assert!(bad.check(Duration::from_secs(60)).is_err());
        assert!(serde_yaml::from_str::<Vec<Fault>>("- {at: 1s, for: 1s, kind: cpu-hog}").is_err());
    }
}
