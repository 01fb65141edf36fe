//! The three documents: the Performance Baseline Report, the Capacity Planning Guide and the
//! Performance Tuning Guide, built from saved runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::analysis::{self, Limits};
use super::charts::{self, Series};
use super::data::RunData;
use super::doc::{Block, Doc};

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

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

/// The run a per-run section describes most (the heaviest level).
fn heaviest(runs: &[RunData]) -> &RunData {
    runs.iter().max_by(|a, b| a.offered_total().total_cmp(&b.offered_total())).expect("at least one run")
}

/// The runs from the lightest offered load to the heaviest.
fn by_offered_load<'a>(runs: impl IntoIterator<Item = &'a RunData>) -> Vec<&'a RunData> {
    let mut ordered: Vec<&RunData> = runs.into_iter().collect();
    ordered.sort_by(|a, b| a.offered_total().total_cmp(&b.offered_total()));
    ordered
}

/// The runs grouped by what they loaded (API only, events only, both): levels are only
/// comparable within a group.
fn groups(runs: &[RunData]) -> Vec<(&'static str, Vec<&RunData>)> {
    let kinds = [("API only", true, false), ("events only", false, true), ("API and events", true, true)];
    kinds
        .iter()
        .map(|(name, api, events)| {
            let members = runs
                .iter()
                .filter(|r| {
                    let (rps, eps) = r.offered();
                    (rps > 0.0) == *api && (eps > 0.0) == *events
                })
                .collect::<Vec<_>>();
            (*name, members)
        })
        .filter(|(_, members)| !members.is_empty())
        .collect()
}

/// The heaviest level within the limits and the lightest beyond them, in one group.
fn max_sustainable<'a>(runs: &[&'a RunData], limits: &Limits) -> (Option<&'a RunData>, Option<(&'a RunData, String)>) {
    let ordered = by_offered_load(runs.iter().copied());
    let good = ordered.iter().rev().find(|r| analysis::broken_limit(&r.summary, limits).is_none()).copied();
    let bad = ordered.iter().find_map(|r| analysis::broken_limit(&r.summary, limits).map(|why| (*r, why)));
    (good, bad)
}

/// Each injected fault: when, how the SUT answered meanwhile, how long it took to recover.
fn faults_section(doc: &mut Doc, runs: &[RunData]) {
    let faulted: Vec<_> = runs.iter().filter(|r| !r.summary.faults.is_empty()).collect();
    if faulted.is_empty() {
        return;
    }
    doc.h2("Faults");
    doc.p("Faults injected during the load through real means (the database server stopped, the reward mock's \
         settings changed). Recovery: from the fault's end until three seconds in a row had under 1% errors and \
         under 1% dropped.");
    let mut rows = Vec::new();
    for run in faulted {
        for verdict in &run.summary.faults {
            let during = &verdict.during;
            let mut kinds: Vec<(&String, &u64)> = during.errors_by_kind.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1));
            let kinds: Vec<String> = kinds.iter().take(3).map(|(k, n)| format!("{k} × {n}")).collect();
            rows.push(vec![
                run.level_label(),
                verdict.injected.fault.clone(),
                format!("{:.1}–{:.1}", verdict.injected.began_s, verdict.injected.ended_s),
                during.requests.to_string(),
                format!(
                    "{} {}",
                    during.errors,
                    if kinds.is_empty() { String::new() } else { format!("({})", kinds.join(", ")) }
                ),
                during.dropped.to_string(),
                match (verdict.recovered_after_s, &verdict.injected.error) {
                    (_, Some(error)) => format!("injection failed: {error}"),
                    (Some(s), None) => format!("{s:.0} s"),
                    (None, None) => "**not recovered** before the load ended".into(),
                },
            ]);
        }
    }
    doc.table(&["level", "fault", "in effect (s)", "requests", "errors", "dropped", "recovered after"], rows);
}

