//! The engine: goose virtual users paced by arrival schedules (open model) or looping (closed
//! model), one goose scenario per stream, everything measured into the [`Recorder`].
//!
//! Goose only checks for shutdown between transactions, so a transaction never waits longer than
//! [`MAX_WAIT`] for an arrival: a user with nothing to do returns and asks again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::executor::{Arrival, ArrivalSchedule, Dispatch, Executor};
use crate::recorder::{Operation, Recorder};
use crate::scenario::OperationKind;
use crate::stop::{Stop, StopReason};
use crate::workload::{GrpcClients, Session, Workload};

/// The longest a transaction waits for its arrival before yielding to goose.
const MAX_WAIT: Duration = Duration::from_millis(250);

/// One stream as the engine runs it.
#[derive(Debug)]
pub struct StreamPlan {
    /// The stream's name.
    pub name: String,
    /// How iterations start.
    pub executor: Executor,
    /// Operations and weights.
    pub operations: BTreeMap<OperationKind, u32>,
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Base URL of the REST API (scheme, host, port), if any stream uses it.
    pub api_url: Option<String>,
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
}

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Goose refused the configuration or failed.
    #[error("goose: {0}")]
    Goose(String),
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
}

impl StartGate {
    fn new(expected: usize, margin: Duration) -> Self {
        Self { expected, arrived: AtomicUsize::new(0), opened_at: OnceLock::new(), opened: Notify::new(), margin }
    }

    fn arrive(&self) {
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= self.expected {
            let _ = self.opened_at.set(Instant::now() + self.margin);
            self.opened.notify_waiters();
        }
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
    gate: Arc<StartGate>,
    schedule: OnceLock<Option<ArrivalSchedule<Due>>>,
    mix: Vec<(OperationKind, u32)>,
    max_lateness: Duration,
    next_vu: AtomicUsize,
    busy: Arc<AtomicUsize>,
    workload: Arc<Workload>,
    stop: Stop,
}

/// What an arrival carries: its operation, and whether every user of the stream was busy when
/// it came due (if it is dropped, the pool was exhausted rather than the generator too slow to
/// hand it to a free user).
#[derive(Debug, Clone, Copy)]
struct Due {
    kind: OperationKind,
    pool_full: bool,
}

/// Picks each arrival's operation as it comes due and counts it, on the dispatcher's thread.
struct StreamDispatch {
    stream: u16,
    mix: Vec<(OperationKind, u32)>,
    rng: SmallRng,
    recorder: Arc<Recorder>,
    busy: Arc<AtomicUsize>,
    pool: usize,
}

impl Dispatch for StreamDispatch {
    type Kind = Due;

    fn due(&mut self, _: u64) -> Due {
        let kind = pick(&self.mix, &mut self.rng);
        self.recorder.record_scheduled(counted_as(kind), self.stream);
        Due { kind, pool_full: self.busy.load(Ordering::Relaxed) >= self.pool }
    }

    fn evicted(&mut self, arrival: Arrival<Due>, now: Instant) {
        let lateness = now.saturating_duration_since(arrival.at);
        self.recorder.record_dropped(counted_as(arrival.kind.kind), self.stream, lateness, arrival.kind.pool_full);
    }
}

fn pick(mix: &[(OperationKind, u32)], rng: &mut SmallRng) -> OperationKind {
    use rand::Rng;
    let total: u32 = mix.iter().map(|(_, w)| w).sum();
    let mut ticket = rng.random_range(0..total.max(1));
    for (op, weight) in mix {
        if ticket < *weight {
            return *op;
        }
        ticket -= weight;
    }
    mix[0].0
}

impl StreamRuntime {
    /// The schedules' start, waiting a little for the gate; None while it is still closed.
    async fn started(&self) -> Option<Instant> {
        self.gate.wait(MAX_WAIT).await
    }

    fn schedule(&self, started: Instant) -> Option<&ArrivalSchedule<Due>> {
        self.schedule
            .get_or_init(|| {
                self.executor.rate_curve().map(|curve| {
                    let owner = StreamDispatch {
                        stream: self.index,
                        mix: self.mix.clone(),
                        rng: SmallRng::seed_from_u64(rand::random()),
                        recorder: self.workload.recorder.clone(),
                        busy: self.busy.clone(),
                        pool: self.executor.pool_size(),
                    };
                    ArrivalSchedule::start(started, curve, owner)
                })
            })
            .as_ref()
    }

    /// Drops `arrival`, `lateness` after it was due: no user started it in time.
    fn drop_arrival(&self, arrival: Arrival<Due>, lateness: Duration) {
        let Due { kind, pool_full } = arrival.kind;
        self.workload.recorder.record_dropped(counted_as(kind), self.index, lateness, pool_full);
    }

