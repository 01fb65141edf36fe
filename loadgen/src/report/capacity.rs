//! The Capacity Planning Guide: the maximum sustainable load per kind of load, and what the
//! capacity model's tiers need of it.

use super::analysis;
use super::format::*;
use super::markup::{Block, Doc};
use super::model::CapacityModel;
use crate::results::read::RunData;
use crate::verdict::limits::{Limits, broken_limit, max_sustainable};
use crate::verdict::scaling::{UslFit, fit_usl};

/// The Capacity Planning Guide.
pub fn capacity(runs: &[RunData], limits: &Limits, model: &CapacityModel) -> Doc {
    let mut doc = Doc::new(super::title("capacity-planning"));
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
        doc.verdict("no measured level held the limits, so no capacity can be stated: measure lighter levels.");
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
    scalability(&mut doc, runs, limits);
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
    let mut largest = None;
    for dau in &model.tiers_dau {
        let dau = *dau as f64;
        let peak_rps = dau * model.requests_per_user_per_day / 86_400.0 * model.peak_factor;
        let peak_eps = dau * model.events_per_user_per_day / 86_400.0 * model.peak_factor;
        let api = if rps > 0.0 { (peak_rps / plan_rps).ceil().max(1.0) } else { f64::NAN };
        let events = if eps > 0.0 { (peak_eps / plan_eps).ceil().max(1.0) } else { f64::NAN };
        let db_bytes = bytes_per_row.map(|b| dau * model.stored_users_per_dau * model.rows_per_user * b);
        largest = Some((dau, api, events));
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
    let replicas = |n: f64| if n.is_nan() { "not measured".to_owned() } else { format!("{n:.0}") };
    doc.verdict(format!(
        "one instance of each service sustained **{}**{}: plan for **{:.0} rps** and **{:.0} eps** per instance{}.",
        good.level_label(),
        if known_limit { "" } else { " (the highest level measured: the real limit is higher)" },
        plan_rps,
        plan_eps,
        largest.map_or(String::new(), |(dau, api, events)| format!(
            "; the largest tier ({dau:.0} daily active users) needs {} API and {} event handler replicas",
            replicas(api),
            replicas(events)
        ))
    ));
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

/// The concurrency a level implies (Little's law: achieved rate × mean latency, summed over the
/// operations) and its throughput.
fn concurrency_and_throughput(run: &RunData) -> (f64, f64) {
    let ops = run.summary.operations.values().filter(|o| o.target_rate.is_some());
    ops.fold((0.0, 0.0), |(n, x), o| (n + o.achieved_rate * o.latency_ms.mean / 1000.0, x + o.achieved_rate))
}

/// The Universal Scalability Law fitted to the levels that kept the limits, drawn over them,
/// with how good the fit is and where it puts the peak.
fn scalability(doc: &mut Doc, runs: &[RunData], limits: &Limits) {
    doc.h2("Scalability model");
    let groups = groups(runs);
    let Some((kind, members)) = groups.iter().max_by_key(|(_, m)| m.len()) else { return };
    let sustained: Vec<&RunData> =
        members.iter().copied().filter(|r| broken_limit(&r.summary, limits).is_none()).collect();
    let points: Vec<(f64, f64)> = sustained.iter().map(|r| concurrency_and_throughput(r)).collect();
    let Some(fit) = fit_usl(&points) else {
        doc.p(format!(
            "The Universal Scalability Law needs at least three levels that kept the limits; the {kind} levels have {}. \
             Sweep more levels to fit it.",
            sustained.len()
        ));
        return;
    };
    let max_n = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let peak = fit.peak();
    let reach = peak.map_or(max_n * 2.0, |(n, _)| n.max(max_n) * 1.2).min(max_n * 20.0).max(max_n);
    let curve: Vec<(f64, f64)> =
        (0..=60).map(|i| reach * f64::from(i) / 60.0).map(|n| (n, fit.throughput(n))).collect();
    let mut measured = points.clone();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    let series = [
        super::charts::Series::new("measured (sustained levels)", measured),
        super::charts::Series::faint("fitted law", curve),
    ];
    doc.chart(
        "usl",
        "Throughput against concurrency (achieved rate × mean latency): the sustained levels and the fitted law",
        super::figures::chart(super::charts::line_chart(
            "Universal Scalability Law",
            "concurrency N (requests in the system)",
            "throughput per second",
            &series,
        )),
    );
    doc.table(
        &["λ (per unit of concurrency)", "α (contention)", "β (coherency)", "R²", "levels", "peak"],
        vec![vec![
            format!("{:.1}/s", fit.lambda),
            format!("{:.4}", fit.alpha),
            format!("{:.2e}", fit.beta),
            format!("{:.3}", fit.r_squared),
            fit.points.to_string(),
            peak.map_or("none (β ≈ 0)".into(), |(n, x)| format!("{x:.0}/s at N ≈ {n:.0}")),
        ]],
    );
    doc.p(fit_quality(&fit, max_n, kind));
}

/// What the fit can be trusted for, in words.
fn fit_quality(fit: &UslFit, max_n: f64, kind: &str) -> String {
    let quality = match fit.r_squared {
        r if r >= 0.98 => "a close fit",
        r if r >= 0.9 => "a fair fit",
        _ => "a poor fit: the levels scatter more than the law explains, so read its peak as a rough guide only",
    };
    let few = if fit.points < 5 { " With fewer than five levels, α and β are loosely pinned." } else { "" };
    let peak = match fit.peak() {
        Some((n, x)) if n <= max_n * 1.5 => {
            format!(
                " It puts the peak at {x:.0}/s near the measured range (N ≈ {n:.0}): past it, more load lowers throughput."
            )
        }
        Some((n, x)) => format!(
            " It puts the peak at {x:.0}/s at N ≈ {n:.0}, {:.0}× beyond the heaviest level measured: an extrapolation.",
            n / max_n.max(f64::MIN_POSITIVE)
        ),
        None if fit.alpha > 1e-3 => format!(
            " It finds no coherency cost: throughput levels off towards {:.0}/s (λ/α) rather than falling.",
            fit.lambda / fit.alpha
        ),
        None => {
            " It finds neither contention nor coherency cost within the levels measured: they scale linearly.".into()
        }
    };
    format!(
        "Fitted to the {} {kind} levels that kept the limits: R² = {:.3}, {quality}.{few}{peak} The replica counts below \
         assume capacity grows linearly with replicas; a sweep across replica counts would fit the law across them.",
        fit.points, fit.r_squared
    )
}
