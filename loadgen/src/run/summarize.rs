//! After the load: the run's measurements, observations and findings turned into
//! `summary.json` — operations, thresholds judged, warnings, resources, the database, the
//! services' metrics, profiles, integrity and faults.

use std::collections::BTreeMap;

use super::alongside::Findings;
use crate::definition::plan::Plan;
use crate::engine::EngineOutcome;
use crate::engine::recorder::Recorder;
use crate::engine::stop::StopReason;
use crate::observe::{digest, trend};
use crate::results::summary::{self, Summary};
use crate::results::{ResultsDir, layout};
use crate::verdict::source::Measurements;
use crate::verdict::thresholds;

/// The summary of a run of `plan` that ended as `outcome` (stopped early for `stopped`), with
/// what was found beside it.
pub(super) fn summary(
    plan: &Plan,
    recorder: &Recorder,
    outcome: &EngineOutcome,
    stopped: Option<&StopReason>,
    findings: &mut Findings,
) -> Summary {
    let services = std::mem::take(&mut findings.services);
    let (interrupted, aborted) = match stopped {
        Some(StopReason::Threshold(which)) => (None, Some(which.clone())),
        Some(reason) => (Some(reason.to_string()), None),
        None => (None, None),
    };
    let streams = plan.stream_plans();
    let (targets, used) = (summary::target_rates(&streams), summary::used_operations(&streams));
    let totals = recorder.totals();
    let log = &findings.log;
    let resources = digest::resources(log);
    let database = (findings.database_end.is_some() || !services.is_empty()).then(|| {
        let mut db = digest::database(log, findings.database_end.take());
        db.unavailable.splice(0..0, findings.observe_notes.drain(..));
        db
    });
    let integrity = findings.integrity.take();
    let mut extras = BTreeMap::new();
    if let Some(busy) = database.as_ref().and_then(|d| d.pool_busy_max) {
        extras.insert("db_pool_busy", busy);
    }
    if let Some(generator) = resources.components.get(digest::GENERATOR) {
        extras.insert("loadgen_cpu", generator.cpu_percent_max);
    }
    if let Some(integrity) = integrity.as_ref().filter(|i| i.users_audited > 0) {
        for (name, count) in integrity.counts() {
            extras.insert(name, count as f64);
        }
    }
    let trends = trend::trends(log, &services, plan.scenario.warmup().as_secs());
    let stream_names = plan.stream_names();
    let source = Measurements {
        operations: totals.iter().map(|t| (t.operation, &t.measured)).collect(),
        streams: &stream_names,
        seconds: outcome.elapsed.as_secs_f64(),
        extras,
        trends: &trends,
    };
    let mut thresholds = thresholds::evaluate(&plan.scenario.thresholds, &source, &findings.judge.window_results());
    for result in &mut thresholds {
        result.aborted = aborted.as_deref() == Some(&thresholds::label(&result.metric, &result.expression));
    }
    let operations = summary::operations(&totals, &used, &targets, outcome.elapsed);
    let mut warnings = outcome.notes.clone();
    warnings.extend(summary::load_warnings(&operations, &streams));
    warnings.extend(digest::warnings(&resources));
    for warning in &warnings {
        eprintln!("gauntlet: {warning}");
    }
    let profile_notes = std::mem::take(&mut findings.profile_notes);
    let profiles = profile_listing(&findings.results, &services, plan.scenario.profile.is_some(), profile_notes);
    Summary {
        scenario: plan.scenario.name.clone(),
        duration_s: outcome.elapsed.as_secs_f64(),
        planned_duration_s: plan.duration().as_secs_f64(),
        interrupted: interrupted.clone(),
        passed: interrupted.is_none() && aborted.is_none() && thresholds.iter().all(|t| t.passed),
        aborted,
        operations,
        thresholds,
        warnings,
        services: digest::services(log, &services),
        resources: Some(resources),
        database,
        profiles,
        integrity,
        faults: std::mem::take(&mut findings.faults),
        trends,
        heap: std::mem::take(&mut findings.heap),
    }
}

/// The profile files written (each service's CPU flamegraph, heap profile and heap flamegraphs),
/// then the notes on those that were not.
fn profile_listing(results: &ResultsDir, services: &[String], wanted: bool, notes: Vec<String>) -> Vec<String> {
    if !wanted {
        return Vec::new();
    }
    let mut listing: Vec<String> = services
        .iter()
        .flat_map(|s| {
            [
                layout::profile_svg(s),
                layout::heap_pprof(s),
                layout::heap_start_svg(s),
                layout::heap_svg(s),
                layout::heap_growth_svg(s),
            ]
        })
        .filter(|file| results.partial_path().join(file).is_file())
        .collect();
    listing.extend(notes);
    listing
}
