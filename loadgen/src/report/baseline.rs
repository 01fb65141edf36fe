//! The Performance Baseline Report: the verdict, every operation's figures, faults, integrity,
//! the bottleneck and the charts of the heaviest run.

use super::analysis;
use super::figures::{level_charts, run_charts};
use super::format::*;
use super::markup::{Block, Doc};
use crate::results::read::RunData;
use crate::verdict::limits::{Limits, max_sustainable};

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

/// How fast each service's resources grew over each run's steady part (the `leak` metric).
fn growth_section(doc: &mut Doc, runs: &[RunData]) {
    let fitted: Vec<&RunData> = runs.iter().filter(|r| !r.summary.trends.is_empty()).collect();
    if fitted.is_empty() {
        return;
    }
    doc.h2("Growth over the steady part");
    doc.p("Each resource's per-second samples after the warm-up, fitted with a least-squares line: its slope per \
         hour and a 95% confidence interval, widened for samples that move in steps (the residuals' lag-1 \
         autocorrelation). A `leak` threshold fails only when the interval's low end is above its limit: growth \
         beyond doubt. An interval that spans the limit asks for a longer run.");
    let mut rows = Vec::new();
    for run in fitted {
        for t in &run.summary.trends {
            let bytes = t.series.in_bytes();
            rows.push(vec![
                run.level_label(),
                t.component.clone(),
                t.series.name().to_owned(),
                format!("{}–{} s", t.from_s, t.to_s),
                if bytes { format!("{:.1} MB", t.start / 1e6) } else { format!("{:.0}", t.start) },
                per_hour(t.per_hour, bytes),
                format!("{} … {}", per_hour(t.per_hour_low, bytes), per_hour(t.per_hour_high, bytes)),
                format!("{:.2}", t.r_squared),
            ]);
        }
    }
    doc.table(&["level", "component", "series", "steady part", "at its start", "growth", "95% interval", "R²"], rows);
}

/// What the report concludes: the thresholds, then `levels` (each kind of load against the
/// limits, as the maximum sustainable load section found them), then the books.
fn verdict(runs: &[RunData], levels: Vec<String>) -> String {
    let failed: Vec<String> = runs.iter().filter(|r| !r.summary.passed).map(|r| format!("`{}`", r.name)).collect();
    let mut parts = vec![match (failed.is_empty(), runs.len()) {
        (true, 1) => "**PASS**: the run kept every threshold".to_owned(),
        (true, n) => format!("**PASS**: all {n} runs kept every threshold"),
        (false, _) => format!("**FAIL**: {} broke a threshold", failed.join(", ")),
    }];
    parts.extend(levels);
    let audited: Vec<_> =
        runs.iter().filter_map(|r| r.summary.integrity.as_ref()).filter(|i| i.users_audited > 0).collect();
    if !audited.is_empty() {
        let found: u64 = audited.iter().flat_map(|i| i.counts()).map(|(_, n)| n).sum();
        let users: u64 = audited.iter().map(|i| i.users_audited).sum();
        parts.push(if found == 0 {
            format!("the books of {users} audited users are clean")
        } else {
            format!("the books of {users} audited users show {found} integrity failures (see Integrity)")
        });
    }
    format!("{}.", parts.join("; "))
}

/// The Performance Baseline Report.
pub fn baseline(runs: &[RunData], limits: &Limits) -> Doc {
    let mut doc = Doc::new(super::title("performance-baseline"));
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
    growth_section(&mut doc, runs);
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
    let mut levels = Vec::new();
    for (kind, members) in &groups {
        let (good, bad) = max_sustainable(members, limits);
        let prefix = if groups.len() > 1 { format!("{kind}: ") } else { String::new() };
        levels.extend(match (good, &bad) {
            (Some(g), Some((b, why))) => Some(format!(
                "{prefix}**{}** held the limits, **{}** broke them ({why})",
                g.level_label(),
                b.level_label()
            )),
            (Some(g), None) => Some(format!("{prefix}every level held the limits, up to **{}**", g.level_label())),
            (None, Some((b, why))) => {
                Some(format!("{prefix}no level held the limits (**{}**: {why})", b.level_label()))
            }
            (None, None) => None,
        });
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
    doc.verdict(verdict(runs, levels));

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
        level_charts(&mut doc, runs, limits);
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
