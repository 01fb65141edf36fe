//! A service run as several replicas is sampled replica by replica (`challenge-service#1`,
//! `challenge-service#2`, …) and also as the service (`challenge-service`): each second, the
//! replicas' values summed — CPU, memory, tasks, connections, buffers, rates — or, for a
//! histogram's mean and percentiles, the worst replica's. Everything that reads a service by
//! its name (the digest, thresholds, the reports) so reads the whole service; the replicas'
//! own rows say how evenly it was spread.

use std::collections::BTreeMap;

use super::Observation;
use crate::definition::options::replica_of;

/// How the replicas' values of a metric make the service's.
fn combines_by_max(metric: &str) -> bool {
    let base = metric.split('{').next().unwrap_or(metric);
    ["_mean", "_p50", "_p95", "_p99"].iter().any(|suffix| base.ends_with(suffix))
}

/// The service-level rows of one round: for every (second, service, metric) that replicas
/// reported, their sum (or maximum, for means and percentiles). Nothing when no row is a
/// replica's.
pub fn service_totals(rows: &[Observation]) -> Vec<Observation> {
    let mut totals: BTreeMap<(u64, &str, &str), f64> = BTreeMap::new();
    for row in rows {
        let Some(service) = replica_of(&row.component) else { continue };
        let entry = totals.entry((row.t_s, service, &row.metric));
        let by_max = combines_by_max(&row.metric);
        entry
            .and_modify(|total| *total = if by_max { total.max(row.value) } else { *total + row.value })
            .or_insert(row.value);
    }
    totals.into_iter().map(|((t_s, service, metric), value)| Observation::new(t_s, service, metric, value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_add_up_to_the_service_and_its_percentiles_are_the_worst_replicas() {
        let rows = vec![
            Observation::new(3, "challenge-service#1", "cpu_percent", 40.0),
            Observation::new(3, "challenge-service#2", "cpu_percent", 35.5),
            Observation::new(3, "challenge-service#1", "memory_bytes", 1e6),
            Observation::new(3, "challenge-service#2", "memory_bytes", 2e6),
            Observation::new(3, "challenge-service#1", "http_requests_per_s{route=list}", 100.0),
            Observation::new(3, "challenge-service#2", "http_requests_per_s{route=list}", 98.0),
            Observation::new(3, "challenge-service#1", "http_request_duration_seconds_p95{route=list}", 0.004),
            Observation::new(3, "challenge-service#2", "http_request_duration_seconds_p95{route=list}", 0.009),
            Observation::new(3, "event-handler", "cpu_percent", 12.0),
            Observation::new(3, "postgres", "cpu_percent", 50.0),
        ];
        let totals = service_totals(&rows);
        let value = |component: &str, metric: &str| {
            totals.iter().find(|o| o.component == component && o.metric == metric).map(|o| o.value)
        };
        assert_eq!(value("challenge-service", "cpu_percent"), Some(75.5));
        assert_eq!(value("challenge-service", "memory_bytes"), Some(3e6));
        assert_eq!(value("challenge-service", "http_requests_per_s{route=list}"), Some(198.0));
        assert_eq!(value("challenge-service", "http_request_duration_seconds_p95{route=list}"), Some(0.009));
        // A service that runs once, and other components, are not repeated.
        assert_eq!(totals.len(), 4);
        assert!(service_totals(&rows[8..]).is_empty());
    }
}
