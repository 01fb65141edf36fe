//! The coordinator: it listens for workers before the run starts, and once the target is ready
//! hands each its share ([`Assignment`]), agrees a common start, merges every second the
//! workers measured into the run's recorder (so thresholds, the live record, the results folder
//! and the reports see one run), relays a stop to all of them, and notices a worker that stops
//! sending.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire::{Assignment, Clock, Done, Join, Ready, Reply, SecondReport, Start, route, unix_us};
use crate::definition::plan::{Plan, Segment};
use crate::engine::http::RestAuth;
use crate::engine::recorder::Recorder;
use crate::engine::stop::StopReason;
use crate::engine::{EngineError, EngineOutcome};
use crate::results::layout;
use crate::run::{Merging, Workers};
use crate::target::operations::{Operation, OperationKind};

/// What the coordinator does when a worker stops sending before its share is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnWorkerLoss {
    /// Stop every worker and end the run (its results say why).
    #[default]
    Stop,
    /// Go on with the others (the offered load is short by the lost share from then on).
    Continue,
}

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// Workers to wait for.
    pub workers: u32,
    /// Where workers reach it.
    pub listen: SocketAddr,
    /// What a lost worker does to the run.
    pub on_worker_loss: OnWorkerLoss,
    /// How long to wait for every worker to join and be ready.
    pub join_timeout: Duration,
    /// What the summary should say of the run's set-up (thresholds left out).
    pub notes: Vec<String>,
}

/// Nothing from a worker for this long while its schedule runs: it is lost.
const LOST_AFTER: Duration = Duration::from_secs(3);
/// After its schedule, how long a worker has to drain, write its folder and say it is done.
const FINISH_GRACE: Duration = Duration::from_secs(180);
/// After a stop, how long workers have to say they are done.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// The common start is this long after the last worker is ready.
const START_AFTER: Duration = Duration::from_secs(1);
/// A clock further off than this is reported.
const CLOCK_TOLERANCE_US: i64 = 50_000;

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordinateError {
    /// The address is taken or not ours.
    #[error("the coordinator cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// The plan can't be split.
    #[error("{0}")]
    Plan(String),
}

/// One worker, as the coordinator knows it.
#[derive(Debug, Clone, Serialize)]
struct WorkerState {
    index: u32,
    host: String,
    pid: u32,
    users: usize,
    #[serde(skip)]
    last_seen: Option<Instant>,
    last_second: u64,
    seconds: u64,
    requests: u64,
    #[serde(skip)]
    in_flight: [i64; Operation::ALL.len()],
    clock_offset_ms: Option<f64>,
    round_trip_ms: Option<f64>,
    done: Option<Done>,
    lost: Option<String>,
    folder: Option<String>,
}

#[derive(Default)]
struct Books {
    assignments: Option<Vec<Assignment>>,
    workers: Vec<WorkerState>,
    start: Option<Start>,
    stop: bool,
    failed: Option<String>,
    recorder: Option<Arc<Recorder>>,
    folder: Option<PathBuf>,
}

impl Books {
    fn worker(&mut self, index: u32) -> Option<&mut WorkerState> {
        self.workers.iter_mut().find(|w| w.index == index)
    }
}

