//! What runs alongside the engine, started before the load and ended after it: the signal
//! listener, the service watcher (a service that dies stops the run), the samplers, the CPU
//! profiler (scenario 4), the fault injector, and the per-second sampler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::audit::AuditStart;
use super::observing::{all_metrics_urls, build_observer, finish_observing, observe};
use super::profiles::{self, Profiled};
use super::sampler::{Sampling, sample_every_second};
use super::{Conductor, RunError};
use crate::definition::plan::Plan;
use crate::deploy::{Endpoints, Provisioned};
use crate::engine::StartGate;
use crate::engine::stop::{Stop, StopReason};
use crate::engine::workload::Workload;
use crate::faults::{self, FaultVerdict, Second};
use crate::integrity::Integrity;
use crate::live::Live;
use crate::observe::heap::HeapSummary;
use crate::observe::postgres::DatabaseEnd;
use crate::observe::profile::ProfileWindow;
use crate::observe::{ObservationLog, Observer};
use crate::results::ResultsDir;
use crate::target::operations::Operation;
use crate::verdict::live::LiveJudge;

/// The tasks beside a running engine.
pub(super) struct Alongside {
    on_signal: JoinHandle<()>,
    watch_stop: CancellationToken,
    watcher: Option<JoinHandle<Provisioned>>,
    sampler_done: CancellationToken,
    observing: JoinHandle<std::io::Result<Observer>>,
    profiling: Option<JoinHandle<Profiled>>,
    faults_stop: CancellationToken,
    injecting: Option<JoinHandle<Vec<faults::Injected>>>,
    sampler: JoinHandle<std::io::Result<(ResultsDir, LiveJudge, Vec<Second>)>>,
    metrics_urls: BTreeMap<String, String>,
    observe_notes: Vec<String>,
}

/// What they found, once the load is over and the environment is down.
pub(super) struct Findings {
    /// The results folder, with every second written.
    pub results: ResultsDir,
    /// The live thresholds, with their windows' results.
    pub judge: LiveJudge,
    /// Each injected fault's verdict.
    pub faults: Vec<FaultVerdict>,
    /// The observations.
    pub log: ObservationLog,
    /// The services whose `/metrics` were scraped.
    pub services: Vec<String>,
    /// What could not be observed, and why.
    pub observe_notes: Vec<String>,
    /// The database's end-of-run findings.
    pub database_end: Option<DatabaseEnd>,
    /// The integrity audit's verdict.
    pub integrity: Option<Integrity>,
    /// Notes from the profiler.
    pub profile_notes: Vec<String>,
    /// The services' heaps over the profiling window.
    pub heap: Vec<HeapSummary>,
    /// Notes from the teardown.
    pub shutdown_notes: Vec<String>,
}

