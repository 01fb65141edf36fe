//! The summary's view of the observations: per component CPU and memory (`resources`), the
//! database (`database`), the services' metrics (`services`), and the warnings a reader must not
//! miss — above all a saturated generator, which would otherwise pass for a slow system under
//! test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ObservationLog;
use super::postgres::{self, DatabaseEnd, StatementDelta};
use crate::target::database::ExplainedQuery;

/// The generator counts as saturated above this share of its CPU limit (3-second average).
pub const GENERATOR_SATURATION: f64 = 0.9;
/// The machine counts as saturated above this share of all its cores (3-second average).
pub const MACHINE_SATURATION: f64 = 0.95;
/// The component name of the harness itself.
pub const GENERATOR: &str = "loadgen";

/// Mean, maximum and last value of a per-second series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesStats {
    /// Mean over the samples.
    pub mean: f64,
    /// Largest sample.
    pub max: f64,
    /// Last sample.
    pub last: f64,
}

impl SeriesStats {
    fn of(values: &[f64]) -> Option<Self> {
        let last = *values.last()?;
        Some(Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last,
        })
    }
}

/// One component's resource use over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentResources {
    /// Mean CPU, percent of one core.
    pub cpu_percent_mean: f64,
    /// Highest one-second CPU, percent of one core.
    pub cpu_percent_max: f64,
    /// The CPU limit (cores × 100, or a container's quota).
    pub cpu_limit_percent: Option<f64>,
    /// Highest resident memory, MiB.
    pub memory_max_mb: f64,
    /// Memory limit (containers), MiB.
    pub memory_limit_mb: Option<f64>,
    /// Most threads.
    pub threads_max: Option<f64>,
    /// Most open files.
    pub open_files_max: Option<f64>,
}

/// Whether the generator or the machine ran out of CPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeneratorCheck {
    /// Highest 3-second average CPU of loadgen, percent of one core.
    pub cpu_percent_max: f64,
    /// Its limit (the cores it may use × 100).
    pub cpu_limit_percent: f64,
    /// loadgen ran near its limit: latencies may include the generator's own delays.
    pub saturated: bool,
    /// Highest 3-second average CPU of the whole machine, percent of one core.
    pub machine_cpu_percent_max: Option<f64>,
    /// The machine's cores were all busy: the generator competed with the system under test.
    pub machine_saturated: bool,
}

/// The summary's `resources` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Per component (`loadgen`, `machine`, `postgres`, each service or container).
    pub components: BTreeMap<String, ComponentResources>,
    /// The generator check.
    pub generator: Option<GeneratorCheck>,
}

/// The table at the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TableEnd {
    /// Live rows.
    pub live_rows: f64,
    /// Dead rows (updates not yet vacuumed).
    pub dead_rows: f64,
    /// Table, indexes and TOAST, bytes.
    pub size_bytes: f64,
}

/// The summary's `database` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// Highest share of any service's connection pool in use (active / max), 0–1.
    pub pool_busy_max: Option<f64>,
    /// The same per service.
    pub pool_busy_max_by_service: BTreeMap<String, f64>,
    /// Pool sizes per service.
    pub pool_size_by_service: BTreeMap<String, f64>,
    /// Most client connections at once.
    pub connections_max: Option<f64>,
    /// Most connections per application name.
    pub connections_max_by_service: BTreeMap<String, f64>,
    /// Most sessions waiting for a lock at once.
    pub lock_waits_max: Option<f64>,
    /// Commits per second (mean, max).
    pub commits_per_s: Option<SeriesStats>,
    /// Whole-run shared-buffer hit ratio.
    pub cache_hit_ratio: Option<f64>,
    /// Commits during the run.
    pub commits: Option<i64>,
    /// Rollbacks during the run.
    pub rollbacks: Option<i64>,
    /// `user_goal_progress` at the end.
    pub table: Option<TableEnd>,
    /// Statements by execution time during the run.
    pub top_statements: Vec<StatementDelta>,
    /// Plans of the key queries on the run's data.
    pub explain: Vec<ExplainedQuery>,
    /// What could not be observed, and why.
    pub unavailable: Vec<String>,
}