struct Shared {
    count: u32,
    state: Mutex<Books>,
    changed: watch::Sender<()>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changed.send_replace(());
    }

    /// Waits until `ready` gives an answer (the state is checked after every change).
    async fn until<T>(&self, mut ready: impl FnMut(&mut Books) -> Option<T>) -> T {
        let mut changes = self.changed.subscribe();
        loop {
            if let Some(answer) = ready(&mut self.lock()) {
                return answer;
            }
            if changes.changed().await.is_err() {
                // The sender lives as long as `self`; this is not reached.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The coordinator of a distributed run: listening from [`Coordinator::listen`], and the run's
/// [`Workers`].
pub struct Coordinator {
    shared: Arc<Shared>,
    options: CoordinatorOptions,
    plan: Plan,
    addr: SocketAddr,
    server_stop: CancellationToken,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("addr", &self.addr).field("options", &self.options).finish()
    }
}

impl Coordinator {
    /// Checks that `plan` can be split among `options.workers` and starts listening.
    pub async fn listen(plan: &Plan, options: CoordinatorOptions) -> Result<Self, CoordinateError> {
        check_splittable(plan, options.workers)?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| CoordinateError::Listen(options.listen, e))?;
        let addr = listener.local_addr().map_err(|e| CoordinateError::Listen(options.listen, e))?;
        let shared = Arc::new(Shared {
            count: options.workers,
            state: Mutex::new(Books::default()),
            changed: watch::channel(()).0,
        });
        let app = Router::new()
            .route(route::JOIN, post(join))
            .route(route::CLOCK, get(clock))
            .route(route::READY, post(ready))
            .route(route::SECOND, post(second))
            .route(route::DONE, post(done))
            .route(&format!("{}/{{worker}}", route::FOLDER), put(folder))
            .layer(DefaultBodyLimit::max(1 << 30))
            .with_state(shared.clone());
        let server_stop = CancellationToken::new();
        let stopped = server_stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned()).await;
        });
        Ok(Self { shared, options, plan: plan.clone(), addr, server_stop })
    }

    /// The URL workers are given (`--coordinator`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn conduct(self, merging: Merging) -> Result<EngineOutcome, EngineError> {
        let outcome = self.conduct_inner(&merging).await;
        if let Err(e) = &outcome {
            self.shared.lock().failed = Some(e.to_string());
            self.shared.changed();
        }
        // Every worker has said it is done or is lost: the server ends once the requests it
        // is answering are answered.
        self.server_stop.cancel();
        outcome
    }

    async fn conduct_inner(&self, merging: &Merging) -> Result<EngineOutcome, EngineError> {
        let count = self.options.workers;
        let users = &merging.workload.users;
        let tokens = match &merging.workload.auth {
            RestAuth::Tokens(tokens) => Some(tokens.clone()),
            RestAuth::MockHeader => None,
        };
        let assignments: Vec<Assignment> = (0..count)
            .map(|index| {
                let segment = Segment { index, count };
                let block = segment.block(users.len());
                Assignment {
                    segment,
                    scenario: self.plan.scenario.clone(),
                    executors: self.plan.segmented(segment).executors,
                    api_urls: merging.endpoints.api_urls.clone(),
                    grpc_urls: merging.endpoints.grpc_urls.clone(),
                    base_path: self.plan.base_path.clone(),
                    namespace: self.plan.namespace.clone(),
                    grpc_connections: self.plan.grpc_connections,
                    balance: self.plan.balance,
                    request_timeout_ms: self.plan.request_timeout.as_millis() as u64,
                    users: users[block.clone()].to_vec(),
                    tokens: tokens.as_ref().map(|t| t[block].to_vec()),
                }
            })
            .collect();
        {
            let mut state = self.shared.lock();
            state.assignments = Some(assignments);
            state.recorder = Some(merging.workload.recorder.clone());
            state.folder = Some(merging.folder.clone());
        }
        self.shared.changed();
        eprintln!(
            "gauntlet: waiting for {count} workers at {} (loadgen worker --coordinator {})",
            self.url(),
            self.url()
        );

        // Every worker joined and ready, or the reason why not.
        let deadline = Instant::now() + self.options.join_timeout;
        let stop = merging.stop.clone();
        let waited = tokio::select! {
            waited = self.shared.until(|state| {
                if let Some(why) = state.workers.iter().find_map(|w| w.done.as_ref().and_then(|d| d.error.clone()).map(|e| (w.index, e))) {
                    return Some(Err(format!("worker {} could not start: {}", why.0, why.1)));
                }
                (state.workers.iter().filter(|w| w.round_trip_ms.is_some()).count() == count as usize).then_some(Ok(()))
            }) => waited,
            () = tokio::time::sleep_until(deadline) => {
                let state = self.shared.lock();
                let (joined, ready) = (state.workers.len(), state.workers.iter().filter(|w| w.round_trip_ms.is_some()).count());
                Err(format!(
                    "only {joined} of {count} workers joined ({ready} ready) within {}s (--join-timeout)",
                    self.options.join_timeout.as_secs()
                ))
            }
            () = stop.stopped() => Err(format!("stopped before the load started: {}", stop.reason().map(|r| r.to_string()).unwrap_or_default())),
        };
        waited.map_err(EngineError::Workers)?;

        let start_at = SystemTime::now() + START_AFTER;
        let started = Instant::now() + START_AFTER;
        self.shared.lock().start = Some(Start { unix_us: unix_us(start_at) });
        self.shared.changed();
        merging.gate.open(started);
        eprintln!("gauntlet: {count} workers ready; the load starts in {}s", START_AFTER.as_secs());

        let planned = merging.streams.iter().map(|s| s.executor.duration()).max().unwrap_or_default();
        let mut stop_since: Option<Instant> = None;
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            ticker.tick().await;
            let now = Instant::now();
            if merging.stop.is_stopped() && stop_since.is_none() {
                stop_since = Some(now);
                self.shared.lock().stop = true;
            }
            let mut newly_lost = Vec::new();
            let all_ended = {
                let mut state = self.shared.lock();
                let (stopping, recorder) = (state.stop, state.recorder.clone());
                for worker in state.workers.iter_mut().filter(|w| w.lost.is_none()) {
                    let silent = now.saturating_duration_since(worker.last_seen.unwrap_or(started).max(started));
                    let why = match &worker.done {
                        Some(Done { error: Some(error), .. }) => Some(format!("it failed: {error}")),
                        Some(Done { stopped: Some(early), elapsed_s, .. })
                            if !stopping && elapsed_s + 1.0 < planned.as_secs_f64() =>
                        {
                            Some(format!("it ended early: {early}"))
                        }
                        Some(_) => None,
                        None if stop_since.is_some_and(|since| now.saturating_duration_since(since) > STOP_GRACE) => {
                            Some(format!("it did not finish within {}s of the stop", STOP_GRACE.as_secs()))
                        }
                        None if stop_since.is_some() => None,
                        None if now < started + planned => (now > started + LOST_AFTER && silent > LOST_AFTER)
                            .then(|| format!("nothing from it for {}s", silent.as_secs())),
                        None => (now > started + planned + FINISH_GRACE).then(|| {
                            format!("it did not finish within {}s of its schedule's end", FINISH_GRACE.as_secs())
                        }),
                    };
                    if let Some(why) = why {
                        let message = format!(
                            "worker {} ({} pid {}) stopped at second {}: {why}",
                            worker.index, worker.host, worker.pid, worker.last_second
                        );
                        worker.lost = Some(message.clone());
                        newly_lost.push(message);
                        // What it had in flight is not coming.
                        if let Some(recorder) = &recorder {
                            forget_in_flight(recorder, worker);
                        }
                    }
                }
                state.workers.iter().all(|w| w.done.is_some() || w.lost.is_some())
            };
            for message in &newly_lost {
                eprintln!("gauntlet: {message}");
                if self.options.on_worker_loss == OnWorkerLoss::Stop && !merging.stop.is_stopped() {
                    merging.stop.stop(StopReason::WorkerLost(message.clone()));
                    self.shared.lock().stop = true;
                }
            }
            if all_ended {
                break;
            }
        }
        let state = self.shared.lock();
        let elapsed =
            state.workers.iter().filter_map(|w| w.done.as_ref().map(|d| d.elapsed_s)).fold(0.0, f64::max).max(
                if state.workers.iter().any(|w| w.lost.is_some()) {
                    Instant::now().saturating_duration_since(started).min(planned).as_secs_f64()
                } else {
                    0.0
                },
            );
        let mut workers = state.workers.clone();
        workers.sort_by_key(|w| w.index);
        let mut notes = self.options.notes.clone();
        notes.extend(self::notes(&workers, self.options.on_worker_loss));
        write_workers(&merging.folder, &workers);
        Ok(EngineOutcome {
            started: Some(started),
            elapsed: Duration::from_secs_f64(elapsed),
            stopped: merging.stop.reason(),
            notes,
        })
    }
}

