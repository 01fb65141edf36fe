//! The samplers assembled for a run (processes, containers, PostgreSQL, the services'
//! `/metrics`), run from the load's start, and their findings at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::definition::plan::Plan;
use crate::deploy::{DeployError, Endpoints};
use crate::engine;
use crate::live::{Live, Round};
use crate::observe::containers::ContainerSampler;
use crate::observe::postgres::{self, DatabaseEnd, PgSampler};
use crate::observe::prometheus::MetricsScraper;
use crate::observe::resources::{ProcessSampler, ProcessTarget, ResourceSource};
use crate::observe::{ObservationLog, ObservationWriter, Observer, digest};
use crate::results::{ResultsDir, layout};

/// The `/metrics` URLs to scrape: the provisioned services' and those given for an external
/// target.
pub(super) fn all_metrics_urls(plan: &Plan, endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut urls = endpoints.metrics_urls.clone();
    urls.extend(plan.observe.metrics_urls.clone());
    urls
}

/// The samplers for this run, and notes on what can't be observed.
pub(super) async fn build_observer(
    plan: &Plan,
    endpoints: &Endpoints,
    metrics_urls: &BTreeMap<String, String>,
    provisioned: bool,
    results: &ResultsDir,
    live: &Live,
) -> Result<(Observer, Vec<String>), RunError> {
    let mut notes = Vec::new();
    let mut processes =
        vec![ProcessTarget { name: digest::GENERATOR.into(), pid: std::process::id(), with_children: false }];
    let pids = endpoints.pids.iter().chain(&plan.observe.pids);
    processes.extend(pids.map(|(name, pid)| ProcessTarget {
        name: name.clone(),
        pid: *pid,
        with_children: name == postgres::COMPONENT,
    }));
    let mut resources: Vec<Box<dyn ResourceSource>> = vec![Box::new(ProcessSampler::new(processes))];
    let mut containers: Vec<(String, String)> = endpoints.containers.clone().into_iter().collect();
    containers.extend(plan.observe.docker_stats.iter().map(|name| (name.clone(), name.clone())));
    if !containers.is_empty() {
        let docker = crate::deploy::docker::connect().await.map_err(DeployError::from)?;
        let sampler =
            ContainerSampler::start(&docker, &containers).await.map_err(|e| RunError::Unreachable(e.to_string()))?;
        resources.push(Box::new(sampler));
    }
    let database_url = endpoints.database_url.clone().or_else(|| plan.observe.database_url.clone());
    let postgres = match &database_url {
        Some(url) => match PgSampler::connect(url, provisioned).await {
            Ok(mut sampler) => {
                if live.is_watched() {
                    sampler.track_top_statement();
                }
                Some(sampler)
            }
            Err(e) => {
                notes.push(format!("the database could not be observed: {e}"));
                None
            }
        },
        None => {
            notes.push("no database to observe (give --database-url with an external target)".into());
            None
        }
    };
    let scrapers = metrics_urls.iter().map(|(name, url)| MetricsScraper::new(name, url)).collect();
    let writer = ObservationWriter::create(&results.partial_path().join(layout::OBSERVATIONS))?;
    let live = live.clone();
    let tap: crate::observe::Tap = Box::new(move |t_s, rows, top| live.round(Round::from_observations(t_s, rows, top)));
    Ok((Observer { resources, postgres, scrapers, writer, tap: Some(tap) }, notes))
}

/// Samples from the load's start until `done` (nothing when the load never started).
pub(super) async fn observe(
    observer: Observer,
    gate: Arc<engine::StartGate>,
    done: CancellationToken,
) -> std::io::Result<Observer> {
    match gate.opened(&done).await {
        Some(started) => observer.run(started, done).await,
        None => Ok(observer),
    }
}

/// The observations, and the database's end-of-run findings (taken before the teardown).
pub(super) async fn finish_observing(mut observer: Observer) -> (ObservationLog, Option<DatabaseEnd>) {
    let end = match observer.postgres.take() {
        Some(pg) => Some(pg.finish().await),
        None => None,
    };
    (observer.writer.into_log(), end)
}
