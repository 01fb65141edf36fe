//! Whether a level held: the limits a sustainable level keeps (errors, p95, drops), the first
//! one an operation broke (drops named by their cause), the maximum sustainable level of a set
//! of runs, and the figures of a run's steady part after its warm-up. The sweep and the reports
//! judge with these alone.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::observe::digest::GeneratorCheck;
use crate::results::read::{ReadError, RunData, by_offered_load};
use crate::results::summary::{OperationSummary, Summary};
use crate::target::operations::Operation;

/// The limits a level must keep to count as sustainable (the plan's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Highest error rate of any operation.
    pub error_rate: f64,
    /// Highest API p95 (corrected), ms.
    pub api_p95_ms: f64,
    /// Highest event p95 (corrected), ms.
    pub event_p95_ms: f64,
    /// Highest share of arrivals dropped.
    pub dropped_rate: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { error_rate: 0.01, api_p95_ms: 2000.0, event_p95_ms: 500.0, dropped_rate: 0.01 }
    }
}

/// The first limit a run broke, as text (`event p95 812 ms > 500 ms`), or None.
pub fn broken_limit(summary: &Summary, limits: &Limits) -> Option<String> {
    if let Some(reason) = &summary.interrupted {
        return Some(format!("the run ended early ({reason})"));
    }
    let figures = summary.operations.iter().map(|(name, op)| {
        (
            name.as_str(),
            OperationFigures {
                error_rate: op.error_rate,
                dropped_rate: op.dropped_ratio,
                pool_full: pool_full_share(op),
                p95_ms: op.latency_ms.p95,
            },
        )
    });
    first_broken(figures, limits)
}

/// Of an operation's dropped arrivals, the share that found every virtual user busy.
pub fn pool_full_share(op: &OperationSummary) -> f64 {
    if op.dropped == 0 { 0.0 } else { op.dropped_pool_full as f64 / op.dropped as f64 }
}

/// The figures of one operation that the limits judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperationFigures {
    /// `errors / requests`.
    pub error_rate: f64,
    /// `dropped / arrivals`.
    pub dropped_rate: f64,
    /// Of the dropped, the share that found every virtual user busy.
    pub pool_full: f64,
    /// Corrected p95, ms.
    pub p95_ms: f64,
}

/// What [`first_broken`] says of a level whose drops came from a full generator pool while the
/// target kept its latency limit: not the target's capacity.
pub const POOL_EXHAUSTED: &str = "generator pool exhausted";

/// The first limit broken by any operation: errors, then the p95 (event operations against the
/// event p95, the end-to-end probe against none, the rest against the API p95), then drops.
/// Drops that mostly came due with every virtual user busy while the p95 kept its limit are
/// reported as [`POOL_EXHAUSTED`]; the others are the generator's own lateness.
pub fn first_broken<'a>(
    operations: impl Iterator<Item = (&'a str, OperationFigures)>,
    limits: &Limits,
) -> Option<String> {
    for (name, op) in operations {
        if op.error_rate > limits.error_rate {
            return Some(format!("{name} errors {:.2}% > {:.2}%", op.error_rate * 100.0, limits.error_rate * 100.0));
        }
        let latency_limit = match Operation::named(name) {
            // Whole sessions include think times: their steps are judged instead.
            Some(Operation::EndToEnd | Operation::Session) => None,
            Some(op) if op.is_grpc() => Some((limits.event_p95_ms, "event")),
            _ => Some((limits.api_p95_ms, "API")),
        };
        // A target over its latency limit fills any pool sized for that limit: the latency is
        // the finding, the drops its consequence.
        if let Some((limit, kind)) = latency_limit
            && op.p95_ms > limit
        {
            return Some(format!("{kind} p95 ({name}) {:.0} ms > {limit:.0} ms", op.p95_ms));
        }
        if op.dropped_rate > limits.dropped_rate {
            if op.pool_full >= 0.5 {
                return Some(format!(
                    "{POOL_EXHAUSTED}: {name} dropped {:.2}% with every virtual user busy while its p95 ({:.0} ms) \
                     kept its limit; not the target's capacity (raise max_vus)",
                    op.dropped_rate * 100.0,
                    op.p95_ms
                ));
            }
            return Some(format!(
                "{name} dropped {:.2}% > {:.2}%",
                op.dropped_rate * 100.0,
                limits.dropped_rate * 100.0
            ));
        }
    }
    None
}