impl Workers for Coordinator {
    fn run(self: Box<Self>, merging: Merging) -> BoxFuture<'static, Result<EngineOutcome, EngineError>> {
        Box::pin(self.conduct(merging))
    }
}

/// A worker's calls in flight, taken back out of the merged count.
fn forget_in_flight(recorder: &Recorder, worker: &mut WorkerState) {
    for (index, operation) in Operation::ALL.iter().enumerate() {
        let change = -std::mem::take(&mut worker.in_flight[index]);
        if change != 0 {
            let empty = crate::engine::recorder::IntervalSnapshot {
                operation: *operation,
                measured: Default::default(),
                in_flight: 0,
            };
            recorder.absorb(&empty, change);
        }
    }
}

/// The summary's lines on the workers: clocks off, workers lost.
fn notes(workers: &[WorkerState], on_loss: OnWorkerLoss) -> Vec<String> {
    let mut notes = Vec::new();
    for w in workers {
        if let Some(offset) = w.clock_offset_ms.filter(|o| o.abs() * 1000.0 > CLOCK_TOLERANCE_US as f64) {
            let (by, way) = (offset.abs(), if offset < 0.0 { "ahead of" } else { "behind" });
            notes.push(format!(
                "worker {} ({}): its clock is {by:.0} ms {way} the coordinator's (measured over a {:.1} ms round trip); \
                 its start was set by the coordinator's clock, but its timestamps are off by that much",
                w.index,
                w.host,
                w.round_trip_ms.unwrap_or_default()
            ));
        }
        if let Some(lost) = &w.lost {
            let then = match on_loss {
                OnWorkerLoss::Stop => "the run was stopped",
                OnWorkerLoss::Continue => "the others went on: the offered load is short by its share from then on",
            };
            notes.push(format!("{lost}; {then}"));
        }
    }
    notes
}

