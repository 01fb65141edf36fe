//! Which resource saturated first in a run, with the evidence (whether a level held is
//! [`crate::verdict`]'s).

use crate::observe::ObservationLog;

use crate::results::read::RunData;
use crate::target::operations::Operation;

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
    // A replicated service's CPU is judged replica by replica (their sum has no one limit).
    let replicated = |s: &str| services.iter().any(|r| crate::definition::options::replica_of(r) == Some(s));
    let mut cpu_components: Vec<&str> = services.iter().map(String::as_str).filter(|s| !replicated(s)).collect();
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
    if let (Some(claim), Some(get)) = (
        run.summary.operations.get(Operation::Claim.name()),
        run.summary.operations.get(Operation::GetChallenges.name()),
    ) {
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