impl Alongside {
    /// Starts everything that runs beside the engine; `targets` are the operations' target rates.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        plan: &Plan,
        environment: Option<Provisioned>,
        endpoints: &Endpoints,
        workload: &Workload,
        results: ResultsDir,
        targets: BTreeMap<Operation, f64>,
        gate: &Arc<StartGate>,
        stop: &Stop,
        signalled: CancellationToken,
        live: &Live,
        conductor: Option<Arc<dyn Conductor>>,
        lag: Duration,
    ) -> Result<Self, RunError> {
        let on_signal = {
            let stop = stop.clone();
            tokio::spawn(async move {
                signalled.cancelled().await;
                stop.stop(StopReason::Signal);
            })
        };
        let faults_controls = faults::Controls {
            database: environment.as_ref().map(Provisioned::database),
            reward_mock_url: endpoints.reward_mock_url.clone(),
        };
        let provisioned = environment.is_some();
        let watch_stop = CancellationToken::new();
        let watcher = environment.map(|mut env| {
            let (stop, watch_stop) = (stop.clone(), watch_stop.clone());
            tokio::spawn(async move {
                let death = env.watch_for_deaths(watch_stop).await;
                if let Some(message) = &death {
                    eprintln!("gauntlet: {message}; stopping the run");
                    stop.stop(StopReason::ServiceDied(message.clone()));
                }
                env
            })
        });
        let sampler_done = CancellationToken::new();
        let metrics_urls = all_metrics_urls(plan, endpoints);
        let (observer, observe_notes) =
            build_observer(plan, endpoints, &metrics_urls, provisioned, &results, live).await?;
        let observing = tokio::spawn(observe(observer, gate.clone(), sampler_done.clone()));
        let profiling = plan.scenario.profile.map(|spec| {
            let window = ProfileWindow::middle_of(plan.duration(), spec.duration);
            let services: Vec<(String, String)> = metrics_urls.clone().into_iter().collect();
            let folder = results.partial_path().to_owned();
            let (gate, stop) = (gate.clone(), sampler_done.clone());
            tokio::spawn(async move {
                let Some(started) = gate.opened(&stop).await else {
                    return Profiled { heap: Vec::new(), notes: vec!["the load never started".to_owned()] };
                };
                profiles::profile(services, started, window, &folder, stop).await
            })
        });
        let faults_stop = CancellationToken::new();
        let injecting = (!plan.scenario.faults.is_empty()).then(|| {
            let (gate, stop, faults) = (gate.clone(), faults_stop.clone(), plan.scenario.faults.clone());
            tokio::spawn(async move {
                let Some(started) = gate.opened(&stop).await else { return Vec::new() };
                faults::inject(faults, faults_controls, started, stop).await
            })
        });
        let sampling = Sampling {
            seconds: Vec::new(),
            recorder: workload.recorder.clone(),
            targets,
            total: plan.duration(),
            quiet: plan.quiet,
            judge: LiveJudge::new(&plan.scenario.thresholds, plan.stream_names()),
            stop: stop.clone(),
            live: live.clone(),
            conductor,
            lag,
        };
        let sampler = tokio::spawn(sample_every_second(results, sampling, gate.clone(), sampler_done.clone()));
        Ok(Self {
            on_signal,
            watch_stop,
            watcher,
            sampler_done,
            observing,
            profiling,
            faults_stop,
            injecting,
            sampler,
            metrics_urls,
            observe_notes,
        })
    }

    /// After the load: ends each task in turn, audits the books, and tears the environment down.
    pub async fn finish(
        self,
        audit: Option<&AuditStart>,
        workload: &Workload,
        plan: &Plan,
        stop: &Stop,
    ) -> Result<Findings, RunError> {
        self.sampler_done.cancel();
        self.on_signal.abort();
        let (results, judge, seconds) = self.sampler.await.map_err(|e| std::io::Error::other(e.to_string()))??;
        self.faults_stop.cancel();
        let injected = match self.injecting {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let faults = faults::verdicts(&injected, &seconds);
        let observer = self.observing.await.map_err(|e| std::io::Error::other(e.to_string()))??;
        let (log, database_end) = finish_observing(observer).await;
        let integrity = match audit {
            Some(audit) => Some(audit.check(workload, plan.audit_settle).await),
            None => None,
        };
        let profiled = match self.profiling {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Profiled { heap: Vec::new(), notes: vec![format!("profiling failed: {e}")] }),
            None => Profiled::default(),
        };
        self.watch_stop.cancel();
        let environment = match self.watcher {
            Some(task) => match task.await {
                Ok(env) => Some(env),
                Err(e) => {
                    stop.stop(StopReason::ServiceDied(format!("service watcher failed: {e}")));
                    None
                }
            },
            None => None,
        };
        let shutdown_notes = match environment {
            Some(env) => env.shutdown().await,
            None => Vec::new(),
        };
        Ok(Findings {
            results,
            judge,
            faults,
            log,
            services: self.metrics_urls.into_keys().collect(),
            observe_notes: self.observe_notes,
            database_end,
            integrity,
            profile_notes: profiled.notes,
            heap: profiled.heap,
            shutdown_notes,
        })
    }
}