/// One operation after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Completed requests per second.
    pub achieved_rate: f64,
    /// Requests.
    pub requests: f64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// `dropped / (requests + dropped)`.
    pub dropped_rate: f64,
    /// Corrected p95, ms.
    pub p95_ms: f64,
    /// Corrected p99, ms.
    pub p99_ms: f64,
}

/// The heaviest level within the limits and the lightest beyond them, in one group.
pub fn max_sustainable<'a>(
    runs: &[&'a RunData],
    limits: &Limits,
) -> (Option<&'a RunData>, Option<(&'a RunData, String)>) {
    let ordered = by_offered_load(runs.iter().copied());
    let good = ordered.iter().rev().find(|r| broken_limit(&r.summary, limits).is_none()).copied();
    let bad = ordered.iter().find_map(|r| broken_limit(&r.summary, limits).map(|why| (*r, why)));
    (good, bad)
}

/// The first limit broken by the stats after the warm-up (or by a saturated generator, which
/// makes any number from that level untrustworthy).
pub fn judge(
    operations: &BTreeMap<String, WindowStats>,
    limits: &Limits,
    generator: Option<GeneratorCheck>,
    pool_full: &BTreeMap<&str, f64>,
) -> Option<String> {
    if generator.is_some_and(|g| g.saturated) {
        return Some("the generator saturated its CPU (the level can't be measured here)".into());
    }
    let figures = operations.iter().map(|(name, op)| {
        let figures = OperationFigures {
            error_rate: op.error_rate,
            dropped_rate: op.dropped_rate,
            pool_full: pool_full.get(name.as_str()).copied().unwrap_or(0.0),
            p95_ms: op.p95_ms,
        };
        (name.as_str(), figures)
    });
    first_broken(figures, limits)
}

/// Per operation, the seconds after `warmup_s`: counts from `timeseries.csv`, percentiles from
/// the HDR interval logs.
pub fn window_stats(dir: &Path, warmup_s: f64) -> Result<BTreeMap<String, WindowStats>, ReadError> {
    let run = RunData::load(dir)?;
    let mut stats = BTreeMap::new();
    for name in run.summary.operations.keys() {
        let rows: Vec<_> = run.rows_of(name).filter(|r| r.t_s > warmup_s).collect();
        // Rates divide by the seconds the schedule ran (rows with a target); a closed-model or
        // follow-up operation by the seconds it ran.
        let scheduled: Vec<_> = rows.iter().filter(|r| r.target_rate.is_some()).collect();
        let seconds = if scheduled.is_empty() {
            rows.iter().filter(|r| r.requests > 0.0).map(|r| r.interval_s).sum::<f64>()
        } else {
            scheduled.iter().map(|r| r.interval_s).sum::<f64>()
        }
        .max(1.0);
        let requests: f64 = rows.iter().map(|r| r.requests).sum();
        let errors: f64 = rows.iter().map(|r| r.errors).sum();
        let dropped: f64 = rows.iter().map(|r| r.dropped).sum();
        let latency = run.latency_since(name, warmup_s);
        let q = |q: f64| if latency.is_empty() { 0.0 } else { latency.value_at_quantile(q) as f64 / 1000.0 };
        stats.insert(
            name.clone(),
            WindowStats {
                achieved_rate: requests / seconds,
                requests,
                error_rate: if requests > 0.0 { errors / requests } else { 0.0 },
                dropped_rate: if requests + dropped > 0.0 { dropped / (requests + dropped) } else { 0.0 },
                p95_ms: q(0.95),
                p99_ms: q(0.99),
            },
        );
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(dropped_rate: f64, pool_full: f64, p95_ms: f64) -> Option<String> {
        let figures = OperationFigures { error_rate: 0.0, dropped_rate, pool_full, p95_ms };
        first_broken([("OnMessage stat", figures)].into_iter(), &Limits::default())
    }

    #[test]
    fn drops_are_named_by_their_cause() {
        assert_eq!(verdict(0.0, 0.0, 20.0), None);
        let over = verdict(0.2, 0.9, 900.0).unwrap();
        assert!(over.starts_with("event p95"), "a slow target fills any pool: {over}");
        let pool = verdict(0.2, 0.9, 20.0).unwrap();
        assert!(pool.starts_with(POOL_EXHAUSTED), "{pool}");
        let late = verdict(0.2, 0.1, 20.0).unwrap();
        assert!(late.starts_with("OnMessage stat dropped 20.00%"), "free users the generator ran late: {late}");
    }
}