/// The `resources` section from the observations.
pub fn resources(log: &ObservationLog) -> Resources {
    let mut components = BTreeMap::new();
    for component in log.components() {
        let cpu: Vec<f64> = log.series(component, "cpu_percent").map(|(_, v)| v).collect();
        let memory: Vec<f64> = log.series(component, "memory_bytes").map(|(_, v)| v).collect();
        if cpu.is_empty() && memory.is_empty() {
            continue;
        }
        let cpu_stats = SeriesStats::of(&cpu);
        let last = |metric: &str| log.series(component, metric).last().map(|(_, v)| v);
        let max = |metric: &str| log.series(component, metric).map(|(_, v)| v).reduce(f64::max);
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        components.insert(
            component.to_owned(),
            ComponentResources {
                cpu_percent_mean: cpu_stats.map_or(0.0, |s| s.mean),
                cpu_percent_max: cpu_stats.map_or(0.0, |s| s.max),
                cpu_limit_percent: last("cpu_limit_percent"),
                memory_max_mb: SeriesStats::of(&memory).map_or(0.0, |s| mib(s.max)),
                memory_limit_mb: last("memory_limit_bytes").map(mib),
                threads_max: max("threads"),
                open_files_max: max("open_files"),
            },
        );
    }
    let generator = components.get(GENERATOR).map(|g| {
        let limit = g.cpu_limit_percent.unwrap_or(100.0);
        let cpu_max = rolling_max(log, GENERATOR, 3);
        let machine_max = components.get("machine").map(|_| rolling_max(log, "machine", 3));
        let machine_limit = components.get("machine").and_then(|m| m.cpu_limit_percent).unwrap_or(limit);
        GeneratorCheck {
            cpu_percent_max: cpu_max,
            cpu_limit_percent: limit,
            saturated: cpu_max >= GENERATOR_SATURATION * limit,
            machine_cpu_percent_max: machine_max,
            machine_saturated: machine_max.is_some_and(|m| m >= MACHINE_SATURATION * machine_limit),
        }
    });
    Resources { components, generator }
}

/// The highest `window`-second average of a component's CPU.
fn rolling_max(log: &ObservationLog, component: &str, window: usize) -> f64 {
    let cpu: Vec<f64> = log.series(component, "cpu_percent").map(|(_, v)| v).collect();
    if cpu.len() < window {
        return cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    }
    cpu.windows(window).map(|w| w.iter().sum::<f64>() / window as f64).fold(0.0, f64::max)
}

/// The `database` section from the observations and the end-of-run findings.
pub fn database(log: &ObservationLog, end: Option<DatabaseEnd>) -> Database {
    let mut db = Database::default();
    for component in log.components() {
        let max: Vec<(u64, f64)> = log.series(component, "db_pool_connections_max").collect();
        if max.is_empty() {
            continue;
        }
        let active: BTreeMap<u64, f64> = log.series(component, "db_pool_connections_active").collect();
        let busy = max
            .iter()
            .filter(|(_, size)| *size > 0.0)
            .filter_map(|(t, size)| Some(active.get(t)? / size))
            .fold(0.0, f64::max);
        db.pool_busy_max_by_service.insert(component.to_owned(), busy);
        db.pool_size_by_service.insert(component.to_owned(), max.last().map_or(0.0, |(_, v)| *v));
    }
    db.pool_busy_max = db.pool_busy_max_by_service.values().copied().reduce(f64::max);
    let pg = postgres::COMPONENT;
    let max_of = |metric: &str| log.series(pg, metric).map(|(_, v)| v).reduce(f64::max);
    db.connections_max = max_of("connections_total");
    for metric in log.metrics(pg) {
        if let Some(app) = metric.strip_prefix("connections{app=").and_then(|m| m.strip_suffix('}'))
            && let Some(max) = max_of(metric)
        {
            db.connections_max_by_service.insert(app.to_owned(), max);
        }
    }
    db.lock_waits_max = max_of("lock_waits");
    db.commits_per_s = SeriesStats::of(&log.series(pg, "commits_per_s").map(|(_, v)| v).collect::<Vec<_>>());
    let last = |metric: &str| log.series(pg, metric).last().map(|(_, v)| v);
    if let (Some(live_rows), Some(dead_rows), Some(size_bytes)) =
        (last("table_live_rows"), last("table_dead_rows"), last("table_size_bytes"))
    {
        db.table = Some(TableEnd { live_rows, dead_rows, size_bytes });
    }
    if let Some(end) = end {
        db.cache_hit_ratio = end.cache_hit_ratio;
        db.commits = end.commits;
        db.rollbacks = end.rollbacks;
        db.top_statements = end.top_statements;
        db.explain = end.explain;
        db.unavailable = end.unavailable;
    }
    db
}

