//! A worker: it joins a coordinator, receives its share of the run (scenario, split executors,
//! its own block of users and their tokens, the target), measures its clock against the
//! coordinator's, runs its share as an ordinary run into its own results folder, starting at the
//! common instant, sends every second on as it is measured, stops when told, and at the end
//! hands its folder to the coordinator.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::wire::{Assignment, Clock, Done, Join, Ready, Reply, SecondReport, Start, WireSnapshot, route, unix_us};
use crate::definition::options::Deploy;
use crate::definition::plan::{AuthPlan, GivenUsers, ObserveTargets, Plan, Target};
use crate::engine::recorder::IntervalSnapshot;
use crate::live::Live;
use crate::run::{self, Conductor, Load, RunError, RunOutput};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's URL.
    pub coordinator: String,
    /// Where its own results folder goes (default: results/<time>-<scenario>-worker<N>).
    pub out: Option<PathBuf>,
    /// How long to keep trying to reach the coordinator.
    pub connect_timeout: Duration,
    /// Pretend this machine's clock is this far ahead (ms; tests of the clock check).
    pub clock_skew_ms: i64,
    /// The segment to ask for (None: any free one).
    pub segment: Option<u32>,
}

/// Why a worker could not do its share.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The coordinator is unreachable or refused.
    #[error("coordinator {url}: {message}")]
    Coordinator {
        /// Its URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The share's run failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Rounds of the clock exchange (the one with the smallest round trip counts).
const CLOCK_ROUNDS: usize = 8;

struct Link {
    client: reqwest::Client,
    base: String,
    worker: u32,
    offset_us: i64,
    round_trip_us: i64,
    skew_us: i64,
    stop: Arc<AtomicBool>,
    seconds: mpsc::UnboundedSender<SecondReport>,
}

impl Conductor for Link {
    fn ready(&self) -> BoxFuture<'_, Result<SystemTime, String>> {
        Box::pin(async move {
            let ready =
                Ready { worker: self.worker, clock_offset_us: self.offset_us, round_trip_us: self.round_trip_us };
            let start: Start = post(&self.client, &self.base, route::READY, &ready).await?;
            // The coordinator's instant on this clock, then on the real one.
            let local = start.unix_us - self.offset_us - self.skew_us;
            Ok(UNIX_EPOCH + Duration::from_micros(local.max(0) as u64))
        })
    }

    fn second(&self, second: u64, snapshots: &[IntervalSnapshot]) -> bool {
        let snapshots = snapshots.iter().filter(|s| !s.measured.is_empty() || s.in_flight != 0).map(WireSnapshot::of);
        let _ = self.seconds.send(SecondReport { worker: self.worker, second, snapshots: snapshots.collect() });
        self.stop.load(Ordering::Relaxed)
    }
}

async fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    route: &str,
    body: &T,
) -> Result<R, String> {
    let response = client.post(format!("{base}{route}")).json(body).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(if text.is_empty() { format!("HTTP {status}") } else { text });
    }
    response.json().await.map_err(|e| e.to_string())
}

