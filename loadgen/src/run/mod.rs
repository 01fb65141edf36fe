//! # One run, from plan to results folder
//!
//! [`execute`] conducts: it prepares the target, starts what runs alongside the engine, runs the
//! engine, collects what was found, summarises, writes the folder and its report, and tears
//! down. Each step is one file:
//!
//! - [`info`]: `run.json` (what ran, where, how it ended).
//! - [`prepare`]: the target set up or checked, fixtures, seeding, the workload.
//! - [`audit`]: the integrity audit's books before and after the load.
//! - [`alongside`]: the tasks beside the engine (signals, the service watcher, samplers, the
//!   profiler, the fault injector, the per-second [`sampler`]), started and finished.
//! - [`observing`]: the samplers assembled for the run.
//! - [`profiles`]: the profiling window's CPU and heap profiles, written and summed.
//! - [`summarize`]: `summary.json` from all of it.

mod alongside;
mod audit;
mod info;
mod observing;
mod prepare;
mod profiles;
mod sampler;
mod summarize;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::definition::plan::{Plan, StreamPlan};
use crate::deploy::{DeployError, Endpoints};
use crate::engine::recorder::IntervalSnapshot;
use crate::engine::stop::{Stop, StopReason};
use crate::engine::workload::Workload;
use crate::engine::{self, EngineError, EngineOptions, EngineOutcome, StartGate};
use crate::live::{Live, RunEnd, RunStart};
use crate::report::Formats;
use crate::report::model::CapacityModel;
use crate::results::summary::{self, Summary};
use crate::results::{ResultsDir, layout};
use crate::target::FixtureError;
use crate::verdict::limits::Limits;

use self::alongside::Alongside;
use self::info::RunInfo;

/// Why a run failed (as opposed to finishing with failed thresholds).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The results folder could not be written.
    #[error("results folder: {0}")]
    Results(#[from] std::io::Error),
    /// A fixture is unreadable or inconsistent, or could not be seeded.
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// The target could not be set up or reached.
    #[error("{0}")]
    Environment(#[from] DeployError),
    /// The target is not reachable.
    #[error("{0}")]
    Unreachable(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A signal (Ctrl-C, SIGTERM) before the load started.
    #[error("interrupted by a signal before the load started")]
    Interrupted,
    /// A distributed run's coordinator or workers could not agree on the run.
    #[error("{0}")]
    Coordination(String),
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutput {
    /// The summary written to `summary.json`.
    pub summary: Summary,
    /// The results folder.
    pub folder: PathBuf,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
}

/// How long before the schedules' start every virtual user is started.
const LEAD: Duration = Duration::from_millis(200);

/// How long after each second's end a coordinator takes it: its workers take theirs at the
/// second's end and send it at once.
const REMOTE_LAG: Duration = Duration::from_millis(500);

/// Where a run's load comes from.
pub enum Load {
    /// This process's engine sends all of it.
    Local,
    /// This process's engine sends a share of it ([`Plan::segment`]), started and stopped by a
    /// coordinator (a distributed run's worker).
    Share(Arc<dyn Conductor>),
    /// Workers send it; this process merges what they measured (a distributed run's coordinator).
    Remote(Box<dyn Workers>),
}

/// A worker's coordinator, as the run sees it.
pub trait Conductor: Send + Sync {
    /// Called once this worker is ready to start its users: the instant every worker starts
    /// the load at, on this machine's clock.
    fn ready(&self) -> BoxFuture<'_, Result<SystemTime, String>>;
    /// One second measured (sent on to the coordinator); true once the coordinator asks this
    /// worker to stop.
    fn second(&self, second: u64, snapshots: &[IntervalSnapshot]) -> bool;
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Load::Local => "Local",
            Load::Share(_) => "Share",
            Load::Remote(_) => "Remote",
        })
    }
}

/// What a coordinator merges the workers' seconds into.
#[derive(Debug)]
pub struct Merging {
    /// The whole plan's streams.
    pub streams: Vec<StreamPlan>,
    /// The prepared workload: its users and their tokens are handed out, its recorder receives
    /// the workers' seconds.
    pub workload: Arc<Workload>,
    /// Opened at the workers' common start.
    pub gate: Arc<StartGate>,
    /// Stops the workers.
    pub stop: Stop,
    /// Where the target is.
    pub endpoints: Endpoints,
    /// The results folder being written (the workers' own folders go in it).
    pub folder: PathBuf,
}

/// A distributed run's workers, as the coordinator's run sees them: they send the load and
/// their seconds are merged until every one has finished or been lost.
pub trait Workers: Send {
    /// Sends the load through the workers.
    fn run(self: Box<Self>, merging: Merging) -> BoxFuture<'static, Result<EngineOutcome, EngineError>>;
}

/// Runs `plan` to the end and writes its results folder, publishing each second to `live`.
pub async fn execute(plan: Plan, live: &Live) -> Result<RunOutput, RunError> {
    execute_with(plan, live, Load::Local).await
}