/// The SUT's books per run: what was audited and what was found.
fn integrity_section(doc: &mut Doc, runs: &[RunData]) {
    let audited: Vec<_> = runs.iter().filter_map(|r| r.summary.integrity.as_ref().map(|i| (r, i))).collect();
    if audited.is_empty() {
        return;
    }
    doc.h2("Integrity");
    doc.p("After the load, each audited user's goals were read through the API and compared with the events the SUT \
         accepted (SPEC §1), and the reward mock's grants were counted per goal.");
    let rows = audited
        .iter()
        .map(|(run, i)| {
            vec![
                run.level_label(),
                if i.clean() { "clean".into() } else { "**VIOLATED**".into() },
                i.users_audited.to_string(),
                format!("{} ({} unknown)", i.events_accepted, i.events_unknown),
                i.claims_succeeded.to_string(),
                i.events_lost.to_string(),
                i.events_double_applied.to_string(),
                if i.grants_counted { i.claims_double_granted.to_string() } else { "not counted".into() },
                if i.grants_counted { i.goals_claimed_without_grant.to_string() } else { "not counted".into() },
            ]
        })
        .collect();
    doc.table(
        &[
            "level",
            "books",
            "users",
            "events accepted",
            "claims",
            "events lost",
            "applied twice",
            "granted twice",
            "claimed, no grant",
        ],
        rows,
    );
    for (run, integrity) in &audited {
        for example in &integrity.examples {
            doc.push(Block::Warning(format!("{}: {example}", run.name)));
        }
        for note in &integrity.notes {
            doc.p(format!("{}: {note}", run.name));
        }
    }
}