/// `workers.json`: each worker's share, clock, seconds, requests and end.
fn write_workers(folder: &Path, workers: &[WorkerState]) {
    let path = folder.join(layout::WORKERS);
    let written = serde_json::to_vec_pretty(workers)
        .map_err(std::io::Error::other)
        .and_then(|json| crate::atomic::write(&path, &json));
    if let Err(e) = written {
        eprintln!("gauntlet: {}: {e}", path.display());
    }
}

/// A distributed run audits nothing (what each worker sent to the audited users stays on its
/// machine): the audit and the integrity thresholds are taken out of `plan`; the note says which.
pub fn without_audit(plan: &mut Plan) -> Option<String> {
    plan.audit_users = 0;
    let audited = crate::integrity::Integrity::default().counts().map(|(name, _)| name);
    let removed: Vec<String> = plan
        .scenario
        .thresholds
        .keys()
        .filter(|key| audited.contains(&key.split('{').next().unwrap_or(key)))
        .cloned()
        .collect();
    for key in &removed {
        plan.scenario.thresholds.remove(key);
    }
    (!removed.is_empty())
        .then(|| format!("not judged: {} (distributed runs do not run the integrity audit)", removed.join(", ")))
}

/// Refuses a plan that can't be split into `workers` shares.
pub fn check_splittable(plan: &Plan, workers: u32) -> Result<(), CoordinateError> {
    if workers == 0 {
        return Err(CoordinateError::Plan("--workers must be at least 1".into()));
    }
    for (name, stream) in &plan.scenario.streams {
        if stream.operations.contains_key(&OperationKind::ClaimStampede) {
            return Err(CoordinateError::Plan(format!(
                "stream '{name}': a claim stampede acts for one user, which no two workers may share; run it on one machine"
            )));
        }
        let executor = &plan.executors[name];
        if !executor.is_open() && (executor.pool_size() as u64) < u64::from(workers) {
            return Err(CoordinateError::Plan(format!(
                "stream '{name}' has {} virtual users, fewer than the {workers} workers",
                executor.pool_size()
            )));
        }
    }
    Ok(())
}

