//! The charts the documents show: one run's (latency spectrum, rates, resources, the database)
//! and those across levels (latency and throughput against the offered load).

use std::collections::BTreeMap;

use super::charts::{self, Series};
use super::markup::Doc;
use crate::results::read::{RunData, by_offered_load};
use crate::target::operations::Operation;
use crate::verdict::limits::Limits;
use crate::verdict::scaling::{LevelPoint, knee};

/// The charts of one run.
pub fn run_charts(doc: &mut Doc, run: &RunData) {
    let id = |what: &str| format!("{}-{what}", slug(&run.name));
    let ops: Vec<(String, &hdrhistogram::Histogram<u64>, &hdrhistogram::Histogram<u64>)> =
        run.histograms.iter().map(|(name, (l, s))| (name.clone(), l, s)).collect();
    doc.chart(
        &id("spectrum"),
        &format!("Latency percentile spectrum, {} (corrected solid, service time faint)", run.level_label()),
        chart(charts::spectrum_chart("Latency by percentile", &ops)),
    );
    for op in run.summary.operations.keys() {
        // Seconds without a completed request have no latency to draw.
        let rows: Vec<_> = run.rows_of(op).filter(|r| r.requests > 0.0).collect();
        let series = ["p50", "p95", "p99"]
            .iter()
            .enumerate()
            .map(|(i, name)| Series::new(*name, rows.iter().map(|r| (r.t_s, r.latency[i])).collect()))
            .collect::<Vec<_>>();
        doc.chart(
            &id(&format!("latency-{}", slug(op))),
            &format!("{op}: corrected latency per second"),
            chart(charts::line_chart(&format!("{op}: latency over time"), "second", "ms", &series)),
        );
    }
    let mut rate = Vec::new();
    let mut errors = Vec::new();
    for op in run.summary.operations.keys() {
        let rows: Vec<_> = run.rows_of(op).collect();
        rate.push(Series::new(format!("{op} achieved"), rows.iter().map(|r| (r.t_s, r.request_rate())).collect()));
        if rows.iter().any(|r| r.target_rate.is_some()) {
            rate.push(Series::faint(
                format!("{op} target"),
                rows.iter().map(|r| (r.t_s, r.target_rate.unwrap_or(0.0))).collect(),
            ));
        }
        if rows.iter().any(|r| r.dropped > 0.0) {
            rate.push(Series::new(format!("{op} dropped"), rows.iter().map(|r| (r.t_s, r.dropped_rate())).collect()));
        }
        errors.push(Series::new(op.clone(), rows.iter().map(|r| (r.t_s, r.errors)).collect()));
    }
    // Every chart below runs over the load's seconds.
    let mut over_time = |what: &str, caption: &str, title: &str, unit: &str, series: &[Series]| {
        doc.chart(&id(what), caption, chart(charts::line_chart(title, "second", unit, series)));
    };
    over_time(
        "rate",
        "Achieved vs target rate, and dropped arrivals, per second",
        "Rate over time",
        "per second",
        &rate,
    );
    over_time("errors", "Errors per second", "Errors over time", "errors", &errors);
    let log = &run.observations;
    let components: Vec<&str> = log.components().into_iter().filter(|c| *c != "machine").collect();
    // One line per component that has the metric, values scaled for the axis.
    let per_component = |metric: &str, scale: f64| -> Vec<Series> {
        components
            .iter()
            .filter(|c| log.series(c, metric).next().is_some())
            .map(|c| Series::new(*c, log.series(c, metric).map(|(t, v)| (t as f64, v * scale)).collect()))
            .collect()
    };
    let cpu = per_component("cpu_percent", 1.0);
    over_time("cpu", "CPU per component (100% = one core)", "CPU over time", "% of one core", &cpu);
    let memory = per_component("memory_bytes", 1.0 / 1_048_576.0);
    over_time("memory", "Resident memory per component", "Memory over time", "MiB", &memory);
    let heap = per_component("heap_allocated_bytes", 1.0 / 1_048_576.0);
    over_time("heap", "Heap in use per service, as its allocator counts it", "Heap over time", "MiB", &heap);
    let pools: Vec<Series> = run
        .summary
        .services
        .keys()
        .filter_map(|s| {
            let size: BTreeMap<u64, f64> = log.series(s, "db_pool_connections_max").collect();
            let points: Vec<(f64, f64)> = log
                .series(s, "db_pool_connections_active")
                .filter_map(|(t, v)| Some((t as f64, v / size.get(&t).filter(|m| **m > 0.0)? * 100.0)))
                .collect();
            (!points.is_empty()).then(|| Series::new(format!("{s} pool busy %"), points))
        })
        .collect();
    over_time("pool", "Connection pool in use, % of its size", "Pool over time", "% busy", &pools);
    let tasks: Vec<Series> = [("tokio_alive_tasks", "alive tasks"), ("tokio_global_queue_depth", "global queue")]
        .into_iter()
        .flat_map(|(metric, what)| {
            per_component(metric, 1.0).into_iter().map(move |s| Series::new(format!("{} {what}", s.name), s.points))
        })
        .collect();
    let caption = "Async runtime: tasks alive, and waiting in the global queue, per service";
    over_time("tasks", caption, "Tasks over time", "tasks", &tasks);
    let buffer: Vec<Series> = [("event_buffer_size", "buffer entries"), ("event_buffer_limit", "limit")]
        .iter()
        .map(|(metric, name)| {
            Series::new(*name, log.series("event-handler", metric).map(|(t, v)| (t as f64, v)).collect())
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    over_time("buffer", "Event buffer entries waiting to be flushed", "Buffer over time", "entries", &buffer);
}

/// The p95 limit an operation's levels are judged against (none for whole sessions and the
/// end-to-end probe, whose steps are judged instead).
pub(super) fn p95_limit(operation: &str, limits: &Limits) -> f64 {
    match Operation::named(operation) {
        Some(Operation::EndToEnd | Operation::Session) => f64::INFINITY,
        Some(op) if op.is_grpc() => limits.event_p95_ms,
        _ => limits.api_p95_ms,
    }
}

/// Latency and throughput against the offered load, across levels, each operation's knee
/// marked (the first level whose achieved rate fell below 0.95 × offered or whose p95 went over
/// its limit).
pub fn level_charts(doc: &mut Doc, runs: &[RunData], limits: &Limits) {
    let ordered = by_offered_load(runs);
    let mut ops: Vec<String> = ordered.iter().flat_map(|r| r.summary.operations.keys().cloned()).collect();
    ops.sort();
    ops.dedup();
    let offered = |r: &RunData, op: &str| r.summary.operations.get(op).and_then(|o| o.target_rate);
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for op in &ops {
        let points = |f: &dyn Fn(&crate::results::summary::OperationSummary) -> f64| -> Vec<(f64, f64)> {
            ordered.iter().filter_map(|r| Some((offered(r, op)?, f(r.summary.operations.get(op)?)))).collect()
        };
        let p95 = points(&|o| o.latency_ms.p95);
        if p95.is_empty() {
            continue;
        }
        let levels: Vec<LevelPoint> = ordered
            .iter()
            .filter_map(|r| {
                let o = r.summary.operations.get(op)?;
                Some(LevelPoint { offered: o.target_rate?, achieved: o.achieved_rate, p95_ms: o.latency_ms.p95 })
            })
            .collect();
        let knee_at = knee(&levels, p95_limit(op, limits)).map(|i| levels[i].offered);
        let top = |points: &[(f64, f64)]| points.iter().map(|p| p.1).fold(0.0, f64::max);
        let achieved = points(&|o| o.achieved_rate);
        let offered_points = points(&|o| o.target_rate.unwrap_or(0.0));
        let p99 = points(&|o| o.latency_ms.p99);
        let (latency_top, throughput_top) = (top(&p95).max(top(&p99)), top(&achieved).max(top(&offered_points)));
        latency.push(Series::new(format!("{op} p95"), p95));
        latency.push(Series::faint(format!("{op} p99"), p99));
        throughput.push(Series::new(format!("{op} achieved"), achieved));
        throughput.push(Series::faint(format!("{op} offered"), offered_points));
        if let Some(x) = knee_at {
            latency.push(Series::faint(format!("{op} knee"), vec![(x, 0.0), (x, latency_top)]));
            throughput.push(Series::faint(format!("{op} knee"), vec![(x, 0.0), (x, throughput_top)]));
        }
    }
    doc.chart(
        "levels-latency",
        "Corrected latency against offered load; each knee (a vertical line) is the first level whose achieved rate \
         fell below 0.95 × offered or whose p95 went over its limit",
        chart(charts::line_chart("Latency vs offered load", "offered per second", "ms", &latency)),
    );
    doc.chart(
        "levels-throughput",
        "Achieved against offered load",
        chart(charts::line_chart(
            "Throughput vs offered load",
            "offered per second",
            "achieved per second",
            &throughput,
        )),
    );
}

pub(super) fn chart(result: Result<Option<String>, String>) -> Option<String> {
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a chart could not be drawn");
        None
    })
}

/// A file-name-safe form of a name.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}