/// Runs `plan` with the load from `load` (this process, a share of it, or workers elsewhere).
pub async fn execute_with(plan: Plan, live: &Live, load: Load) -> Result<RunOutput, RunError> {
    let results = ResultsDir::create(&plan.out)?;
    let mut info = RunInfo::start(&plan);
    results.write_json(layout::RUN, &info)?;
    eprintln!("gauntlet: {} → {}", plan.scenario.name, results.partial_path().display());
    let streams = plan.stream_plans();
    let targets = summary::target_rates(&streams);
    live.begin_run(&RunStart {
        scenario: plan.scenario.name.clone(),
        folder: results.partial_path().display().to_string(),
        duration_s: plan.duration().as_secs_f64(),
        targets: targets.iter().map(|(op, r)| (op.name().to_owned(), *r)).collect(),
        thresholds: plan
            .scenario
            .thresholds
            .iter()
            .flat_map(|(metric, exprs)| exprs.iter().map(move |e| crate::verdict::thresholds::label(metric, &e.text)))
            .collect(),
    });

    // A signal during the setup abandons it cleanly (the folder is still completed).
    let signalled = crate::engine::stop::signalled();
    let prepared = tokio::select! {
        prepared = prepare::prepare(&plan, &results) => prepared,
        () = signalled.cancelled() => Err(RunError::Interrupted),
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            let what = if matches!(error, RunError::Interrupted) { "setup interrupted" } else { "setup failed" };
            return Err(abandon(info, results, live, what, error)?);
        }
    };
    let (workload, endpoints) = (prepared.workload, prepared.endpoints);
    info.endpoints = Some(endpoints.clone());
    results.write_json(layout::RUN, &info)?;

    let stop = Stop::new();
    let (gate, lead) = match &load {
        Load::Share(conductor) => {
            let at = match conductor.ready().await {
                Ok(at) => at,
                Err(why) => return Err(abandon(info, results, live, "start refused", RunError::Coordination(why))?),
            };
            let lead = at.duration_since(SystemTime::now()).unwrap_or_default().max(LEAD);
            (engine::start_gate_at(&streams, tokio::time::Instant::now() + lead), lead)
        }
        _ => (engine::start_gate(&streams, LEAD), LEAD),
    };
    let environment = prepared.environment;
    let conductor = if let Load::Share(conductor) = &load { Some(conductor.clone()) } else { None };
    let folder = results.partial_path().to_path_buf();
    let alongside = Alongside::start(
        &plan,
        environment,
        &endpoints,
        &workload,
        results,
        targets,
        &gate,
        &stop,
        signalled,
        live,
        conductor,
        if matches!(load, Load::Remote(_)) { REMOTE_LAG } else { Duration::ZERO },
    )
    .await?;
    let outcome = match load {
        Load::Remote(workers) => {
            let merging = Merging { streams, workload: workload.clone(), gate, stop: stop.clone(), endpoints, folder };
            workers.run(merging).await
        }
        Load::Local | Load::Share(_) => {
            let options = EngineOptions {
                api_urls: endpoints.api_urls.clone(),
                lead,
                max_lateness: plan.scenario.max_lateness,
                stop: stop.clone(),
            };
            Box::pin(engine::run(streams, workload.clone(), gate, options)).await
        }
    };
    let mut findings = alongside.finish(prepared.audit.as_ref(), &workload, &plan, &stop).await?;

    let outcome = outcome?;
    let stopped = stop.reason().or(outcome.stopped.clone());
    let summary = summarize::summary(&plan, &workload.recorder, &outcome, stopped.as_ref(), &mut findings);
    let results = findings.results;
    results.write_json(layout::SUMMARY, &summary)?;
    info.finish(None, summary.interrupted.clone(), findings.shutdown_notes);
    results.write_json(layout::RUN, &info)?;
    render_report(&results);
    let folder = results.finish()?;
    publish_end(live, &folder, summary.passed, summary.interrupted.clone());
    Ok(RunOutput { summary, folder, stopped })
}

/// A run given up before its load (`what` happened, for `error`): `run.json` says why, the
/// folder is completed and the live record told; the error to return, unless the folder itself
/// could not be written.
fn abandon(
    mut info: RunInfo,
    results: ResultsDir,
    live: &Live,
    what: &str,
    error: RunError,
) -> Result<RunError, RunError> {
    info.finish(Some(error.to_string()), None, Vec::new());
    results.write_json(layout::RUN, &info)?;
    let folder = results.finish()?;
    eprintln!("gauntlet: {what}; logs are in {}", folder.display());
    publish_end(live, &folder, false, Some(format!("{what}: {error}")));
    Ok(error)
}

/// Tells the live record how the run ended, linking its reports (served from now on).
fn publish_end(live: &Live, folder: &std::path::Path, passed: bool, interrupted: Option<String>) {
    let reports = crate::report::links(folder, live.serve(folder.to_path_buf()), layout::SUMMARY);
    live.end(&RunEnd { passed, interrupted, folder: folder.display().to_string(), reports, last: !live.sweeping() });
}

/// Every run ends with its own report, from what it just saved.
fn render_report(results: &ResultsDir) {
    let partial = results.partial_path().to_path_buf();
    let model = CapacityModel::default();
    let out = partial.join(layout::REPORT);
    if let Err(e) =
        crate::report::render(std::slice::from_ref(&partial), &out, &Limits::default(), &model, Formats::All)
    {
        eprintln!("gauntlet: the report could not be rendered: {e} (render it later with `loadgen report`)");
    }
}
