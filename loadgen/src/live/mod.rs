//! # A run as it happens
//!
//! [`Live`] is where each second of a run meets: the engine's interval (rates, errors, drops,
//! latency percentiles per operation, the thresholds' standing), the samplers' round (CPU and
//! memory per component, the database's figures, the event buffer), a sweep's levels and
//! verdicts so far, and at the end the verdict and the finished reports. Each is kept as a
//! plain, serialisable record and published to whoever watches:
//!
//! - [`server`]: the dashboard (`--dashboard`), an axum page whose charts fill from server-sent
//!   events, and loadgen's own `/metrics` for Prometheus, on one port.
//! - [`metrics`]: loadgen's counters and latency histograms in Prometheus' text format.
//! - [`grafana`]: the Grafana dashboard and alert rules in `docker/grafana/`, generated here so
//!   they name only metrics that exist.
//!
//! The terminal view reads the latest round from here too. A browser that connects late, or
//! reconnects, is first sent everything of the run so far, then each second as it comes.

pub mod grafana;
pub mod metrics;
pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::engine::recorder::IntervalSnapshot;
use crate::observe::Observation;
use crate::observe::postgres::{COMPONENT as DATABASE, StatementDelta};
use crate::results::summary::ThresholdResult;

use self::metrics::Counters;

/// The start of one run (a sweep publishes one per level).
#[derive(Debug, Clone, Serialize)]
pub struct RunStart {
    /// The scenario's name.
    pub scenario: String,
    /// The results folder being written.
    pub folder: String,
    /// The planned load, seconds.
    pub duration_s: f64,
    /// Each operation's target arrival rate.
    pub targets: BTreeMap<String, f64>,
    /// Every threshold, as `metric expression`.
    pub thresholds: Vec<String>,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    fn of(histogram: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        (!histogram.is_empty()).then(|| {
            let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
            Self { p50: ms(0.5), p95: ms(0.95), p99: ms(0.99) }
        })
    }
}

/// One operation's second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationSecond {
    /// Arrivals due this second (offered load); for closed-model streams, none.
    pub scheduled: u64,
    /// Requests completed this second.
    pub requests: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Arrivals dropped this second.
    pub dropped: u64,
    /// Calls in flight at the second's end.
    pub in_flight: i64,
    /// The target rate this second, if the schedule sets one.
    pub target: Option<f64>,
    /// Latency from the intended send time.
    pub latency_ms: Option<Percentiles>,
    /// Service time (from the actual send).
    pub service_ms: Option<Percentiles>,
}

/// One second of the load.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the load started.
    pub t: u64,
    /// The second's true length, s.
    pub length_s: f64,
    /// Per operation, by name.
    pub operations: BTreeMap<String, OperationSecond>,
    /// Every threshold's standing over the run so far (`value: null` when it is judged at the
    /// end, from what the samplers or the audit found).
    pub thresholds: Vec<ThresholdResult>,
}

impl Second {
    /// The second from the engine's interval.
    pub fn from_interval(
        t: u64,
        length_s: f64,
        snapshots: &[IntervalSnapshot],
        targets: &BTreeMap<String, f64>,
        thresholds: Vec<ThresholdResult>,
    ) -> Self {
        let mut operations = BTreeMap::new();
        for s in snapshots {
            let name = s.operation.name().to_owned();
            let target = targets.get(&name).copied();
            if s.is_empty() && s.in_flight == 0 && target.is_none() {
                continue;
            }
            operations.insert(
                name,
                OperationSecond {
                    scheduled: s.scheduled(),
                    requests: s.requests(),
                    errors: s.errors(),
                    errors_by_kind: s.errors_by_kind.clone(),
                    dropped: s.dropped(),
                    in_flight: s.in_flight,
                    target,
                    latency_ms: Percentiles::of(&s.latency()),
                    service_ms: Percentiles::of(&s.service()),
                },
            );
        }
        Self { t, length_s, operations, thresholds }
    }
}

/// One component's resources.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// CPU, % of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory, MiB.
    pub memory_mb: Option<f64>,
}

/// The database's figures of one round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseRound {
    /// Connections open.
    pub connections: Option<f64>,
    /// Backends waiting on a lock.
    pub lock_waits: Option<f64>,
    /// Commits per second.
    pub commits_per_s: Option<f64>,
    /// Each service's connection pool: busy share (0–1).
    pub pool_busy: BTreeMap<String, f64>,
    /// The statement with the most execution time since the load began.
    pub top_statement: Option<StatementDelta>,
}

/// One round of the samplers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Round {
    /// Seconds since the load started.
    pub t: u64,
    /// CPU and memory per component (loadgen, the services, postgres, the machine).
    pub components: BTreeMap<String, Usage>,
    /// The database.
    pub database: DatabaseRound,
    /// Events accepted but not yet written, per service that reports a buffer.
    pub event_buffer: BTreeMap<String, f64>,
}