/// The Performance Baseline Report.
pub fn baseline(runs: &[RunData], limits: &Limits) -> Doc {
    let mut doc = Doc::new("Performance Baseline Report");
    doc.p(format!(
        "Generated by Gauntlet from {} run(s): {}. Latency is measured from each request's intended start \
         (coordinated omission corrected); service time from the actual send.",
        runs.len(),
        runs.iter().map(|r| format!("`{}`", r.name)).collect::<Vec<_>>().join(", ")
    ));
    for run in runs {
        for warning in &run.summary.warnings {
            doc.push(Block::Warning(format!("{}: {warning}", run.name)));
        }
    }
    doc.h2("Results per load level");
    let mut rows = Vec::new();
    for run in runs {
        for (name, op) in &run.summary.operations {
            rows.push(vec![
                format!("{} ({})", run.summary.scenario, run.level_label()),
                name.clone(),
                opt(op.target_rate, |v| format!("{v:.1}")),
                format!("{:.1}", op.achieved_rate),
                ms(op.latency_ms.p50),
                ms(op.latency_ms.p95),
                ms(op.latency_ms.p99),
                pct(op.error_rate),
                pct(op.dropped_ratio),
            ]);
        }
    }
    doc.table(
        &["level", "operation", "target/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "errors", "dropped"],
        rows,
    );
    faults_section(&mut doc, runs);
    integrity_section(&mut doc, runs);
    doc.h2("Resources per load level");
    let mut rows = Vec::new();
    for run in runs {
        let Some(resources) = &run.summary.resources else { continue };
        for (component, c) in &resources.components {
            let buffer = (component == "event-handler")
                .then(|| {
                    run.summary.services.get("event-handler").and_then(|m| m.get("event_buffer_size")).map(|s| s.max)
                })
                .flatten();
            rows.push(vec![
                run.level_label(),
                component.clone(),
                format!("{:.1}", c.cpu_percent_mean),
                format!("{:.1}", c.cpu_percent_max),
                format!("{:.1}", c.memory_max_mb),
                opt(buffer, |v| format!("{v:.0}")),
            ]);
        }
    }
    doc.table(&["level", "component", "CPU % mean", "CPU % max", "memory MiB max", "buffer max"], rows);

    doc.h2("Maximum sustainable load");
    doc.p(format!(
        "Limits: errors ≤ {}, dropped ≤ {}, API p95 ≤ {:.0} ms, event p95 ≤ {:.0} ms.",
        pct(limits.error_rate),
        pct(limits.dropped_rate),
        limits.api_p95_ms,
        limits.event_p95_ms
    ));
    let groups = groups(runs);
    let mut first_bad = None;
    for (kind, members) in &groups {
        let (good, bad) = max_sustainable(members, limits);
        let prefix = if groups.len() > 1 { format!("{kind}: ") } else { String::new() };
        doc.p(match (good, &bad) {
            (Some(g), Some((b, why))) => format!(
                "{prefix}**{}** is the heaviest level measured within the limits; **{}** broke them first: {why}.",
                g.level_label(),
                b.level_label()
            ),
            (Some(g), None) => format!(
                "{prefix}every level measured kept the limits; the heaviest was **{}**, so the maximum sustainable \
                 load is at least that. A sweep (`loadgen sweep`) finds where it ends.",
                g.level_label()
            ),
            (None, Some((b, why))) => {
                format!(
                    "{prefix}no level measured kept the limits; the lightest, **{}**, broke them: {why}.",
                    b.level_label()
                )
            }
            (None, None) => format!("{prefix}no level was measured."),
        });
        first_bad = first_bad.or(bad);
    }

    doc.h2("Bottleneck analysis");
    let focus = first_bad.as_ref().map_or_else(|| heaviest(runs), |(b, _)| *b);
    let findings = analysis::bottlenecks(focus);
    match findings.iter().find(|f| f.saturated_at.is_some()) {
        Some(first) => doc.p(format!(
            "At **{}**, the first resource to saturate was **{}** (from second {} of the load): {}.",
            focus.level_label(),
            first.resource,
            first.saturated_at.unwrap_or_default(),
            first.evidence
        )),
        None => doc.p(format!(
            "At **{}**, no resource reached saturation (CPU ≥ 85% of its limit, pool ≥ 90% busy, buffer ≥ 90% full, \
             flushes ≥ 1 s): the system had headroom at this level.",
            focus.level_label()
        )),
    }
    doc.table(
        &["resource", "saturated from", "evidence"],
        findings
            .iter()
            .map(|f| {
                vec![f.resource.clone(), f.saturated_at.map_or("–".into(), |t| format!("{t} s")), f.evidence.clone()]
            })
            .collect(),
    );
    doc.h2("Recommendations");
    doc.push(Block::List(recommendations(&findings)));
    doc.h2("Charts");
    run_charts(&mut doc, focus);
    if runs.len() > 1 {
        level_charts(&mut doc, runs);
    }
    doc
}

fn recommendations(findings: &[analysis::Finding]) -> Vec<String> {
    let mut out = Vec::new();
    for f in findings.iter().filter(|f| f.saturated_at.is_some()) {
        let advice = match f.resource.as_str() {
            "database writes (buffer flush)" => {
                "The flush writes one row per (user, goal): about 100 rows per stat event. A layout that writes one row \
                 per (user, stat) and derives goals on read cuts the writes by the number of goals per stat."
            }
            "event buffer" => {
                "The buffer fills because flushes fall behind; raising `--buffer-limit` only delays the refusal. Speed \
                 up the flush (layout, batch size) or add database write capacity."
            }
            "database CPU" => "Give PostgreSQL more cores, or reduce statements per request (see the tuning guide).",
            "reward platform" => {
                "Claims wait on the reward platform: agree a latency budget with its owners, or make grants asynchronous."
            }
            r if r.starts_with("connection pool") => {
                "Raise the pool size, or shorten transactions so connections return sooner."
            }
            r if r.starts_with("SUT CPU") => "Add replicas of this service (it is stateless) or give it more cores.",
            r if r.starts_with("machine CPU") => {
                "Every core was busy: the SUT, PostgreSQL and loadgen competed. Separate them (Docker limits or other \
                 machines) before reading a capacity from this run."
            }
            _ => continue,
        };
        out.push(format!("**{}**: {advice}", f.resource));
    }
    if out.is_empty() {
        out.push("Nothing saturated: measure a heavier level (`loadgen sweep`) to find the first bottleneck.".into());
    }
    out
}

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
    doc.chart(
        &id("rate"),
        "Achieved vs target rate, and dropped arrivals, per second",
        chart(charts::line_chart("Rate over time", "second", "per second", &rate)),
    );
    doc.chart(
        &id("errors"),
        "Errors per second",
        chart(charts::line_chart("Errors over time", "second", "errors", &errors)),
    );
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
    doc.chart(
        &id("cpu"),
        "CPU per component (100% = one core)",
        chart(charts::line_chart("CPU over time", "second", "% of one core", &cpu)),
    );
    let memory = per_component("memory_bytes", 1.0 / 1_048_576.0);
    doc.chart(
        &id("memory"),
        "Resident memory per component",
        chart(charts::line_chart("Memory over time", "second", "MiB", &memory)),
    );
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
    doc.chart(
        &id("pool"),
        "Connection pool in use, % of its size",
        chart(charts::line_chart("Pool over time", "second", "% busy", &pools)),
    );
    let buffer: Vec<Series> = [("event_buffer_size", "buffer entries"), ("event_buffer_limit", "limit")]
        .iter()
        .map(|(metric, name)| {
            Series::new(*name, log.series("event-handler", metric).map(|(t, v)| (t as f64, v)).collect())
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    doc.chart(
        &id("buffer"),
        "Event buffer entries waiting to be flushed",
        chart(charts::line_chart("Buffer over time", "second", "entries", &buffer)),
    );
}

/// Latency and throughput against the offered load, across levels.
pub fn level_charts(doc: &mut Doc, runs: &[RunData]) {
    let ordered = by_offered_load(runs);
    let mut ops: Vec<String> = ordered.iter().flat_map(|r| r.summary.operations.keys().cloned()).collect();
    ops.sort();
    ops.dedup();
    let offered = |r: &RunData, op: &str| r.summary.operations.get(op).and_then(|o| o.target_rate);
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for op in &ops {
        let points = |f: &dyn Fn(&crate::summary::OperationSummary) -> f64| -> Vec<(f64, f64)> {
            ordered.iter().filter_map(|r| Some((offered(r, op)?, f(r.summary.operations.get(op)?)))).collect()
        };
        let p95 = points(&|o| o.latency_ms.p95);
        if p95.is_empty() {
            continue;
        }
        latency.push(Series::new(format!("{op} p95"), p95));
        latency.push(Series::faint(format!("{op} p99"), points(&|o| o.latency_ms.p99)));
        throughput.push(Series::new(format!("{op} achieved"), points(&|o| o.achieved_rate)));
        throughput.push(Series::faint(format!("{op} offered"), points(&|o| o.target_rate.unwrap_or(0.0))));
    }
    doc.chart(
        "levels-latency",
        "Corrected latency against offered load (the knee is where it turns up)",
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

fn chart(result: Result<Option<String>, String>) -> Option<String> {
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

/// The Capacity Planning Guide.
pub fn capacity(runs: &[RunData], limits: &Limits, model: &CapacityModel) -> Doc {
    let mut doc = Doc::new("Capacity Planning Guide");
    doc.h2("Per-instance capacity");
    // API capacity from the API-only levels when there are some, event capacity likewise; a
    // single kind of run gives both.
    let groups = groups(runs);
    let best =
        |kind: &str| groups.iter().find(|(k, _)| *k == kind).map(|(_, members)| max_sustainable(members, limits));
    let (combined, api_only, events_only) = (best("API and events"), best("API only"), best("events only"));
    let (Some(good), bad) =
        combined.clone().or_else(|| api_only.clone()).or_else(|| events_only.clone()).unwrap_or((None, None))
    else {
        doc.p("No measured level kept the limits, so no capacity can be stated. Measure lighter levels first.");
        return doc;
    };
    let api_alone = api_only.and_then(|(g, _)| g).map(|g| g.offered().0);
    let events_alone = events_only.and_then(|(g, _)| g).map(|g| g.offered().1);
    let (rps, eps) = match (api_alone, events_alone, combined.and_then(|(g, _)| g)) {
        (Some(r), Some(e), _) => (r, e),
        (r, e, Some(c)) => (r.unwrap_or(c.offered().0), e.unwrap_or(c.offered().1)),
        (r, e, None) => (r.unwrap_or(good.offered().0), e.unwrap_or(good.offered().1)),
    };
    let known_limit = bad.is_some();
    doc.p(format!(
        "One instance of each service (on the measured machine: {}) sustained **{}** within the limits{}. With {:.0}% \
         headroom kept free, plan for **{:.0} rps** and **{:.0} eps** per instance{}.",
        machine_text(good),
        good.level_label(),
        if known_limit {
            " (the next level broke them)"
        } else {
            " (the highest level measured: the real limit is higher)"
        },
        model.headroom * 100.0,
        rps * (1.0 - model.headroom),
        eps * (1.0 - model.headroom),
        if api_alone.is_some() || events_alone.is_some() {
            format!(
                " (from the isolated levels: API alone {}, events alone {})",
                api_alone.map_or("not measured".into(), |r| format!("{r:.0} rps")),
                events_alone.map_or("not measured".into(), |e| format!("{e:.0} eps"))
            )
        } else {
            String::new()
        }
    ));
    for warning in &good.summary.warnings {
        doc.push(Block::Warning(warning.clone()));
    }
    doc.h2("Load tiers");
    doc.p(format!(
        "Model: {} API requests and {} events per daily active user per day, a peak hour {}× the daily average, \
         {} stored users per daily active user with {} progress rows each. Change it with `--capacity-model FILE` \
         (YAML with these fields).",
        model.requests_per_user_per_day,
        model.events_per_user_per_day,
        model.peak_factor,
        model.stored_users_per_dau,
        model.rows_per_user
    ));
    let bytes_per_row = good
        .summary
        .database
        .as_ref()
        .and_then(|d| d.table)
        .filter(|t| t.live_rows > 0.0)
        .map(|t| t.size_bytes / t.live_rows);
    let plan_rps = (rps * (1.0 - model.headroom)).max(f64::MIN_POSITIVE);
    let plan_eps = (eps * (1.0 - model.headroom)).max(f64::MIN_POSITIVE);
    let mut rows = Vec::new();
    let mut arithmetic = Vec::new();
    for dau in &model.tiers_dau {
        let dau = *dau as f64;
        let peak_rps = dau * model.requests_per_user_per_day / 86_400.0 * model.peak_factor;
        let peak_eps = dau * model.events_per_user_per_day / 86_400.0 * model.peak_factor;
        let api = if rps > 0.0 { (peak_rps / plan_rps).ceil().max(1.0) } else { f64::NAN };
        let events = if eps > 0.0 { (peak_eps / plan_eps).ceil().max(1.0) } else { f64::NAN };
        let db_bytes = bytes_per_row.map(|b| dau * model.stored_users_per_dau * model.rows_per_user * b);
        rows.push(vec![
            format!("{dau:.0}"),
            format!("{peak_rps:.0}"),
            format!("{peak_eps:.0}"),
            if api.is_nan() { "not measured".into() } else { format!("{api:.0}") },
            if events.is_nan() { "not measured".into() } else { format!("{events:.0}") },
            opt(db_bytes, |b| format!("{:.1} GiB", b / 1_073_741_824.0)),
        ]);
        arithmetic.push(format!(
            "{dau:.0} DAU:\n  peak rps = {dau:.0} × {} / 86400 × {} = {peak_rps:.1}\n  API replicas = ⌈{peak_rps:.1} / {plan_rps:.1}⌉ = {api:.0}\n  \
             peak eps = {dau:.0} × {} / 86400 × {} = {peak_eps:.1}\n  event replicas = ⌈{peak_eps:.1} / {plan_eps:.1}⌉ = {events:.0}{}",
            model.requests_per_user_per_day,
            model.peak_factor,
            model.events_per_user_per_day,
            model.peak_factor,
            bytes_per_row.map_or(String::new(), |b| format!(
                "\n  database = {dau:.0} × {} × {} rows × {b:.0} B/row",
                model.stored_users_per_dau, model.rows_per_user
            ))
        ));
    }
    doc.table(
        &["daily active users", "peak rps", "peak eps", "API replicas", "event handler replicas", "database size"],
        rows,
    );
    doc.push(Block::Code(arithmetic.join("\n")));
    doc.h2("Vertical or horizontal scaling");
    let findings = analysis::bottlenecks(bad.as_ref().map_or(good, |(b, _)| *b));
    let first = findings.iter().find(|f| f.saturated_at.is_some()).map(|f| f.resource.clone());
    doc.p(match first.as_deref() {
        Some(r) if r.starts_with("SUT CPU") => format!(
            "The first limit was {r}: the services are stateless, so **horizontal** scaling (more replicas) raises \
             capacity roughly linearly until the database becomes the limit."
        ),
        Some(r) if r.contains("database") || r == "event buffer" => format!(
            "The first limit was {r}: more service replicas send the same writes to the same database, so horizontal \
             scaling of the services does **not** help. Scale the database **vertically** (cores, faster storage) or \
             reduce the writes per event."
        ),
        Some(r) => format!("The first limit was {r}; see the baseline report's recommendations."),
        None => "No resource saturated in the runs given; the replica counts above assume capacity scales linearly \
                 with replicas, which a sweep with two instances should confirm."
            .to_owned(),
    });
    doc
}

fn machine_text(run: &RunData) -> String {
    let cpus = run.run.pointer("/machine/cpus").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let memory = run.run.pointer("/machine/memory_bytes").and_then(serde_json::Value::as_u64).unwrap_or(0);
    format!("{cpus} cores, {:.0} GiB, shared by the services, PostgreSQL and loadgen", memory as f64 / 1_073_741_824.0)
}

/// The Performance Tuning Guide.
pub fn tuning(runs: &[RunData]) -> Doc {
    let mut doc = Doc::new("Performance Tuning Guide");
    let run = heaviest(runs);
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
