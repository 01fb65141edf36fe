//! The engine: goose virtual users paced by arrival schedules (open model) or looping (closed
//! model), one goose scenario per stream, everything measured into the [`Recorder`] (goose's own
//! metrics are off: nothing reads them).
//!
//! In the open model a user's transaction serves arrivals one after another for as long as the
//! schedule lasts and waits without a timer in between; a stop wakes it. Goose only checks for
//! its own shutdown between transactions, so the other waits (the start gate, the closed model,
//! the end of a schedule) last at most [`MAX_WAIT`].

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::definition::executor::Executor;
use crate::definition::options::Balance;
use crate::definition::plan::Segment;
use crate::definition::plan::StreamPlan;
use crate::engine::arrivals::{ArrivalSchedule, Counted, Dispatch, Take};
use crate::engine::http::{RestClient, RestTarget, TargetError};
use crate::engine::recorder::Recorder;
use crate::engine::stop::{Stop, StopReason};
use crate::engine::workload::{Session, Workload};
use crate::target::operations::Operation;
use crate::target::operations::OperationKind;
use crate::target::requests::EventClients;

/// The longest a transaction waits for its arrival before yielding to goose.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// Users of each REST stream that open their connection before the load starts, so the first
/// arrivals go to warm users instead of each opening one (more open as the load needs them).
const PRE_CONNECTED: usize = 16;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Base URLs of the REST API (scheme, host, port), one per replica; empty when no stream
    /// uses it.
    pub api_urls: Vec<String>,
    /// Time from the last user's start to the schedules' start.
    pub lead: Duration,
    /// How late an arrival may start before it counts as dropped.
    pub max_lateness: Duration,
    /// Stops the run early (a signal, a service that died, an aborting threshold).
    pub stop: Stop,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct EngineOutcome {
    /// When the schedules started (None: stopped before every user had started).
    pub started: Option<Instant>,
    /// How long the load ran (shorter than planned when interrupted).
    pub elapsed: Duration,
    /// Why it ended early, if it did.
    pub stopped: Option<StopReason>,
    /// What the summary should say of how the load was sent (a distributed run's workers).
    pub notes: Vec<String>,
}

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Goose refused the configuration or failed.
    #[error("goose: {0}")]
    Goose(String),
    /// A distributed run's workers could not send the load.
    #[error("{0}")]
    Workers(String),
    /// The REST target cannot be used.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Opens when every user of the run has started: goose launches users over a while, and an
/// arrival schedule running before its users exist would count their absence as dropped load.
#[derive(Debug)]
pub struct StartGate {
    expected: usize,
    arrived: AtomicUsize,
    opened_at: OnceLock<Instant>,
    opened: Notify,
    margin: Duration,
    not_before: Option<Instant>,
}

impl StartGate {
    fn new(expected: usize, margin: Duration, not_before: Option<Instant>) -> Self {
        let (arrived, opened_at, opened) = (AtomicUsize::new(0), OnceLock::new(), Notify::new());
        Self { expected, arrived, opened_at, opened, margin, not_before }
    }

    fn arrive(&self) {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= self.expected {
            let at = Instant::now() + self.margin;
            self.open(self.not_before.map_or(at, |not_before| at.max(not_before)));
        }
    }

    /// Opens the gate for a start at `at` (a coordinator's, whose load its workers send).
    pub fn open(&self, at: Instant) {
        let _ = self.opened_at.set(at);
        self.opened.notify_waiters();
    }

    /// When the schedules start, once known.
    pub fn start(&self) -> Option<Instant> {
        self.opened_at.get().copied()
    }

    /// Waits (at most `limit`) for the gate to open.
    async fn wait(&self, limit: Duration) -> Option<Instant> {
        let notified = self.opened.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(at) = self.start() {
            return Some(at);
        }
        let _ = tokio::time::timeout(limit, notified).await;
        self.start()
    }

    /// Waits until the gate opens or `stop` fires.
    pub async fn opened(&self, stop: &CancellationToken) -> Option<Instant> {
        loop {
            if let Some(at) = self.wait(MAX_WAIT).await {
                return Some(at);
            }
            if stop.is_cancelled() || goose::is_killswitch_triggered() {
                return None;
            }
        }
    }
}

struct StreamRuntime {
    index: u16,
    executor: Executor,
    segment: Segment,
    gate: Arc<StartGate>,
    schedule: OnceLock<Option<ArrivalSchedule>>,
    mix: Arc<Mix>,
    max_lateness: Duration,
    next_vu: AtomicUsize,
    busy: Arc<AtomicUsize>,
    workload: Arc<Workload>,
    rest: Option<Arc<RestTarget>>,
    stop: Stop,
}

