//! What the numbers mean: whether a level was sustainable, the maximum sustainable load of a
//! set of runs, and which resource saturated first (with the evidence).

use serde::{Deserialize, Serialize};

use crate::observe::ObservationLog;
use crate::recorder::Operation;
use crate::summary::Summary;

use super::data::RunData;

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
pub fn pool_full_share(op: &crate::summary::OperationSummary) -> f64 {
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

/// One candidate bottleneck and what the data says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The resource (`SUT CPU (event-handler)`, `database CPU`, `connection pool`, …).
    pub resource: String,
    /// The first second it was saturated, if it was.
    pub saturated_at: Option<u64>,
    /// The evidence, with numbers.
    pub evidence: String,
}

/// Saturation thresholds: CPU at 85% of its limit, a pool 90% busy, a buffer 90% full.
const CPU_SATURATED: f64 = 0.85;
const POOL_SATURATED: f64 = 0.9;
const BUFFER_SATURATED: f64 = 0.9;

fn first_at_least(
    log: &ObservationLog,
    component: &str,
    metric: &str,
    level: impl Fn(u64) -> Option<f64>,
) -> Option<u64> {
    log.series(component, metric).find(|(t, v)| level(*t).is_some_and(|l| *v >= l)).map(|(t, _)| t)
}

fn peak(log: &ObservationLog, component: &str, metric: &str) -> Option<f64> {
    log.series(component, metric).map(|(_, v)| v).reduce(f64::max)
}

/// The observations made while the load ran (not the start-up second or the teardown after).
fn during_load(run: &RunData) -> ObservationLog {
    let end = run.summary.duration_s.ceil() as u64;
    ObservationLog { rows: run.observations.rows.iter().filter(|o| o.t_s >= 1 && o.t_s <= end).cloned().collect() }
}

/// Every candidate of a run, saturated ones first in the order they saturated.
pub fn bottlenecks(run: &RunData) -> Vec<Finding> {
    let log = &during_load(run);
    let mut findings = Vec::new();
    let services: Vec<String> = run.summary.services.keys().cloned().collect();
    let mut cpu_components: Vec<&str> = services.iter().map(String::as_str).collect();
    cpu_components.push("postgres");
    cpu_components.push("machine");
    for component in cpu_components {
        let Some(max) = peak(log, component, "cpu_percent") else { continue };
        let limit = log.series(component, "cpu_limit_percent").last().map_or(100.0, |(_, v)| v);
        let at = first_at_least(log, component, "cpu_percent", |_| Some(limit * CPU_SATURATED));
        let resource = match component {
            "postgres" => "database CPU".to_owned(),
            "machine" => "machine CPU (all cores)".to_owned(),
            service => format!("SUT CPU ({service})"),
        };
        findings.push(Finding {
            resource,
            saturated_at: at,
            evidence: format!("CPU peaked at {max:.0}% of one core; limit {limit:.0}%"),
        });
    }
    for service in &services {
        let Some(size) = log.series(service, "db_pool_connections_max").last().map(|(_, v)| v) else { continue };
        if size <= 0.0 {
            continue;
        }
        let busiest = peak(log, service, "db_pool_connections_active").unwrap_or(0.0);
        let at = first_at_least(log, service, "db_pool_connections_active", |_| Some(size * POOL_SATURATED));
        findings.push(Finding {
            resource: format!("connection pool ({service})"),
            saturated_at: at,
            evidence: format!("at most {busiest:.0} of {size:.0} connections busy ({:.0}%)", busiest / size * 100.0),
        });
    }
    if let Some(limit) = log.series("event-handler", "event_buffer_limit").last().map(|(_, v)| v) {
        let max = peak(log, "event-handler", "event_buffer_size").unwrap_or(0.0);
        let exhausted: u64 = run
            .summary
            .operations
            .values()
            .map(|o| {
                o.errors_by_kind.iter().filter(|(k, _)| k.contains("ResourceExhausted")).map(|(_, n)| *n).sum::<u64>()
            })
            .sum();
        let at = first_at_least(log, "event-handler", "event_buffer_size", |_| Some(limit * BUFFER_SATURATED));
        findings.push(Finding {
            resource: "event buffer".into(),
            saturated_at: at,
            evidence: format!(
                "at most {max:.0} of {limit:.0} entries waiting ({:.0}%); {exhausted} calls refused with RESOURCE_EXHAUSTED",
                max / limit * 100.0
            ),
        });
        // The flusher keeps up only while a flush takes less than the interval (1 s by default).
        let slow = first_at_least(log, "event-handler", "event_buffer_flush_duration_seconds_mean", |_| Some(1.0));
        let mean_max = peak(log, "event-handler", "event_buffer_flush_duration_seconds_mean").unwrap_or(0.0);
        findings.push(Finding {
            resource: "database writes (buffer flush)".into(),
            saturated_at: slow,
            evidence: format!("flushes took up to {mean_max:.2} s on average per second; at ≥ 1 s the flusher falls behind the 1 s interval"),
        });
    }
    if let (Some(claim), Some(get)) =
        (run.summary.operations.get("POST claim"), run.summary.operations.get("GET /v1/challenges"))
    {
        let failures: u64 = claim.errors_by_kind.iter().filter(|(k, _)| k.contains("502")).map(|(_, n)| *n).sum();
        let reward_bound = failures > 0 || claim.service_time_ms.p50 > 10.0 * get.service_time_ms.p50.max(0.1);
        findings.push(Finding {
            resource: "reward platform".into(),
            saturated_at: (failures as f64 > claim.requests as f64 * 0.01).then_some(0),
            evidence: format!(
                "claims p50 {:.0} ms vs GET p50 {:.1} ms{}; {failures} claims failed with HTTP 502",
                claim.service_time_ms.p50,
                get.service_time_ms.p50,
                if reward_bound { " (claims wait on the reward platform)" } else { "" }
            ),
        });
    }
    findings.sort_by_key(|f| f.saturated_at.unwrap_or(u64::MAX));
    findings
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