    /// Stops the schedule; arrivals still queued were never served and are dropped with the
    /// lateness they reached.
    fn stop(&self) {
        if let Some(Some(schedule)) = self.schedule.get() {
            schedule.stop();
            let now = Instant::now();
            while let Some(arrival) = schedule.try_next() {
                self.drop_arrival(arrival, now.saturating_duration_since(arrival.at));
            }
        }
    }
}

/// The recorder operation an arrival of `kind` is counted under.
fn counted_as(kind: OperationKind) -> Operation {
    match kind {
        OperationKind::GetChallenges | OperationKind::GetThenClaim => Operation::GetChallenges,
        OperationKind::Login => Operation::Login,
        OperationKind::Stat => Operation::Stat,
        OperationKind::EndToEnd => Operation::EndToEnd,
    }
}

async fn on_start(stream: Arc<StreamRuntime>, user: &mut GooseUser) -> TransactionResult {
    let vu = stream.next_vu.fetch_add(1, Ordering::Relaxed);
    let channels = &stream.workload.channels;
    let grpc = (!channels.is_empty()).then(|| GrpcClients::new(channels[vu % channels.len()].clone()));
    stream.gate.arrive();
    user.set_session_data(Session {
        vu,
        stream: stream.index,
        rng: SmallRng::seed_from_u64(0x6A75_6E74 ^ (vu as u64) << 20 ^ rand::random::<u32>() as u64),
        grpc,
        probe_baseline: None,
    });
    Ok(())
}

/// Marks a user of the stream busy until dropped.
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn iteration(stream: Arc<StreamRuntime>, user: &mut GooseUser) -> TransactionResult {
    if stream.stop.is_stopped() {
        // Goose clears its stop switch while it starts: a stop that came before it is repeated.
        goose::trigger_killswitch("stopped by the harness");
        tokio::time::sleep(MAX_WAIT / 10).await; // until goose sees it, without spinning
        return Ok(());
    }
    let Some(started) = stream.started().await else { return Ok(()) };
    let mut session = user.get_session_data_unchecked::<Session>().clone();
    let (intended, kind) = match stream.schedule(started) {
        Some(schedule) => match next_arrival(&stream, schedule).await {
            Some(arrival) => (arrival.at, arrival.kind.kind),
            None => return Ok(()),
        },
        None => match closed_model_turn(&stream, started, &session).await {
            Some(at) => (at, pick(&stream.mix, &mut session.rng)),
            None => return Ok(()),
        },
    };
    stream.busy.fetch_add(1, Ordering::Relaxed);
    let _busy = Busy(&stream.busy);
    let workload = &stream.workload;
    match kind {
        OperationKind::GetChallenges => workload.run_get(user, &mut session, intended).await,
        OperationKind::GetThenClaim => workload.run_get_then_claim(user, &mut session, intended).await,
        OperationKind::Login => workload.run_login(user, &mut session, intended).await,
        OperationKind::Stat => workload.run_stat(user, &mut session, intended).await,
        OperationKind::EndToEnd => workload.run_end_to_end(user, &mut session, intended).await,
    }
    user.set_session_data(session);
    Ok(())
}

/// Open model: the next arrival this user takes; None when there is nothing to do in this
/// transaction (no arrival yet, or finished). Arrivals that waited longer than `max_lateness`
/// found no user in time: they are dropped here, all of them in one pass.
async fn next_arrival(stream: &StreamRuntime, schedule: &ArrivalSchedule<Due>) -> Option<Arrival<Due>> {
    loop {
        let Some(arrival) = schedule.next(MAX_WAIT).await else {
            if schedule.finished() {
                tokio::time::sleep(MAX_WAIT).await;
            }
            return None;
        };
        let lateness = Instant::now().saturating_duration_since(arrival.at);
        if lateness <= stream.max_lateness {
            return Some(arrival);
        }
        stream.drop_arrival(arrival, lateness);
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
    let mut attack =
        GooseAttack::initialize_with_config(goose_configuration(&options, total_users, options.lead + duration))
            .map_err(|e| EngineError::Goose(e.to_string()))?;
    let mut runtimes = Vec::new();
    for plan in streams {
        let weight = plan.executor.pool_size();
        let mix: Vec<(OperationKind, u32)> = plan.operations.into_iter().filter(|(_, w)| *w > 0).collect();
        let runtime = Arc::new(StreamRuntime {
            index: u16::try_from(runtimes.len()).map_err(|_| EngineError::Goose("too many streams".into()))?,
            mix,
            busy: Arc::new(AtomicUsize::new(0)),
            executor: plan.executor,
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
    let stopper = tokio::spawn(async move {
        stop.stopped().await;
        goose::trigger_killswitch("stopped by the harness");
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
    Ok(EngineOutcome { started, elapsed, stopped })
}

/// A gate for the users of `streams`, opening `margin` after the last one started.
pub fn start_gate(streams: &[StreamPlan], margin: Duration) -> Arc<StartGate> {
    Arc::new(StartGate::new(streams.iter().map(|s| s.executor.pool_size()).sum::<usize>().max(1), margin))
}

fn goose_configuration(options: &EngineOptions, users: usize, until_end: Duration) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    // Goose needs a host even when no stream speaks REST; nothing is sent to it then.
    config.host = Some(options.api_url.clone().unwrap_or_else(|| "http://127.0.0.1:9".into()));
    config.users = Some(users.max(1));
    // Launch every user well inside the lead time.
    config.increase_rate = Some(format!("{}", (users.max(1) * 8).max(1000)));
    // Counted by goose from the moment every user has started, like the gate.
    config.run_time = Some(format!("{}s", until_end.as_secs_f64().ceil() as u64 + 1));
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.no_reset_metrics = true;
    config.no_telnet = true;
    config.quiet = 1;
    config.timeout = Some("60".into());
    config
}