/// A stream's weighted operations. What arrival `i` does is a function of `i` (a hash of it
/// against the stream's seed), so the dispatcher that counts it and the user that serves or drops
/// it agree without passing anything along.
#[derive(Debug)]
struct Mix {
    operations: Vec<(OperationKind, u32)>,
    total: u32,
    seed: u64,
}

impl Mix {
    fn new(operations: Vec<(OperationKind, u32)>) -> Self {
        let total = operations.iter().map(|(_, w)| w).sum::<u32>().max(1);
        Self { operations, total, seed: rand::random() }
    }

    /// The operation of arrival `index`.
    fn of(&self, index: u64) -> OperationKind {
        if self.operations.len() == 1 {
            return self.operations[0].0;
        }
        // splitmix64: consecutive indexes give independent tickets.
        let mut z = self.seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.pick((z ^ (z >> 31)) % u64::from(self.total))
    }

    /// A random operation (closed model).
    fn random(&self, rng: &mut SmallRng) -> OperationKind {
        use rand::Rng;
        self.pick(rng.random_range(0..u64::from(self.total)))
    }

    fn pick(&self, mut ticket: u64) -> OperationKind {
        for (op, weight) in &self.operations {
            if ticket < u64::from(*weight) {
                return *op;
            }
            ticket -= u64::from(*weight);
        }
        self.operations[0].0
    }
}

/// Counts each released batch of arrivals by operation, on the dispatcher's thread.
struct StreamDispatch {
    stream: u16,
    mix: Arc<Mix>,
    recorder: Arc<Recorder>,
    busy: Arc<AtomicUsize>,
    pool: usize,
}

impl Dispatch for StreamDispatch {
    fn due(&mut self, range: Range<u64>) -> bool {
        let mut counts = [0u64; Operation::ALL.len()];
        for index in range {
            counts[OperationKind::counted_as(self.mix.of(index)) as usize] += 1;
        }
        for (op, count) in Operation::ALL.into_iter().zip(counts) {
            if count > 0 {
                self.recorder.record_scheduled(op, self.stream, count);
            }
        }
        self.busy.load(Ordering::Relaxed) >= self.pool
    }
}

impl StreamRuntime {
    /// The schedules' start, waiting a little for the gate; None while it is still closed.
    async fn started(&self) -> Option<Instant> {
        self.gate.wait(MAX_WAIT).await
    }

    fn schedule(&self, started: Instant) -> Option<&ArrivalSchedule> {
        self.schedule
            .get_or_init(|| {
                self.executor.arrival_curve(u64::from(self.index)).map(|curve| {
                    // The plan checked the Poisson arrivals' count; should it fail here, arrivals
                    // fall evenly.
                    let curve = curve
                        .unwrap_or_else(|why| {
                            eprintln!("gauntlet: {why}; arrivals fall evenly");
                            self.executor.rate_curve().expect("an arrival curve has a rate curve")
                        })
                        .striped(self.segment);
                    let owner = StreamDispatch {
                        stream: self.index,
                        mix: self.mix.clone(),
                        recorder: self.workload.recorder.clone(),
                        busy: self.busy.clone(),
                        pool: self.executor.pool_size(),
                    };
                    ArrivalSchedule::start(started, curve, owner)
                })
            })
            .as_ref()
    }

    /// Drops `arrivals` of `schedule`: no user started them in time; they are as late as now says.
    fn drop_arrivals(&self, schedule: &ArrivalSchedule, arrivals: Range<u64>) {
        let now = Instant::now();
        for index in arrivals {
            let arrival = schedule.arrival(index);
            let op = OperationKind::counted_as(self.mix.of(index));
            let lateness = now.saturating_duration_since(arrival.at);
            self.workload.recorder.record_dropped(op, self.index, lateness, arrival.pool_full);
        }
    }

    /// Stops the schedule (waking every waiting user); arrivals released and not taken were
    /// never served and are dropped with the lateness they reached.
    fn stop(&self) {
        if let Some(Some(schedule)) = self.schedule.get() {
            schedule.stop();
            self.drop_arrivals(schedule, schedule.drain());
        }
    }

    /// Stops releasing arrivals and wakes the users waiting for them, so they see the stop (what
    /// was released and not taken is dropped by [`stop`](Self::stop) once goose has ended).
    fn halt(&self) {
        if let Some(Some(schedule)) = self.schedule.get() {
            schedule.stop();
        }
    }
}

/// Which of `sets` gRPC connection sets user `vu` takes, and which replica's channel in it comes
/// first (per connection: its only one). Consecutive users take the sets in turn and, once
/// round, the next replica, so users cover every channel of every set.
fn event_channels_of(vu: usize, sets: usize) -> (usize, usize) {
    (vu % sets, vu / sets)
}