/// Joins the coordinator at `options.coordinator` and runs the share it gives.
pub async fn work(options: &WorkerOptions, live: &Live) -> Result<RunOutput, WorkError> {
    let base = options.coordinator.trim_end_matches('/').to_owned();
    let refused = |message: String| WorkError::Coordinator { url: base.clone(), message };
    let client = reqwest::Client::builder().build().map_err(|e| refused(e.to_string()))?;
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let join = Join { host, pid: std::process::id(), index: options.segment };

    // The coordinator may still be starting: keep trying for a while.
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    let assignment: Assignment = loop {
        match client.post(format!("{base}{}", route::JOIN)).json(&join).send().await {
            Ok(response) if response.status().is_success() => {
                break response.json().await.map_err(|e| refused(format!("a bad assignment: {e}")))?;
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return Err(refused(format!("refused (HTTP {status}): {text}")));
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(refused(format!("unreachable for {}s: {e}", options.connect_timeout.as_secs())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let worker = assignment.segment.index;
    eprintln!(
        "gauntlet: worker {worker} of {}: {} users, scenario {}",
        assignment.segment.count,
        assignment.users.len(),
        assignment.scenario.name
    );

    let skew_us = options.clock_skew_ms * 1000;
    let (offset_us, round_trip_us) = measure_clock(&client, &base, skew_us).await.map_err(refused)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (seconds, mut to_send) = mpsc::unbounded_channel::<SecondReport>();
    let sender = {
        let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failures = 0;
            while let Some(report) = to_send.recv().await {
                let sent: Result<Reply, String> =
                    tokio::time::timeout(Duration::from_secs(5), post(&client, &base, route::SECOND, &report))
                        .await
                        .unwrap_or_else(|_| Err("no answer within 5s".into()));
                match sent {
                    Ok(reply) => {
                        failures = 0;
                        if reply.stop {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("gauntlet: second {} not taken by the coordinator: {e}", report.second);
                        if failures >= 3 {
                            // Without its coordinator the share means nothing: end it.
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };
    let link = Arc::new(Link {
        client: client.clone(),
        base: base.clone(),
        worker,
        offset_us,
        round_trip_us,
        skew_us,
        stop,
        seconds,
    });
    let plan = share_plan(assignment, options.out.clone());
    let output = run::execute_with(plan, live, Load::Share(link.clone())).await;
    drop(link);
    let _ = sender.await;

    let done = match &output {
        Ok(output) => {
            send_folder(&client, &base, worker, &output.folder).await;
            Done {
                worker,
                elapsed_s: output.summary.duration_s,
                stopped: output.stopped.as_ref().map(ToString::to_string),
                error: None,
                folder: Some(output.folder.display().to_string()),
            }
        }
        Err(e) => Done { worker, elapsed_s: 0.0, stopped: None, error: Some(e.to_string()), folder: None },
    };
    if let Err(e) = post::<_, Reply>(&client, &base, route::DONE, &done).await {
        eprintln!("gauntlet: the coordinator did not take this worker's end: {e}");
    }
    Ok(output?)
}

/// The coordinator's clock minus this one's, at the smallest of a few round trips, and that
/// round trip (µs).
async fn measure_clock(client: &reqwest::Client, base: &str, skew_us: i64) -> Result<(i64, i64), String> {
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..CLOCK_ROUNDS {
        let sent = unix_us(SystemTime::now()) + skew_us;
        let clock: Clock = client
            .get(format!("{base}{}", route::CLOCK))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let back = unix_us(SystemTime::now()) + skew_us;
        let round_trip = back - sent;
        let offset = clock.unix_us - (sent + back) / 2;
        if best.is_none_or(|(_, rt)| round_trip < rt) {
            best = Some((offset, round_trip));
        }
    }
    best.ok_or_else(|| "no clock reading".to_owned())
}

/// The worker's own plan: its share of the coordinator's, against the coordinator's target.
/// Its thresholds are judged over its share in its own folder, but abort nothing: the
/// coordinator judges the merged run and stops every worker.
fn share_plan(mut assignment: Assignment, out: Option<PathBuf>) -> Plan {
    for expression in assignment.scenario.thresholds.values_mut().flatten() {
        expression.abort_on_fail = false;
    }
    let root = crate::definition::plan::workspace_root();
    let name = format!("{}-worker{}", assignment.scenario.name, assignment.segment.index);
    let out = out.unwrap_or_else(|| crate::definition::plan::default_results_path(&root.join("results"), &name));
    let auth = if assignment.tokens.is_some() { AuthPlan::MintedJwt } else { AuthPlan::MockHeader };
    Plan {
        executors: assignment.executors,
        target: Target::External { api_urls: assignment.api_urls, grpc_urls: assignment.grpc_urls },
        auth,
        out,
        users_file: PathBuf::new(),
        challenges_file: root.join("fixtures/challenges.json"),
        namespace: assignment.namespace,
        base_path: assignment.base_path,
        grpc_connections: assignment.grpc_connections,
        request_timeout: Duration::from_millis(assignment.request_timeout_ms),
        service_args: Default::default(),
        quiet: true,
        observe: ObserveTargets::default(),
        deploy: Deploy::Processes,
        replicas: crate::definition::options::Replicas::default(),
        balance: assignment.balance,
        store: None,
        seed_users: None,
        audit_users: 0,
        reward_mock_url: None,
        audit_settle: Duration::ZERO,
        segment: assignment.segment,
        given_users: Some(GivenUsers { users: assignment.users, tokens: assignment.tokens }),
        scenario: assignment.scenario,
    }
}

/// Hands the worker's folder to the coordinator (a tar of it); a failure is said, not fatal:
/// the folder stays on this machine.
async fn send_folder(client: &reqwest::Client, base: &str, worker: u32, folder: &std::path::Path) {
    let path = folder.to_path_buf();
    let packed = tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_dir_all(".", &path)?;
        tar.into_inner()
    })
    .await;
    let bytes = match packed {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return eprintln!("gauntlet: cannot pack {}: {e}", folder.display()),
        Err(e) => return eprintln!("gauntlet: cannot pack {}: {e}", folder.display()),
    };
    let sent = client.put(format!("{base}{}/{worker}", route::FOLDER)).body(bytes).send().await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => eprintln!("gauntlet: the coordinator refused this worker's folder: HTTP {}", r.status()),
        Err(e) => eprintln!("gauntlet: this worker's folder was not sent: {e}"),
    }
}
