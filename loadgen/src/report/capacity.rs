//! The Capacity Planning Guide: the maximum sustainable load per kind of load, how throughput
//! scales (with load, and with replicas when runs with several were given), and what the
//! capacity model's tiers need of it.

use super::analysis;
use super::format::*;
use super::markup::{Block, Doc};
use super::model::CapacityModel;
use crate::definition::options::Replicas;
use crate::results::read::RunData;
use crate::verdict::limits::{Limits, broken_limit, max_sustainable};
use crate::verdict::scaling::{UslFit, fit_usl, replicas_for};

/// The most replicas the tier arithmetic considers.
const MOST_REPLICAS: u32 = 512;

/// The Capacity Planning Guide.
pub fn capacity(runs: &[RunData], limits: &Limits, model: &CapacityModel) -> Doc {
    let mut doc = Doc::new(super::title("capacity-planning"));
    doc.h2("Per-instance capacity");
    // API capacity from the API-only levels when there are some, event capacity likewise; a
    // single kind of run gives both. Per instance: from the runs with one replica of each service.
    let all_groups = groups(runs);
    let groups = one_instance(&all_groups);
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
        (rps * (1.0 - model.headroom)).abs(),
        (eps * (1.0 - model.headroom)).abs(),
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
    let laws = replica_scaling(&mut doc, &all_groups, limits);
    scalability(&mut doc, &groups, limits, laws.any());
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
        // Across replica counts, the fitted law decides instead of a straight line.
        let (api, api_line) = laws.tier("API", peak_rps, api, plan_rps);
        let (events, event_line) = laws.tier("event", peak_eps, events, plan_eps);
        let db_bytes = bytes_per_row.map(|b| dau * model.stored_users_per_dau * model.rows_per_user * b);
        largest = Some((dau, api, events));
        rows.push(vec![
            format!("{dau:.0}"),
            format!("{peak_rps:.0}"),
            format!("{peak_eps:.0}"),
            replica_count(api),
            replica_count(events),
            opt(db_bytes, |b| format!("{:.1} GiB", b / 1_073_741_824.0)),
        ]);
        arithmetic.push(format!(
            "{dau:.0} DAU:\n  peak rps = {dau:.0} × {} / 86400 × {} = {peak_rps:.1}\n  {api_line}\n  \
             peak eps = {dau:.0} × {} / 86400 × {} = {peak_eps:.1}\n  {event_line}{}",
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
    doc.verdict(format!(
        "one instance of each service sustained **{}**{}: plan for **{:.0} rps** and **{:.0} eps** per instance{}.",
        good.level_label(),
        if known_limit { "" } else { " (the highest level measured: the real limit is higher)" },
        plan_rps,
        plan_eps,
        largest.map_or(String::new(), |(dau, api, events)| format!(
            "; the largest tier ({dau:.0} daily active users) needs {} API and {} event handler replicas",
            replica_count(api),
            replica_count(events)
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
        None if laws.any() => "No resource saturated in the runs given; the replica counts above follow the law \
                               fitted across replica counts."
            .to_owned(),
        None => "No resource saturated in the runs given; the replica counts above assume capacity scales linearly \
                 with replicas, which a sweep across replica counts (`loadgen sweep --replica-counts 1,2,3`) would \
                 measure."
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

/// A tier's replica count: a number, "not measured" (NaN), or out of reach (infinite).
fn replica_count(n: f64) -> String {
    match n {
        n if n.is_nan() => "not measured".to_owned(),
        n if n.is_infinite() => "beyond the fitted peak".to_owned(),
        n => format!("{n:.0}"),
    }
}

/// The groups' runs with one replica of each service; all of them when no run had one.
fn one_instance<'a>(groups: &[(&'static str, Vec<&'a RunData>)]) -> Vec<(&'static str, Vec<&'a RunData>)> {
    let single: Vec<(&'static str, Vec<&RunData>)> = groups
        .iter()
        .map(|(kind, members)| {
            (*kind, members.iter().copied().filter(|r| r.replicas() == Replicas::default()).collect())
        })
        .filter(|(_, members): &(_, Vec<_>)| !members.is_empty())
        .collect();
    if single.is_empty() { groups.to_vec() } else { single }
}

/// The replicas a kind of load scales by: API levels by the challenge service's, event levels by
/// the event handler's, both together by the fewer of the two.
fn scaled_by(kind: &str, replicas: Replicas) -> u32 {
    match kind {
        "API only" => replicas.challenge_service,
        "events only" => replicas.event_handler,
        _ => replicas.challenge_service.min(replicas.event_handler),
    }
}

/// The part of a level's rate a kind of load scales: requests for the API, events for events.
fn scaled_rate(kind: &str, run: &RunData) -> f64 {
    let (rps, eps) = run.offered();
    match kind {
        "API only" => rps,
        "events only" => eps,
        _ => rps + eps,
    }
}

/// The laws fitted across replica counts, for the tier arithmetic.
#[derive(Default)]
struct ReplicaLaws {
    /// For the challenge service (API-only levels, or combined ones).
    api: Option<UslFit>,
    /// For the event handler (event-only levels, or combined ones).
    events: Option<UslFit>,
}

impl ReplicaLaws {
    fn any(&self) -> bool {
        self.api.is_some() || self.events.is_some()
    }

    /// A tier's replicas of one service and the arithmetic line saying how: with a law across
    /// replica counts, the fewest replicas whose speedup `S(N) = X(N) / X(1)` covers the peak
    /// over what one instance plans for (`f64::INFINITY` when no count does); else `linear`, as
    /// computed.
    fn tier(&self, what: &str, peak: f64, linear: f64, per_instance: f64) -> (f64, String) {
        let law = if what == "API" { self.api.as_ref() } else { self.events.as_ref() };
        let straight = if linear.is_nan() {
            format!("{what} replicas: not measured (no {what} levels)")
        } else {
            format!("{what} replicas = ⌈{peak:.1} / {per_instance:.1}⌉ = {linear:.0}")
        };
        let Some(fit) = law.filter(|_| !linear.is_nan()) else { return (linear, straight) };
        let needed = peak / per_instance;
        let law_text = format!("λ {:.0}/s, α {:.3}, β {:.1e}", fit.lambda, fit.alpha, fit.beta);
        let speedup = |n: u32| fit.throughput(f64::from(n)) / fit.lambda;
        match replicas_for(fit, needed * fit.lambda, MOST_REPLICAS) {
            Some(n) => (
                f64::from(n),
                format!(
                    "{what} replicas = fewest N with S(N) = X(N)/X(1) ≥ {peak:.1} / {per_instance:.1} = {needed:.2} under \
                     the law across replicas ({law_text}) = {n} (S({n}) = {:.2})",
                    speedup(n)
                ),
            ),
            None => (
                f64::INFINITY,
                format!(
                    "{what} replicas: S(N) = X(N)/X(1) never reaches {peak:.1} / {per_instance:.1} = {needed:.2} under \
                     the law across replicas ({law_text}){}",
                    fit.peak().map_or(String::new(), |(n, x)| format!(
                        "; it peaks at S = {:.2} at N ≈ {n:.0}",
                        x / fit.lambda
                    ))
                ),
            ),
        }
    }
}

/// How the sustained rate grew with replicas, for each kind of load measured at two or more
/// replica counts: the counts side by side, their efficiency, and the Universal Scalability Law
/// across them (N = replicas) from three counts on.
fn replica_scaling(doc: &mut Doc, groups: &[(&'static str, Vec<&RunData>)], limits: &Limits) -> ReplicaLaws {
    doc.h2("Scaling across replicas");
    let mut laws = ReplicaLaws::default();
    let mut any = false;
    for (kind, members) in groups {
        let mut by_count: std::collections::BTreeMap<u32, Vec<&RunData>> = std::collections::BTreeMap::new();
        for run in members {
            by_count.entry(scaled_by(kind, run.replicas())).or_default().push(run);
        }
        if by_count.len() < 2 {
            continue;
        }
        any = true;
        let held: Vec<(u32, Option<&RunData>, bool)> = by_count
            .iter()
            .map(|(n, runs)| {
                let (good, bad) = max_sustainable(runs, limits);
                (*n, good, bad.is_some())
            })
            .collect();
        let one = held.iter().find(|(n, _, _)| *n == 1).and_then(|(_, g, _)| g.map(|g| scaled_rate(kind, g)));
        let mut rows = Vec::new();
        let mut points = Vec::new();
        for (n, good, bounded) in &held {
            let rate = good.map(|g| scaled_rate(kind, g));
            if let Some(x) = rate {
                points.push((f64::from(*n), x));
            }
            rows.push(vec![
                n.to_string(),
                good.map_or("none held".into(), |g| g.level_label()),
                if *bounded { "yes".into() } else { "no: the real limit is higher".into() },
                opt(rate, |x| format!("{x:.0}/s")),
                opt(rate, |x| format!("{:.0}/s", x / f64::from(*n))),
                opt(rate.zip(one).map(|(x, one)| x / (f64::from(*n) * one)), |e| format!("{:.0}%", e * 100.0)),
            ]);
        }
        doc.h3(*kind);
        doc.table(
            &["replicas", "sustained level", "next level broke", "throughput", "per replica", "efficiency vs one"],
            rows,
        );
        let Some(fit) = fit_usl(&points) else {
            doc.p(format!(
                "The law needs three or more replica counts that held a level; the {kind} levels have {}. With two, \
                 the efficiency above is all that can be said; sweep another count to fit it.",
                points.len()
            ));
            continue;
        };
        let max_n = points.iter().map(|p| p.0).fold(1.0, f64::max);
        let reach = fit.peak().map_or(max_n * 2.0, |(n, _)| n.max(max_n) * 1.2).clamp(max_n, max_n * 10.0);
        let id = format!("usl-replicas-{}", kind.split(' ').next().unwrap_or("load").to_lowercase());
        law_chart(
            doc,
            [&id, &format!("{kind}: sustained throughput against replicas, measured and fitted")],
            ["Universal Scalability Law across replicas", "replicas N", "sustained throughput per second"],
            super::charts::Series::new("measured (sustained per replica count)", points.clone()),
            &fit,
            (1.0, reach),
        );
        law_table(doc, &fit, "λ (one replica)", "replica counts");
        doc.p(format!(
            "{} The tier arithmetic below uses this law for {}.",
            law_quality(&fit, max_n),
            if *kind == "API only" {
                "the API replicas"
            } else if *kind == "events only" {
                "the event handler replicas"
            } else {
                "whichever service no isolated sweep measured"
            }
        ));
        match *kind {
            "API only" => laws.api = Some(fit),
            "events only" => laws.events = Some(fit),
            _ => {
                laws.api.get_or_insert(fit);
                laws.events.get_or_insert(fit);
            }
        }
    }
    if !any {
        doc.p(
            "Every run given had the same replicas, so how capacity grows with replicas is not measured: the tier \
             arithmetic below assumes it grows linearly. `loadgen sweep --replica-counts 1,2,3` measures each count and \
             fits the Universal Scalability Law across them.",
        );
    }
    laws
}

/// What a law across replica counts can be trusted for, in words.
fn law_quality(fit: &UslFit, max_n: f64) -> String {
    let quality = match fit.r_squared {
        r if fit.points == 3 && r > 0.999 => {
            "but three counts pin its three parameters exactly, so R² is 1 by construction and says nothing: a \
             fourth count would test the law"
        }
        r if r >= 0.98 => "a close fit",
        r if r >= 0.9 => "a fair fit",
        _ => "a poor fit: read its replica counts as a rough guide only",
    };
    let peak = match fit.peak() {
        Some((n, x)) if n <= max_n * 1.5 => format!(
            " It peaks at {x:.0}/s near {n:.1} replicas, within the counts measured: past it, another replica lowers \
             throughput, so scale the shared resource (the database, the machine) instead."
        ),
        Some((n, x)) => format!(
            " It peaks at {x:.0}/s at {n:.0} replicas, {:.0}× the most measured: an extrapolation.",
            n / max_n.max(1.0)
        ),
        None if fit.alpha > 1e-3 => {
            format!(" It finds no coherency cost: throughput levels off towards {:.0}/s (λ/α).", fit.lambda / fit.alpha)
        }
        None => " It finds replicas scaling linearly over the counts measured.".into(),
    };
    format!(
        "Fitted to {} replica counts: R² = {:.3}, {quality}; contention serialises α = {:.1}% of the work.{peak}",
        fit.points,
        fit.r_squared,
        fit.alpha * 100.0
    )
}

/// The Universal Scalability Law fitted to the levels that kept the limits, drawn over them,
/// with how good the fit is and where it puts the peak.
fn scalability(doc: &mut Doc, groups: &[(&'static str, Vec<&RunData>)], limits: &Limits, across_replicas: bool) {
    doc.h2("Scalability model");
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
    let mut measured = points.clone();
    measured.sort_by(|a, b| a.0.total_cmp(&b.0));
    law_chart(
        doc,
        [
            "usl",
            "Throughput against concurrency (achieved rate × mean latency): the sustained levels and the fitted law",
        ],
        ["Universal Scalability Law", "concurrency N (requests in the system)", "throughput per second"],
        super::charts::Series::new("measured (sustained levels)", measured),
        &fit,
        (0.0, reach),
    );
    law_table(doc, &fit, "λ (per unit of concurrency)", "levels");
    doc.p(fit_quality(&fit, max_n, kind, across_replicas));
}

/// The measured points and the fitted law's curve over `range` of N, as chart `[id, caption]`
/// with `[title, x axis, y axis]`.
fn law_chart(
    doc: &mut Doc,
    [id, caption]: [&str; 2],
    [title, x, y]: [&str; 3],
    measured: super::charts::Series,
    fit: &UslFit,
    (from, to): (f64, f64),
) {
    let curve = (0..=60).map(|i| from + (to - from) * f64::from(i) / 60.0).map(|n| (n, fit.throughput(n))).collect();
    let series = [measured, super::charts::Series::faint("fitted law", curve)];
    doc.chart(id, caption, super::figures::chart(super::charts::line_chart(title, x, y, &series)));
}

/// A fitted law's parameters, one row: `lambda` and `points` name its λ and what it was fitted to.
fn law_table(doc: &mut Doc, fit: &UslFit, lambda: &str, points: &str) {
    doc.table(
        &[lambda, "α (contention)", "β (coherency)", "R²", points, "peak"],
        vec![vec![
            format!("{:.1}/s", fit.lambda),
            format!("{:.4}", fit.alpha),
            format!("{:.2e}", fit.beta),
            format!("{:.3}", fit.r_squared),
            fit.points.to_string(),
            fit.peak().map_or("none (β ≈ 0)".into(), |(n, x)| format!("{x:.0}/s at N ≈ {n:.1}")),
        ]],
    );
}

/// What the fit can be trusted for, in words.
fn fit_quality(fit: &UslFit, max_n: f64, kind: &str, across_replicas: bool) -> String {
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
    let replicas = if across_replicas {
        " This law is one deployment's under more load; the replica counts below follow the law across replicas."
    } else {
        " The replica counts below assume capacity grows linearly with replicas; a sweep across replica counts \
         (`--replica-counts`) would fit the law across them."
    };
    format!(
        "Fitted to the {} {kind} levels that kept the limits: R² = {:.3}, {quality}.{few}{peak}{replicas}",
        fit.points, fit.r_squared
    )
}