async fn on_start(stream: Arc<StreamRuntime>, user: &mut GooseUser) -> TransactionResult {
    let vu = stream.next_vu.fetch_add(1, Ordering::Relaxed);
    let channels = &stream.workload.channels;
    let grpc = (!channels.is_empty()).then(|| {
        let (set, start) = event_channels_of(vu, channels.len());
        EventClients::new(&channels[set], start, stream.workload.balance == Balance::PerRequest)
    });
    let mut rest = stream.rest.clone().map(RestClient::new);
    if let Some(client) = rest.as_mut().filter(|_| vu < PRE_CONNECTED) {
        // A failure shows in the first request.
        let _ = client.connect().await;
    }
    stream.gate.arrive();
    user.set_session_data(Session {
        vu,
        stream: stream.index,
        rng: SmallRng::seed_from_u64(0x6A75_6E74 ^ (vu as u64) << 20 ^ rand::random::<u32>() as u64),
        rest,
        grpc,
        probe_baseline: None,
    });
    Ok(())
}

async fn iteration(stream: Arc<StreamRuntime>, user: &mut GooseUser) -> TransactionResult {
    if stream.stop.is_stopped() {
        // Goose clears its stop switch while it starts: a stop that came before it is repeated.
        goose::trigger_killswitch("stopped by the harness");
        tokio::time::sleep(MAX_WAIT / 10).await; // until goose sees it, without spinning
        return Ok(());
    }
    let Some(started) = stream.started().await else { return Ok(()) };
    let session = user.get_session_data_unchecked_mut::<Session>();
    match stream.schedule(started) {
        Some(schedule) => serve(&stream, schedule, session).await,
        None => {
            if let Some(at) = closed_model_turn(&stream, started, session).await {
                let kind = stream.mix.random(&mut session.rng);
                let _busy = Counted::new(&stream.busy);
                stream.workload.run(kind, session, at).await;
            }
        }
    }
    Ok(())
}

/// Open model: serves arrivals one after another for as long as the schedule lasts, waiting
/// (without a timer) when there is none. Arrivals later than `max_lateness` found no user in time:
/// they are dropped, all of them in one step.
async fn serve(stream: &StreamRuntime, schedule: &ArrivalSchedule, session: &mut Session) {
    let warm = |session: &Session| session.rest.as_ref().is_none_or(RestClient::is_open);
    if !warm(session) {
        // Until a warm user cannot take the next arrival.
        schedule.wait(false).await;
    }
    loop {
        if stream.stop.is_stopped() {
            return;
        }
        match schedule.take(stream.max_lateness) {
            Take::Arrival(arrival) => {
                let _busy = Counted::new(&stream.busy);
                stream.workload.run(stream.mix.of(arrival.index), session, arrival.at).await;
            }
            Take::Stale(arrivals) => stream.drop_arrivals(schedule, arrivals),
            Take::Nothing if schedule.finished() => {
                // Until goose ends the run, without spinning.
                tokio::time::sleep(MAX_WAIT).await;
                return;
            }
            Take::Nothing => schedule.wait(warm(session)).await,
        }
    }
}

/// Closed model: run now if this user is active, else idle briefly.
async fn closed_model_turn(stream: &StreamRuntime, started: Instant, session: &Session) -> Option<Instant> {
    let now = Instant::now();
    if now < started {
        tokio::time::sleep_until(started.min(now + MAX_WAIT)).await;
        return None;
    }
    let active = stream.executor.vus_at(now - started);
    if now >= started + stream.executor.duration() || session.vu >= active {
        tokio::time::sleep(MAX_WAIT / 2).await;
        return None;
    }
    Some(Instant::now())
}

