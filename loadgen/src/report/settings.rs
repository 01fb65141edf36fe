//! Runs that differ in a setting of the system under test (`--store`, a service flag), side by
//! side in the Performance Tuning Guide: what was set, and what each run achieved with it.

use crate::target::operations::Operation;
use std::collections::{BTreeMap, BTreeSet};

use super::markup::Doc;
use crate::results::read::RunData;

/// A run's SUT settings from its `run.json`: `store` and every `service --flag` passed.
pub fn sut_settings(run: &RunData) -> BTreeMap<String, String> {
    let plan = &run.run["plan"];
    let mut settings = BTreeMap::new();
    if let Some(store) = plan["store"].as_str() {
        settings.insert("--store".to_owned(), store.to_owned());
    }
    if let Some(services) = plan["service_args"].as_object() {
        for (service, args) in services {
            let args: Vec<&str> = args.as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
            for pair in args.chunks(2) {
                if let [flag, value] = pair
                    && *flag != "--store"
                {
                    settings.insert(format!("{service} {flag}"), (*value).to_owned());
                }
            }
        }
    }
    settings
}

/// The settings whose values differ between `runs` (a setting one run lacks counts as differing).
pub fn varied(runs: &[RunData]) -> Vec<String> {
    let all: Vec<BTreeMap<String, String>> = runs.iter().map(sut_settings).collect();
    let names: BTreeSet<&String> = all.iter().flat_map(BTreeMap::keys).collect();
    names
        .into_iter()
        .filter(|name| all.iter().map(|s| s.get(*name)).collect::<BTreeSet<_>>().len() > 1)
        .cloned()
        .collect()
}

/// Appends the comparison to `doc`; false (and nothing appended) when no setting varied.
pub fn compare(doc: &mut Doc, runs: &[RunData]) -> bool {
    let varied = varied(runs);
    if varied.is_empty() {
        return false;
    }
    doc.h2("SUT settings compared");
    doc.p(format!(
        "These runs differ in {}. Each row is one run; compare rows at the same offered load.",
        varied.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
    ));
    let mut head: Vec<&str> = vec!["run", "offered"];
    head.extend(varied.iter().map(String::as_str));
    head.extend([
        "events/s",
        "event p95 ms",
        "events failed",
        "events dropped",
        "API p95 ms",
        "PostgreSQL CPU %",
        "top statement: calls × mean ms",
    ]);
    let mut ordered: Vec<&RunData> = runs.iter().collect();
    ordered.sort_by(|a, b| a.offered_total().total_cmp(&b.offered_total()).then(a.name.cmp(&b.name)));
    let rows = ordered
        .into_iter()
        .map(|run| {
            let settings = sut_settings(run);
            let ops = &run.summary.operations;
            let is_event = |name: &str| Operation::named(name).is_some_and(Operation::is_grpc);
            let events: Vec<_> = ops.iter().filter(|(name, _)| is_event(name)).map(|(_, o)| o).collect();
            let achieved: f64 = events.iter().map(|o| o.achieved_rate).sum();
            let requests: u64 = events.iter().map(|o| o.requests).sum();
            let share = |count: u64| if requests == 0 { 0.0 } else { count as f64 / requests as f64 };
            let failed = share(events.iter().map(|o| o.errors).sum());
            let arrivals = requests + events.iter().map(|o| o.dropped).sum::<u64>();
            let dropped = events.iter().map(|o| o.dropped).sum::<u64>() as f64 / (arrivals.max(1) as f64);
            let event_p95 =
                events.iter().map(|o| o.latency_ms.p95).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            let api_p95 = ops.get(Operation::GetChallenges.name()).map(|o| o.latency_ms.p95);
            let postgres =
                run.summary.resources.as_ref().and_then(|r| r.components.get("postgres")).map(|c| c.cpu_percent_mean);
            let top = run.summary.database.as_ref().and_then(|d| d.top_statements.first()).map(|s| {
                let words: String = s.query.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
                format!("`{words}…` {} × {:.2}", s.calls, s.mean_ms)
            });
            let dash = || "–".to_owned();
            let mut row = vec![run.name.clone(), run.level_label()];
            row.extend(varied.iter().map(|v| settings.get(v).cloned().unwrap_or_else(dash)));
            row.extend([
                if events.is_empty() { dash() } else { format!("{achieved:.0}") },
                event_p95.map_or_else(dash, |v| format!("{v:.2}")),
                if events.is_empty() { dash() } else { format!("{:.2}%", failed * 100.0) },
                if events.is_empty() { dash() } else { format!("{:.2}%", dropped * 100.0) },
                api_p95.map_or_else(dash, |v| format!("{v:.2}")),
                postgres.map_or_else(dash, |v| format!("{v:.1}")),
                top.unwrap_or_else(dash),
            ]);
            row
        })
        .collect();
    doc.table(&head, rows);
    true
}