/// A refusal, with a message naming what was wrong.
fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn join(State(shared): State<Arc<Shared>>, axum::Json(join): axum::Json<Join>) -> Response {
    let index = {
        let mut state = shared.lock();
        if let Some(failed) = &state.failed {
            return refused(StatusCode::SERVICE_UNAVAILABLE, failed.clone());
        }
        let taken = |i: u32| state.workers.iter().any(|w| w.index == i);
        let index = match join.index {
            Some(i) if i >= shared.count => {
                return refused(StatusCode::BAD_REQUEST, format!("segment {i} of a run of {} workers", shared.count));
            }
            Some(i) if taken(i) => return refused(StatusCode::CONFLICT, format!("segment {i} is taken")),
            Some(i) => i,
            None => match (0..shared.count).find(|i| !taken(*i)) {
                Some(i) => i,
                None => {
                    return refused(StatusCode::CONFLICT, format!("this run already has its {} workers", shared.count));
                }
            },
        };
        state.workers.push(WorkerState {
            index,
            host: join.host,
            pid: join.pid,
            users: 0,
            last_seen: None,
            last_second: 0,
            seconds: 0,
            requests: 0,
            in_flight: [0; Operation::ALL.len()],
            clock_offset_ms: None,
            round_trip_ms: None,
            done: None,
            lost: None,
            folder: None,
        });
        index
    };
    shared.changed();
    let answer = shared
        .until(|state| {
            if let Some(failed) = &state.failed {
                return Some(Err(failed.clone()));
            }
            let assignment = state.assignments.as_ref()?.get(index as usize)?.clone();
            if let Some(worker) = state.worker(index) {
                worker.users = assignment.users.len();
            }
            Some(Ok(assignment))
        })
        .await;
    match answer {
        Ok(assignment) => axum::Json(assignment).into_response(),
        Err(failed) => refused(StatusCode::SERVICE_UNAVAILABLE, failed),
    }
}

async fn clock() -> axum::Json<Clock> {
    axum::Json(Clock { unix_us: unix_us(SystemTime::now()) })
}

async fn ready(State(shared): State<Arc<Shared>>, axum::Json(ready): axum::Json<Ready>) -> Response {
    {
        let mut state = shared.lock();
        let Some(worker) = state.worker(ready.worker) else {
            return refused(StatusCode::BAD_REQUEST, format!("no worker {}", ready.worker));
        };
        worker.clock_offset_ms = Some(ready.clock_offset_us as f64 / 1000.0);
        worker.round_trip_ms = Some(ready.round_trip_us as f64 / 1000.0);
    }
    shared.changed();
    let answer = shared.until(|state| match (&state.failed, state.start) {
        (Some(failed), _) => Some(Err(failed.clone())),
        (None, Some(start)) => Some(Ok(start)),
        (None, None) => None,
    });
    match answer.await {
        Ok(start) => axum::Json(start).into_response(),
        Err(failed) => refused(StatusCode::SERVICE_UNAVAILABLE, failed),
    }
}