/// The `services` section: every scraped metric's mean, max and last value per service.
pub fn services(log: &ObservationLog, names: &[String]) -> BTreeMap<String, BTreeMap<String, SeriesStats>> {
    names
        .iter()
        .filter_map(|name| {
            let metrics: BTreeMap<String, SeriesStats> = log
                .metrics(name)
                .into_iter()
                .filter(|m| !is_resource_metric(m))
                .filter_map(|m| {
                    let values: Vec<f64> = log.series(name, m).map(|(_, v)| v).collect();
                    Some((m.to_owned(), SeriesStats::of(&values)?))
                })
                .collect();
            (!metrics.is_empty()).then(|| (name.clone(), metrics))
        })
        .collect()
}

fn is_resource_metric(metric: &str) -> bool {
    matches!(
        metric,
        "cpu_percent" | "cpu_limit_percent" | "memory_bytes" | "memory_limit_bytes" | "threads" | "open_files"
    )
}

/// What the reader must be told, loudly.
pub fn warnings(resources: &Resources) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(g) = resources.generator {
        if g.saturated {
            warnings.push(format!(
                "GENERATOR SATURATED: loadgen used {:.0}% CPU of its {:.0}% limit; latencies and rates include the \
                 generator's own delays, so this run does not measure the system under test. Lower the load, \
                 give loadgen more cores, or run it on another machine.",
                g.cpu_percent_max, g.cpu_limit_percent
            ));
        }
        if g.machine_saturated {
            warnings.push(format!(
                "MACHINE CPU SATURATED: all cores were busy ({:.0}% of one core at peak); loadgen competed with the \
                 system under test for CPU, so latencies include waiting for a core on both sides.",
                g.machine_cpu_percent_max.unwrap_or_default()
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observation;

    fn log(rows: &[(u64, &str, &str, f64)]) -> ObservationLog {
        ObservationLog { rows: rows.iter().map(|(t, c, m, v)| Observation::new(*t, *c, *m, *v)).collect() }
    }

    #[test]
    fn a_generator_near_its_limit_is_flagged_and_a_busy_sut_is_not() {
        let mut rows = Vec::new();
        for t in 1..=5 {
            rows.push((t, "loadgen", "cpu_percent", 190.0));
            rows.push((t, "loadgen", "cpu_limit_percent", 200.0));
            rows.push((t, "event-handler", "cpu_percent", 199.0));
            rows.push((t, "event-handler", "cpu_limit_percent", 200.0));
        }
        let r = resources(&log(&rows));
        assert!(r.generator.unwrap().saturated);
        assert!(warnings(&r)[0].starts_with("GENERATOR SATURATED"));

        let calm: Vec<_> = rows
            .iter()
            .map(|&(t, c, m, v)| (t, c, m, if c == "loadgen" && m == "cpu_percent" { 40.0 } else { v }))
            .collect();
        let r = resources(&log(&calm));
        assert!(!r.generator.unwrap().saturated);
        assert!(warnings(&r).is_empty());
    }

    #[test]
    fn pool_busy_is_the_highest_share_of_any_pool() {
        let l = log(&[
            (1, "challenge-service", "db_pool_connections_max", 50.0),
            (1, "challenge-service", "db_pool_connections_active", 10.0),
            (2, "challenge-service", "db_pool_connections_max", 50.0),
            (2, "challenge-service", "db_pool_connections_active", 45.0),
            (1, "event-handler", "db_pool_connections_max", 10.0),
            (1, "event-handler", "db_pool_connections_active", 3.0),
        ]);
        let db = database(&l, None);
        assert_eq!(db.pool_busy_max, Some(0.9));
        assert_eq!(db.pool_busy_max_by_service["event-handler"], 0.3);
    }
}
