//! The harness's own measurements: per operation, HDR histograms (microseconds, 3 significant
//! digits) of the latency from the *intended* start (coordinated-omission corrected) and of the
//! service time from the actual send, for the whole run and for each one-second interval;
//! request, error (by kind) and dropped-arrival counts; calls in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The operations Gauntlet measures, with the names used in results and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// `GET /v1/challenges`
    GetChallenges,
    /// `POST .../claim`
    Claim,
    /// `OnMessage(UserLoggedIn)`
    Login,
    /// `OnMessage(StatItemUpdated)`
    Stat,
    /// From a stat event's send to its effect in the API.
    EndToEnd,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 5] =
        [Operation::GetChallenges, Operation::Claim, Operation::Login, Operation::Stat, Operation::EndToEnd];

    /// The name in results, reports and threshold filters.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetChallenges => "GET /v1/challenges",
            Operation::Claim => "POST claim",
            Operation::Login => "OnMessage login",
            Operation::Stat => "OnMessage stat",
            Operation::EndToEnd => "E2E stat to API",
        }
    }

    /// A file-name-safe form of the name.
    pub fn slug(self) -> &'static str {
        match self {
            Operation::GetChallenges => "get-challenges",
            Operation::Claim => "post-claim",
            Operation::Login => "onmessage-login",
            Operation::Stat => "onmessage-stat",
            Operation::EndToEnd => "e2e",
        }
    }

    /// True for REST operations.
    pub fn is_rest(self) -> bool {
        matches!(self, Operation::GetChallenges | Operation::Claim)
    }

    /// True for gRPC operations.
    pub fn is_grpc(self) -> bool {
        matches!(self, Operation::Login | Operation::Stat)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The highest latency the histograms hold (1 hour, in µs); larger values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

/// What went wrong with one request, for counting errors by kind.
pub type ErrorKind = String;

#[derive(Debug)]
struct OpState {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    interval_latency: Histogram<u64>,
    interval_service: Histogram<u64>,
    requests: u64,
    errors: u64,
    dropped: u64,
    errors_by_kind: BTreeMap<ErrorKind, u64>,
    interval_requests: u64,
    interval_errors: u64,
    interval_dropped: u64,
}

impl OpState {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            interval_latency: new_histogram(),
            interval_service: new_histogram(),
            requests: 0,
            errors: 0,
            dropped: 0,
            errors_by_kind: BTreeMap::new(),
            interval_requests: 0,
            interval_errors: 0,
            interval_dropped: 0,
        }
    }
}

#[derive(Debug)]
struct OpRecorder {
    state: Mutex<OpState>,
    in_flight: AtomicI64,
}

/// One operation's interval, taken every second.
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    /// The operation.
    pub operation: Operation,
    /// Corrected latency within the interval.
    pub latency: Histogram<u64>,
    /// Service time within the interval.
    pub service: Histogram<u64>,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Arrivals dropped.
    pub dropped: u64,
    /// Calls in flight at the end of the interval.
    pub in_flight: i64,
}

/// One operation's totals.
#[derive(Debug, Clone)]
pub struct OperationTotals {
    /// The operation.
    pub operation: Operation,
    /// Corrected latency over the run.
    pub latency: Histogram<u64>,
    /// Service time over the run.
    pub service: Histogram<u64>,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Arrivals dropped.
    pub dropped: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
}

