//! # Integrity: the SUT's books against what the harness sent
//!
//! A load test that only measures latency cannot tell a fast SUT from one that is fast because it
//! loses events. The harness knows every event the SUT accepted and every claim that succeeded
//! ([`crate::engine::ledger`]); after the load it reads each audited user's goals through the REST API, counts
//! the reward mock's grants where the mock is ours, and judges them under SPEC §1 ([`audit`]).
//! The result is `integrity` in `summary.json`, a section of the Baseline report, and four
//! threshold metrics: `events_lost`, `events_double_applied`, `claims_double_granted`,
//! `goals_claimed_without_grant` (e.g. `events_lost: ['count==0']`).
//!
//! The audited users are every n-th fixture user, at most `--audit-users` of them (default
//! 2,000), so a run with a million users reads a bounded number of goal lists.

pub mod audit;

use serde::{Deserialize, Serialize};

pub use audit::{Auditor, GrantRow, Snapshot};

/// The audit's outcome, in `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integrity {
    /// Users whose books were read.
    pub users_audited: u64,
    /// Events to them the SUT accepted.
    pub events_accepted: u64,
    /// Events to them whose fate is unknown (timeouts, cut-off calls): either way is right.
    pub events_unknown: u64,
    /// Claims by them answered 200.
    pub claims_succeeded: u64,
    /// Accepted events whose effect is missing.
    pub events_lost: u64,
    /// Effects beyond what was sent (an event applied twice, a claimed goal changed).
    pub events_double_applied: u64,
    /// Goals granted more than once (or answered 200 to more than one claim).
    pub claims_double_granted: u64,
    /// Goals claimed during the run that the reward platform never granted.
    pub goals_claimed_without_grant: u64,
    /// Whether grants were counted at the reward mock.
    pub grants_counted: bool,
    /// Seconds from the end of the load until the books were read as they are judged.
    pub settled_s: f64,
    /// Up to 20 of the findings, for a reader to follow up.
    #[serde(default)]
    pub examples: Vec<String>,
    /// What could not be checked, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Integrity {
    /// Nothing lost, nothing applied or granted twice, nothing claimed without a grant.
    pub fn clean(&self) -> bool {
        self.events_lost == 0
            && self.events_double_applied == 0
            && self.claims_double_granted == 0
            && self.goals_claimed_without_grant == 0
    }

    /// An audit that could not be made.
    pub fn unavailable(why: String) -> Self {
        Self { notes: vec![why], ..Self::default() }
    }

    /// The four counts by threshold metric name.
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        [
            ("events_lost", self.events_lost),
            ("events_double_applied", self.events_double_applied),
            ("claims_double_granted", self.claims_double_granted),
            ("goals_claimed_without_grant", self.goals_claimed_without_grant),
        ]
    }
}