async fn second(State(shared): State<Arc<Shared>>, axum::Json(report): axum::Json<SecondReport>) -> Response {
    let mut snapshots = Vec::with_capacity(report.snapshots.len());
    for wire in &report.snapshots {
        match wire.snapshot() {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(e) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("worker {} second {}: {e}", report.worker, report.second),
                );
            }
        }
    }
    let mut state = shared.lock();
    let Some(recorder) = state.recorder.clone() else {
        return refused(StatusCode::CONFLICT, "the run has not started");
    };
    let stop = state.stop;
    let Some(worker) = state.worker(report.worker) else {
        return refused(StatusCode::BAD_REQUEST, format!("no worker {}", report.worker));
    };
    if worker.lost.is_some() {
        // Counted as lost; what it sends now is not merged (its folder keeps it).
        return axum::Json(Reply { stop: true }).into_response();
    }
    for snapshot in &snapshots {
        let index = snapshot.operation.index();
        let change = snapshot.in_flight - worker.in_flight[index];
        worker.in_flight[index] = snapshot.in_flight;
        worker.requests += snapshot.requests();
        recorder.absorb(snapshot, change);
    }
    worker.last_seen = Some(Instant::now());
    worker.last_second = worker.last_second.max(report.second);
    worker.seconds += 1;
    axum::Json(Reply { stop }).into_response()
}

async fn done(State(shared): State<Arc<Shared>>, axum::Json(done): axum::Json<Done>) -> Response {
    let stop = {
        let mut state = shared.lock();
        let recorder = state.recorder.clone();
        let stop = state.stop;
        let Some(worker) = state.worker(done.worker) else {
            return refused(StatusCode::BAD_REQUEST, format!("no worker {}", done.worker));
        };
        if let Some(recorder) = &recorder {
            forget_in_flight(recorder, worker);
        }
        worker.done = Some(done);
        stop
    };
    shared.changed();
    axum::Json(Reply { stop }).into_response()
}

async fn folder(State(shared): State<Arc<Shared>>, UrlPath(worker): UrlPath<u32>, body: Bytes) -> Response {
    let Some(root) = shared.lock().folder.clone() else {
        return refused(StatusCode::CONFLICT, "the run has not started");
    };
    if worker >= shared.count {
        return refused(StatusCode::BAD_REQUEST, format!("no worker {worker}"));
    }
    let into = root.join(layout::worker_folder(worker));
    let unpacked = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&into)?;
        tar::Archive::new(body.as_ref()).unpack(&into)?;
        Ok::<_, std::io::Error>(into)
    })
    .await;
    match unpacked {
        Ok(Ok(into)) => {
            let mut state = shared.lock();
            if let Some(w) = state.worker(worker) {
                w.folder = Some(into.display().to_string());
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => refused(StatusCode::BAD_REQUEST, format!("worker {worker}'s folder: {e}")),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_blocks_cover_every_user_once() {
        for count in 1..=7u32 {
            let shares: u64 = (0..count).map(|index| Segment { index, count }.share(1001)).sum();
            assert_eq!(shares, 1001);
            let mut covered = Vec::new();
            for index in 0..count {
                covered.extend(Segment { index, count }.block(10_000));
            }
            assert_eq!(covered, (0..10_000).collect::<Vec<_>>(), "{count} workers");
        }
    }

    #[test]
    fn a_clock_off_by_200_ms_is_reported_and_a_close_one_is_not() {
        let worker = |index, offset: f64| WorkerState {
            index,
            host: "h".into(),
            pid: 1,
            users: 0,
            last_seen: None,
            last_second: 10,
            seconds: 10,
            requests: 0,
            in_flight: Default::default(),
            clock_offset_ms: Some(offset),
            round_trip_ms: Some(0.3),
            done: None,
            lost: None,
            folder: None,
        };
        let notes = notes(&[worker(0, 0.4), worker(1, -200.0)], OnWorkerLoss::Stop);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("worker 1 (h): its clock is 200 ms ahead of the coordinator's"), "{}", notes[0]);
    }
}
