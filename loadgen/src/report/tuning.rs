//! The Performance Tuning Guide: runs that differ in a SUT setting side by side, then the
//! heaviest run's statements, pools, buffer and the knobs to turn.

use super::format::*;
use super::markup::{Block, Doc};
use crate::results::read::RunData;

/// Where the heaviest run spent its capacity: the first resource to saturate, and the statement
/// that took the most database time.
fn verdict(run: &RunData) -> String {
    let findings = super::analysis::bottlenecks(run);
    let first = match findings.iter().find(|f| f.saturated_at.is_some()) {
        Some(f) => format!("at **{}**, **{}** saturated first ({})", run.level_label(), f.resource, f.evidence),
        None => format!("at **{}**, no resource saturated: tune for headroom, not for a limit", run.level_label()),
    };
    let top = run.summary.database.as_ref().and_then(|d| d.top_statements.first()).map_or(String::new(), |s| {
        let words = s.query.split_whitespace().take(4).collect::<Vec<_>>().join(" ").replace('`', "'");
        format!("; the most database time went to `{words}…` ({} calls × {:.2} ms)", s.calls, s.mean_ms)
    });
    format!("{first}{top}.")
}

/// Where each service's memory went over the profiling window (scenario 4): the allocation
/// sites holding the most at its end and those that grew the most.
fn heap_section(doc: &mut Doc, run: &RunData) {
    if run.summary.heap.is_empty() {
        return;
    }
    doc.h2("Heap by allocation site");
    doc.p("From each service's heap profile at the start and the end of the profiling window (jemalloc's samples, \
         one per 512 KiB allocated on average, scaled to bytes): the functions that asked for the memory still in \
         use, past the allocator and the standard containers. What a service's first profiles keep for good (its \
         symbol cache, the CPU sampler's buffers) was allocated by a profile taken and dropped before the window. \
         The flamegraphs are in `profiles/` (`<service>.heap-start.svg`, `<service>.heap.svg`, \
         `<service>.heap-growth.svg`; `<service>.heap.pb.gz` opens in `go tool pprof`).");
    let mb = |bytes: i64| format!("{:.2}", bytes as f64 / 1e6);
    for heap in &run.summary.heap {
        doc.h3(format!(
            "{}: {} MB in use at the window's start, {} MB at its end",
            heap.service,
            mb(heap.start_bytes),
            mb(heap.end_bytes)
        ));
        let grown = |function: &str| heap.top_growth.iter().find(|s| s.function == function).map(|s| s.bytes);
        let mut rows: Vec<Vec<String>> = heap
            .top_sites
            .iter()
            .map(|s| {
                vec![
                    format!("`{}`", s.function.replace('`', "'")),
                    mb(s.bytes),
                    grown(&s.function).map_or("–".into(), mb),
                ]
            })
            .collect();
        for site in heap.top_growth.iter().filter(|g| !heap.top_sites.iter().any(|s| s.function == g.function)) {
            rows.push(vec![format!("`{}`", site.function.replace('`', "'")), "–".into(), mb(site.bytes)]);
        }
        doc.table(&["allocation site", "MB in use at the end", "MB grown over the window"], rows);
    }
}

