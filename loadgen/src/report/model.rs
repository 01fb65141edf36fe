//! The capacity model: daily active users per tier and what each user does per day, which the
//! Capacity Planning Guide turns into rates and replicas (`loadgen report --model FILE`).

use serde::{Deserialize, Serialize};

/// Load tiers for capacity planning: daily active users mapped to peak request and event rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityModel {
    /// Daily active users per tier.
    pub tiers_dau: Vec<u64>,
    /// API requests per active user per day.
    pub requests_per_user_per_day: f64,
    /// Events per active user per day.
    pub events_per_user_per_day: f64,
    /// Peak hour rate over the daily average.
    pub peak_factor: f64,
    /// Share of capacity kept free.
    pub headroom: f64,
    /// Stored users per daily active user (all who ever played).
    pub stored_users_per_dau: f64,
    /// Progress rows per stored user (goals touched).
    pub rows_per_user: f64,
}

impl Default for CapacityModel {
    fn default() -> Self {
        Self {
            tiers_dau: vec![10_000, 100_000, 500_000, 1_000_000],
            requests_per_user_per_day: 30.0,
            events_per_user_per_day: 300.0,
            peak_factor: 3.0,
            headroom: 0.3,
            stored_users_per_dau: 5.0,
            rows_per_user: 100.0,
        }
    }
}