/// Runs the streams to completion (or until `options.stop` or Ctrl-C).
pub async fn run(
    streams: Vec<StreamPlan>,
    workload: Arc<Workload>,
    gate: Arc<StartGate>,
    options: EngineOptions,
) -> Result<EngineOutcome, EngineError> {
    let total_users: usize = streams.iter().map(|s| s.executor.pool_size()).sum();
    let duration = streams.iter().map(|s| s.executor.duration()).max().unwrap_or_default();
    let goose_error = |e: GooseError| EngineError::Goose(e.to_string());
    // Goose's own HTTP client is never used (REST goes through each user's `RestClient`): one
    // shared client instead of one per user.
    let mut attack =
        GooseAttack::initialize_with_config(goose_configuration(&options, total_users, options.lead + duration))
            .map_err(goose_error)?
            .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
            .map_err(goose_error)?;
    let rest = match options.api_urls.as_slice() {
        [] => None,
        urls => Some(Arc::new(
            RestTarget::new(urls, &workload.base_path, &workload.auth, &workload.users, workload.request_timeout)
                .await?
                .balanced(workload.balance),
        )),
    };
    let mut runtimes: Vec<Arc<StreamRuntime>> = Vec::new();
    for plan in streams {
        let weight = plan.executor.pool_size();
        let mix = Mix::new(plan.operations.into_iter().filter(|(_, w)| *w > 0).collect());
        let runtime = Arc::new(StreamRuntime {
            index: u16::try_from(runtimes.len()).map_err(|_| EngineError::Goose("too many streams".into()))?,
            mix: Arc::new(mix),
            rest: rest.clone(),
            busy: Arc::new(AtomicUsize::new(0)),
            executor: plan.executor,
            segment: plan.segment,
            gate: gate.clone(),
            schedule: OnceLock::new(),
            max_lateness: options.max_lateness,
            next_vu: AtomicUsize::new(0),
            workload: workload.clone(),
            stop: options.stop.clone(),
        });
        runtimes.push(runtime.clone());
        let start_stream = runtime.clone();
        let iterate_stream = runtime;
        let scenario = Scenario::new(&plan.name)
            .set_weight(weight)
            .map_err(|e| EngineError::Goose(e.to_string()))?
            .register_transaction(
                Transaction::new(Arc::new(move |user| Box::pin(on_start(start_stream.clone(), user))))
                    .set_name("start")
                    .set_on_start(),
            )
            .register_transaction(
                Transaction::new(Arc::new(move |user| Box::pin(iteration(iterate_stream.clone(), user))))
                    .set_name("iteration"),
            );
        attack = attack.register_scenario(scenario);
    }

    goose::reset_killswitch();
    let stop = options.stop.clone();
    let to_halt = runtimes.clone();
    let stopper = tokio::spawn(async move {
        stop.stopped().await;
        goose::trigger_killswitch("stopped by the harness");
        for runtime in &to_halt {
            runtime.halt();
        }
    });
    let result = Box::pin(attack.execute()).await;
    for runtime in &runtimes {
        runtime.stop();
    }
    // Goose's own Ctrl-C handler acts only where the process has none (a library user's).
    let stopped = options.stop.reason().or_else(|| goose::is_killswitch_triggered().then_some(StopReason::Signal));
    stopper.abort();
    result.map_err(|e| EngineError::Goose(e.to_string()))?;
    let started = gate.start();
    let elapsed = started.map_or(Duration::ZERO, |s| Instant::now().saturating_duration_since(s).min(duration));
    Ok(EngineOutcome { started, elapsed, stopped, notes: Vec::new() })
}

/// A gate for the users of `streams`, opening `margin` after the last one started.
pub fn start_gate(streams: &[StreamPlan], margin: Duration) -> Arc<StartGate> {
    Arc::new(StartGate::new(streams.iter().map(|s| s.executor.pool_size()).sum::<usize>().max(1), margin, None))
}

/// A gate for the users of `streams` opening at `at` (a common start), or as soon as they have
/// all started should that be later.
pub fn start_gate_at(streams: &[StreamPlan], at: Instant) -> Arc<StartGate> {
    let users = streams.iter().map(|s| s.executor.pool_size()).sum::<usize>().max(1);
    Arc::new(StartGate::new(users, Duration::ZERO, Some(at)))
}

fn goose_configuration(options: &EngineOptions, users: usize, until_end: Duration) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    // Goose needs a host even when no stream speaks REST; nothing is sent to it then.
    config.host = Some(options.api_urls.first().cloned().unwrap_or_else(|| "http://127.0.0.1:9".into()));
    config.users = Some(users.max(1));
    // Launch every user well inside the lead time.
    config.increase_rate = Some(format!("{}", (users.max(1) * 8).max(1000)));
    // Counted by goose from the moment every user has started, like the gate.
    config.run_time = Some(format!("{}s", until_end.as_secs_f64().ceil() as u64 + 1));
    // The harness records everything itself; nothing reads goose's metrics.
    config.no_metrics = true;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_telnet = true;
    config.quiet = 1;
    config.timeout = Some("60".into());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_users_take_every_channel_of_every_set_in_turn() {
        // Two connection sets to two replicas: the first four users take the four channels.
        for (sets, replicas) in [(2, 2), (3, 2), (2, 3), (1, 2), (4, 2)] {
            let taken: std::collections::BTreeSet<(usize, usize)> = (0..sets * replicas)
                .map(|vu| event_channels_of(vu, sets))
                .map(|(set, start)| (set, start % replicas))
                .collect();
            assert_eq!(taken.len(), sets * replicas, "{sets} sets × {replicas} replicas: {taken:?}");
        }
    }
}