impl Round {
    /// The round from the samplers' observations.
    pub fn from_observations(t: u64, rows: &[Observation], top_statement: Option<&StatementDelta>) -> Self {
        let mut round = Round { t, ..Round::default() };
        let mut pools: BTreeMap<&str, (Option<f64>, Option<f64>)> = BTreeMap::new();
        for o in rows {
            let component = o.component.as_str();
            match o.metric.as_str() {
                "cpu_percent" => round.components.entry(o.component.clone()).or_default().cpu_percent = Some(o.value),
                "memory_bytes" => {
                    round.components.entry(o.component.clone()).or_default().memory_mb = Some(o.value / 1048576.0);
                }
                "connections_total" if component == DATABASE => round.database.connections = Some(o.value),
                "lock_waits" if component == DATABASE => round.database.lock_waits = Some(o.value),
                "commits_per_s" if component == DATABASE => round.database.commits_per_s = Some(o.value),
                "db_pool_connections_active" => pools.entry(component).or_default().0 = Some(o.value),
                "db_pool_connections_max" => pools.entry(component).or_default().1 = Some(o.value),
                "event_buffer_size" => {
                    round.event_buffer.insert(o.component.clone(), o.value);
                }
                _ => {}
            }
        }
        for (service, (active, max)) in pools {
            if let (Some(active), Some(max)) = (active, max)
                && max > 0.0
            {
                round.database.pool_busy.insert(service.to_owned(), active / max);
            }
        }
        round.database.top_statement = top_statement.cloned();
        round
    }
}

/// One sweep level, as the dashboard lists them.
#[derive(Debug, Clone, Serialize)]
pub struct LevelVerdict {
    /// `api`, `events` or `combined`.
    pub mode: String,
    /// The level, e.g. `500rps+1750eps`.
    pub level: String,
    /// None while it runs; else whether it held.
    pub held: Option<bool>,
    /// The limit it broke, if it did.
    pub broken: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunEnd {
    /// The verdict.
    pub passed: bool,
    /// Why it ended early, if it did.
    pub interrupted: Option<String>,
    /// The finished folder.
    pub folder: String,
    /// The reports, as links on the dashboard's port (`/results/{n}/...`).
    pub reports: Vec<Link>,
    /// False for a sweep level's run: more are coming.
    pub last: bool,
}

/// A named link.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// What it is.
    pub title: String,
    /// Where, on the dashboard's port.
    pub href: String,
}

/// One published message: an SSE event name and its JSON.
#[derive(Debug, Clone)]
pub struct Message {
    /// `run`, `second`, `round`, `sweep` or `end`.
    pub event: &'static str,
    /// The record as JSON.
    pub data: Arc<str>,
}

#[derive(Default)]
struct State {
    /// This run's messages (and the sweep's), replayed to a browser that connects.
    history: Vec<Message>,
    /// The sweep's levels so far.
    sweep: Vec<LevelVerdict>,
    /// The latest round.
    round: Option<Round>,
    /// The finished folders `/results/{n}/` serves.
    served: Vec<std::path::PathBuf>,
    /// Cumulative counts for `/metrics`.
    counters: Counters,
}