/// Shared by every virtual user and the per-second sampler.
#[derive(Debug)]
pub struct Recorder {
    ops: Vec<OpRecorder>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the in-flight count when the call ends, however it ends.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        let ops = Operation::ALL
            .iter()
            .map(|_| OpRecorder { state: Mutex::new(OpState::new()), in_flight: AtomicI64::new(0) })
            .collect();
        Self { ops }
    }

    fn op(&self, operation: Operation) -> &OpRecorder {
        &self.ops[operation.index()]
    }

    fn lock(&self, operation: Operation) -> std::sync::MutexGuard<'_, OpState> {
        self.op(operation).state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a call as started; the guard marks it ended.
    pub fn start(&self, operation: Operation) -> InFlight<'_> {
        let counter = &self.op(operation).in_flight;
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    /// Records a finished request: intended start, actual send, completion.
    pub fn record(
        &self,
        operation: Operation,
        intended: Instant,
        sent: Instant,
        done: Instant,
        error: Option<ErrorKind>,
    ) {
        let latency = micros(done.saturating_duration_since(intended));
        let service = micros(done.saturating_duration_since(sent));
        let mut s = self.lock(operation);
        s.latency.saturating_record(latency);
        s.service.saturating_record(service);
        s.interval_latency.saturating_record(latency);
        s.interval_service.saturating_record(service);
        s.requests += 1;
        s.interval_requests += 1;
        if let Some(kind) = error {
            s.errors += 1;
            s.interval_errors += 1;
            *s.errors_by_kind.entry(kind).or_default() += 1;
        }
    }

    /// Records an arrival that found no free virtual user in time.
    pub fn record_dropped(&self, operation: Operation) {
        let mut s = self.lock(operation);
        s.dropped += 1;
        s.interval_dropped += 1;
    }

    /// Takes and resets every operation's interval.
    pub fn take_intervals(&self) -> Vec<IntervalSnapshot> {
        Operation::ALL
            .iter()
            .map(|&operation| {
                let in_flight = self.op(operation).in_flight.load(Ordering::Relaxed);
                let mut s = self.lock(operation);
                IntervalSnapshot {
                    operation,
                    latency: std::mem::replace(&mut s.interval_latency, new_histogram()),
                    service: std::mem::replace(&mut s.interval_service, new_histogram()),
                    requests: std::mem::take(&mut s.interval_requests),
                    errors: std::mem::take(&mut s.interval_errors),
                    dropped: std::mem::take(&mut s.interval_dropped),
                    in_flight,
                }
            })
            .collect()
    }

    /// Every operation's totals so far.
    pub fn totals(&self) -> Vec<OperationTotals> {
        Operation::ALL
            .iter()
            .map(|&operation| {
                let s = self.lock(operation);
                OperationTotals {
                    operation,
                    latency: s.latency.clone(),
                    service: s.service.clone(),
                    requests: s.requests,
                    errors: s.errors,
                    dropped: s.dropped,
                    errors_by_kind: s.errors_by_kind.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_from_the_intended_start_and_service_time_from_the_send() {
        let recorder = Recorder::new();
        let intended = Instant::now();
        let sent = intended + Duration::from_millis(900);
        let done = sent + Duration::from_millis(100);
        recorder.record(Operation::Stat, intended, sent, done, None);
        recorder.record(
            Operation::Stat,
            intended,
            intended,
            intended + Duration::from_millis(2),
            Some("HTTP 503".into()),
        );
        recorder.record_dropped(Operation::Stat);
        let totals = &recorder.totals()[Operation::Stat.index()];
        assert_eq!(totals.requests, 2);
        assert_eq!(totals.errors, 1);
        assert_eq!(totals.dropped, 1);
        assert_eq!(totals.errors_by_kind["HTTP 503"], 1);
        let max_latency = totals.latency.max() as f64;
        let max_service = totals.service.max() as f64;
        assert!((max_latency - 1_000_000.0).abs() / 1e6 < 0.001, "{max_latency}");
        assert!((max_service - 100_000.0).abs() / 1e5 < 0.001, "{max_service}");
        let interval = &recorder.take_intervals()[Operation::Stat.index()];
        assert_eq!((interval.requests, interval.errors, interval.dropped), (2, 1, 1));
        let again = &recorder.take_intervals()[Operation::Stat.index()];
        assert_eq!((again.requests, again.latency.len()), (0, 0), "intervals reset");
    }

    #[test]
    fn in_flight_guards_count_down_when_dropped() {
        let recorder = Recorder::new();
        let a = recorder.start(Operation::Login);
        let b = recorder.start(Operation::Login);
        assert_eq!(recorder.take_intervals()[Operation::Login.index()].in_flight, 2);
        drop((a, b));
        assert_eq!(recorder.take_intervals()[Operation::Login.index()].in_flight, 0);
    }
}