/// The Performance Tuning Guide.
pub fn tuning(runs: &[RunData]) -> Doc {
    let mut doc = Doc::new(super::title("performance-tuning"));
    let run = heaviest(runs);
    doc.verdict(verdict(run));
    // Runs that differ in a SUT setting are compared first: that is what such a set is for.
    let compared = super::settings::compare(&mut doc, runs);
    if compared {
        doc.h2("The heaviest run in detail");
    }
    doc.p(format!("From `{}` ({}), the heaviest level given.", run.name, run.level_label()));
    let Some(db) = &run.summary.database else {
        doc.p("This run has no database observations.");
        return doc;
    };
    doc.h2("Top statements");
    doc.table(
        &["calls", "total ms", "mean ms", "max ms", "rows", "statement"],
        db.top_statements
            .iter()
            .map(|s| {
                vec![
                    s.calls.to_string(),
                    format!("{:.0}", s.total_ms),
                    format!("{:.3}", s.mean_ms),
                    format!("{:.1}", s.max_ms),
                    s.rows.to_string(),
                    format!("`{}`", s.query.chars().take(160).collect::<String>().replace('`', "'")),
                ]
            })
            .collect(),
    );
    doc.h2("Connection pools");
    doc.table(
        &["service", "pool size", "busy max"],
        db.pool_busy_max_by_service
            .iter()
            .map(|(s, busy)| {
                vec![s.clone(), opt(db.pool_size_by_service.get(s).copied(), |v| format!("{v:.0}")), pct(*busy)]
            })
            .collect(),
    );
    doc.p(format!(
        "Cache hit ratio {}; most connections at once {}; most lock waits at once {}.",
        opt(db.cache_hit_ratio, pct),
        opt(db.connections_max, |v| format!("{v:.0}")),
        opt(db.lock_waits_max, |v| format!("{v:.0}"))
    ));
    doc.h2("Buffer and flush");
    let handler = run.summary.services.get("event-handler");
    let stat = |m: &str| handler.and_then(|h| h.get(m)).copied();
    doc.table(
        &["metric", "mean", "max"],
        [
            ("event_buffer_size", "buffer entries"),
            ("event_buffer_flush_duration_seconds_mean", "flush duration, s"),
            ("event_buffer_flush_rows_mean", "rows per flush"),
            ("event_buffer_flush_failures_per_s", "failed flushes per s"),
        ]
        .iter()
        .filter_map(|(m, label)| {
            stat(m).map(|s| vec![(*label).to_owned(), format!("{:.3}", s.mean), format!("{:.3}", s.max)])
        })
        .collect(),
    );
    heap_section(&mut doc, run);
    doc.h2("Configuration knobs");
    let busy = db.pool_busy_max.unwrap_or(0.0);
    let flush = stat("event_buffer_flush_duration_seconds_mean").map_or(0.0, |s| s.max);
    doc.table(
        &["knob", "default", "observed", "advice"],
        vec![
            vec![
                "`--pool-size` (both services)".into(),
                "50".into(),
                format!("busy max {}", pct(busy)),
                if busy >= 0.9 { "raise it, or shorten transactions".into() } else { "large enough at this load".into() },
            ],
            vec![
                "`--flush-interval` (event handler)".into(),
                "1s".into(),
                format!("flush duration up to {flush:.2} s"),
                if flush >= 1.0 {
                    "flushes take longer than the interval: the buffer grows until RESOURCE_EXHAUSTED; a longer interval \
                     coalesces more but does not add write capacity"
                        .into()
                } else {
                    "flushes fit in the interval".into()
                },
            ],
            vec![
                "`--buffer-limit` (event handler)".into(),
                "100000".into(),
                format!("max {}", opt(stat("event_buffer_size").map(|s| s.max), |v| format!("{v:.0}"))),
                "bounds memory and the data at risk in a crash; raising it only delays backpressure".into(),
            ],
            vec![
                "`--grpc-connections` (loadgen)".into(),
                "1".into(),
                "the platform uses one HTTP/2 connection".into(),
                "keep 1 to match production".into(),
            ],
        ],
    );
    if !compared {
        doc.p("No run in this set varied a SUT setting: render runs made with different settings together \
             (`loadgen report A B`) to compare them here, or see regressions with `loadgen report --compare A B`.");
    }
    doc.h2("Query plans on the run's data");
    for e in &db.explain {
        doc.h3(e.name.clone());
        doc.push(Block::Code(e.plan.clone()));
    }
    if !db.unavailable.is_empty() {
        doc.h2("Not observed");
        doc.push(Block::List(db.unavailable.clone()));
    }
    doc
}