/// The live record of the runs of this process, shared by the sampler, the samplers, the sweep
/// and the dashboard. Cheap to clone. Unwatched (no dashboard), it keeps only the samplers'
/// latest round, for the terminal: nothing is serialised, kept for replay or counted.
#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<State>>,
    sender: broadcast::Sender<Message>,
    watched: bool,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("watchers", &self.sender.receiver_count()).finish()
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// A record no one watches (no dashboard): only the latest round is kept.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(256);
        Self { state: Arc::new(Mutex::new(State::default())), sender, watched: false }
    }

    /// A record a dashboard serves: every message is kept for replay and sent, and the
    /// seconds are counted for `/metrics`.
    pub fn watched() -> Self {
        Self { watched: true, ..Self::new() }
    }

    /// True when a dashboard serves this record (worth building its seconds).
    pub fn is_watched(&self) -> bool {
        self.watched
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps and sends one message (under the state's lock, so a browser that connects gets each
    /// message once: in its replay or live).
    fn publish(&self, state: &mut State, event: &'static str, record: &impl Serialize) {
        if !self.watched {
            return;
        }
        let data: Arc<str> = match serde_json::to_string(record) {
            Ok(json) => json.into(),
            Err(_) => return,
        };
        let message = Message { event, data };
        state.history.push(message.clone());
        let _ = self.sender.send(message);
    }

    /// A run begins: the previous run's seconds are forgotten (a sweep's levels are kept).
    pub fn begin_run(&self, start: &RunStart) {
        let mut state = self.state();
        state.history.clear();
        state.round = None;
        if !state.sweep.is_empty() {
            let sweep = state.sweep.clone();
            self.publish(&mut state, "sweep", &sweep);
        }
        self.publish(&mut state, "run", start);
    }

    /// One second of the load.
    pub fn second(&self, second: &Second, snapshots: &[IntervalSnapshot]) {
        if !self.watched {
            return;
        }
        let targets = second.operations.iter().filter_map(|(name, op)| Some((name.clone(), op.target?))).collect();
        let mut state = self.state();
        state.counters.add(snapshots, second.t);
        state.counters.set_targets(&targets);
        self.publish(&mut state, "second", second);
    }

    /// One round of the samplers.
    pub fn round(&self, round: Round) {
        let mut state = self.state();
        self.publish(&mut state, "round", &round);
        state.round = Some(round);
    }

    /// The sweep's levels so far (the last may still be running).
    pub fn sweep(&self, levels: Vec<LevelVerdict>) {
        let mut state = self.state();
        state.sweep = levels;
        let sweep = state.sweep.clone();
        self.publish(&mut state, "sweep", &sweep);
    }

    /// Serves a finished folder under `/results/{n}/`; returns its `n`.
    pub fn serve(&self, folder: std::path::PathBuf) -> usize {
        let mut state = self.state();
        state.served.push(folder);
        state.served.len() - 1
    }

    /// The run (or the sweep) is over.
    pub fn end(&self, end: &RunEnd) {
        let mut state = self.state();
        self.publish(&mut state, "end", end);
    }

    /// True while a sweep publishes its levels (a run's end is then not the last).
    pub fn sweeping(&self) -> bool {
        !self.state().sweep.is_empty()
    }

    /// The latest round of the samplers.
    pub fn latest_round(&self) -> Option<Round> {
        self.state().round.clone()
    }

    /// Everything so far, and the messages to come.
    pub fn subscribe(&self) -> (Vec<Message>, broadcast::Receiver<Message>) {
        let state = self.state();
        (state.history.clone(), self.sender.subscribe())
    }

    /// loadgen's metrics in Prometheus' text format.
    pub fn prometheus_text(&self) -> String {
        self.state().counters.render()
    }

    /// The `index`-th folder served.
    pub fn served_folder(&self, index: usize) -> Option<std::path::PathBuf> {
        self.state().served.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> RunStart {
        RunStart {
            scenario: "s".into(),
            folder: "f".into(),
            duration_s: 10.0,
            targets: BTreeMap::new(),
            thresholds: Vec::new(),
        }
    }

    #[test]
    fn a_round_reads_usage_the_database_pools_and_the_buffer() {
        let rows = [
            Observation::new(3, "event-handler", "cpu_percent", 42.0),
            Observation::new(3, "event-handler", "memory_bytes", 64.0 * 1048576.0),
            Observation::new(3, "event-handler", "db_pool_connections_active", 5.0),
            Observation::new(3, "event-handler", "db_pool_connections_max", 20.0),
            Observation::new(3, "event-handler", "event_buffer_size", 1234.0),
            Observation::new(3, DATABASE, "connections_total", 31.0),
            Observation::new(3, DATABASE, "lock_waits", 2.0),
            Observation::new(3, "challenge-service", "db_pool_connections_active", 7.0),
        ];
        let round = Round::from_observations(3, &rows, None);
        let handler = round.components["event-handler"];
        assert_eq!((handler.cpu_percent, handler.memory_mb), (Some(42.0), Some(64.0)));
        assert_eq!(round.database.pool_busy, BTreeMap::from([("event-handler".to_owned(), 0.25)]), "no max, no share");
        assert_eq!((round.database.connections, round.database.lock_waits), (Some(31.0), Some(2.0)));
        assert_eq!(round.event_buffer["event-handler"], 1234.0);
    }

    #[test]
    fn a_late_subscriber_gets_this_run_so_far_and_the_sweep_then_what_follows() {
        let live = Live::watched();
        live.begin_run(&start());
        live.round(Round::default());
        live.sweep(vec![LevelVerdict { mode: "api".into(), level: "100rps".into(), held: None, broken: None }]);
        live.begin_run(&start()); // the next level: the last run's seconds are gone, the sweep is not
        live.round(Round::default());
        let (history, mut coming) = live.subscribe();
        let events: Vec<&str> = history.iter().map(|m| m.event).collect();
        assert_eq!(events, ["sweep", "run", "round"]);
        assert!(live.sweeping());
        live.end(&RunEnd { passed: true, interrupted: None, folder: "f".into(), reports: Vec::new(), last: true });
        assert_eq!(coming.try_recv().unwrap().event, "end");
        let index = live.serve("/tmp/x".into());
        assert_eq!(live.served_folder(index), Some("/tmp/x".into()));
        assert_eq!(live.served_folder(index + 1), None);
    }

    #[test]
    fn unwatched_it_keeps_the_latest_round_for_the_terminal_and_nothing_else() {
        let live = Live::new();
        live.begin_run(&start());
        live.round(Round { t: 7, ..Round::default() });
        let (history, mut coming) = live.subscribe();
        assert!(history.is_empty() && coming.try_recv().is_err(), "nothing serialised or kept");
        assert_eq!(live.latest_round().map(|r| r.t), Some(7));
    }
}
