//! The harness's own measurements: per operation, HDR histograms (microseconds, 3 significant
//! digits) of the latency from the *intended* start (coordinated-omission corrected) and of the
//! request's own duration, kept apart by k6's tags (stream, status, expected response), for the
//! whole run and for each one-second interval; every arrival that came due, and every one dropped
//! with how late it was then (the `unserved` histogram); errors by kind; calls in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::target::operations::Operation;

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

/// How one request ended, as k6 tags it: its status (HTTP status, gRPC code number, 0 when no
/// response came), whether it failed, and whether its check (status and body shape) passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status or gRPC code (0 for a transport error or a timeout of a REST request).
    pub status: i32,
    /// Why it failed (None: the response was the expected one).
    pub error: Option<ErrorKind>,
    /// Whether the check passed (expected status and a body of the expected shape).
    pub check: bool,
}

impl Outcome {
    /// An expected response whose check passed.
    pub fn ok(status: i32) -> Self {
        Self { status, error: None, check: true }
    }

    /// A failed request (its check fails too).
    pub fn failed(status: i32, error: impl Into<ErrorKind>) -> Self {
        Self { status, error: Some(error.into()), check: false }
    }
}

/// The tags a sample is kept under: its stream (k6's `scenario` tag, by index), status and
/// whether the response was the expected one (k6's `expected_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Index of the stream in the plan.
    pub stream: u16,
    /// HTTP status or gRPC code.
    pub status: i32,
    /// True when the response was the expected one.
    pub expected: bool,
}

/// The requests of one [`SeriesKey`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Latency from the intended start, µs.
    pub latency: Histogram<u64>,
    /// The request's own duration, µs.
    pub service: Histogram<u64>,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed their check.
    pub checks_failed: u64,
}

impl Series {
    fn new() -> Self {
        Self { latency: new_histogram(), service: new_histogram(), requests: 0, checks_failed: 0 }
    }

    fn add(&mut self, other: &Series) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.requests += other.requests;
        self.checks_failed += other.checks_failed;
    }
}

/// The arrivals of one stream for one operation (open model only).
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// Arrivals that came due.
    pub scheduled: u64,
    /// Of which no virtual user started in time.
    pub dropped: u64,
    /// Of the dropped, those that came due while every virtual user of the stream was busy.
    pub dropped_pool_full: u64,
    /// How late each dropped arrival was when it was dropped, µs.
    pub unserved: Histogram<u64>,
}

impl Arrivals {
    fn new() -> Self {
        Self { scheduled: 0, dropped: 0, dropped_pool_full: 0, unserved: new_histogram() }
    }

    fn add(&mut self, other: &Arrivals) {
        self.scheduled += other.scheduled;
        self.dropped += other.dropped;
        self.dropped_pool_full += other.dropped_pool_full;
        let _ = self.unserved.add(&other.unserved);
    }
}

/// What one operation measured over some time (the run, one second, a window): requests by
/// tags, arrivals by stream, failures by kind.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Requests by tags.
    pub series: BTreeMap<SeriesKey, Series>,
    /// Arrivals by stream index.
    pub arrivals: BTreeMap<u16, Arrivals>,
    /// Failures by kind (`HTTP 503`, `gRPC ResourceExhausted`, `timeout`, …).
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
}

impl Measured {
    /// Adds `other` into this.
    pub fn add(&mut self, other: &Measured) {
        for (key, series) in &other.series {
            self.series.entry(*key).or_insert_with(Series::new).add(series);
        }
        for (stream, arrivals) in &other.arrivals {
            self.arrivals.entry(*stream).or_insert_with(Arrivals::new).add(arrivals);
        }
        for (kind, count) in &other.errors_by_kind {
            *self.errors_by_kind.entry(kind.clone()).or_default() += count;
        }
    }

    fn merged<'a>(parts: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
        let mut h = new_histogram();
        for part in parts {
            let _ = h.add(part);
        }
        h
    }

    /// Completed requests.
    pub fn requests(&self) -> u64 {
        self.series.values().map(|s| s.requests).sum()
    }

    /// Failed requests.
    pub fn errors(&self) -> u64 {
        self.series.iter().filter(|(k, _)| !k.expected).map(|(_, s)| s.requests).sum()
    }

    /// Requests whose check failed.
    pub fn checks_failed(&self) -> u64 {
        self.series.values().map(|s| s.checks_failed).sum()
    }

    /// Latency from the intended start of the expected responses (the default figures).
    pub fn latency(&self) -> Histogram<u64> {
        Self::merged(self.series.iter().filter(|(k, _)| k.expected).map(|(_, s)| &s.latency))
    }

    /// The expected responses' own durations.
    pub fn service(&self) -> Histogram<u64> {
        Self::merged(self.series.iter().filter(|(k, _)| k.expected).map(|(_, s)| &s.service))
    }

    /// Latency from the intended start of the failed requests.
    pub fn failed_latency(&self) -> Histogram<u64> {
        Self::merged(self.series.iter().filter(|(k, _)| !k.expected).map(|(_, s)| &s.latency))
    }

    /// Arrivals that came due (open model).
    pub fn scheduled(&self) -> u64 {
        self.arrivals.values().map(|a| a.scheduled).sum()
    }

    /// Arrivals dropped.
    pub fn dropped(&self) -> u64 {
        self.arrivals.values().map(|a| a.dropped).sum()
    }

    /// Arrivals dropped that came due while every virtual user of their stream was busy.
    pub fn dropped_pool_full(&self) -> u64 {
        self.arrivals.values().map(|a| a.dropped_pool_full).sum()
    }

    /// How late the dropped arrivals were when dropped.
    pub fn unserved(&self) -> Histogram<u64> {
        Self::merged(self.arrivals.values().map(|a| &a.unserved))
    }

    /// Every arrival: the latency of each one served (failed or not) and the lateness of each one
    /// dropped.
    pub fn all_arrivals(&self) -> Histogram<u64> {
        Self::merged(self.series.values().map(|s| &s.latency).chain(self.arrivals.values().map(|a| &a.unserved)))
    }

    /// True when nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.arrivals.is_empty()
    }
}

/// One thread's share of the recorder: what it recorded this interval, and the calls it started
/// and ended (their sum over shards is the calls in flight). Aligned so two shards never share a
/// cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    interval: Mutex<[Measured; Operation::ALL.len()]>,
    in_flight: [AtomicI64; Operation::ALL.len()],
}

impl Shard {
    fn new() -> Self {
        Self { interval: Mutex::new(Default::default()), in_flight: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Measured; Operation::ALL.len()]> {
        self.interval.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shards per recorder: threads beyond this share one (correct, just contended).
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number, the same in every recorder.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// One operation's interval, taken every second.
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    /// The operation.
    pub operation: Operation,
    /// What it measured within the interval.
    pub measured: Measured,
    /// Calls in flight at the end of the interval.
    pub in_flight: i64,
}

impl std::ops::Deref for IntervalSnapshot {
    type Target = Measured;
    fn deref(&self) -> &Measured {
        &self.measured
    }
}

/// One operation's totals.
#[derive(Debug, Clone)]
pub struct OperationTotals {
    /// The operation.
    pub operation: Operation,
    /// What it measured over the run.
    pub measured: Measured,
}

impl std::ops::Deref for OperationTotals {
    type Target = Measured;
    fn deref(&self) -> &Measured {
        &self.measured
    }
}

/// Shared by every virtual user and the per-second sampler. Each thread records into its own
/// shard (a lock no other thread takes, except the sampler once a second), so recording costs
/// no contention; [`take_intervals`](Self::take_intervals) folds the shards into the interval
/// and the interval into the run's totals.
#[derive(Debug)]
pub struct Recorder {
    shards: Box<[Shard]>,
    totals: Mutex<[Measured; Operation::ALL.len()]>,
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
        Self { shards: (0..SHARDS).map(|_| Shard::new()).collect(), totals: Mutex::new(Default::default()) }
    }

    fn shard(&self) -> &Shard {
        &self.shards[SHARD.with(|s| *s)]
    }

    fn totals_lock(&self) -> std::sync::MutexGuard<'_, [Measured; Operation::ALL.len()]> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a call as started; the guard marks it ended.
    pub fn start(&self, operation: Operation) -> InFlight<'_> {
        let counter = &self.shard().in_flight[operation.index()];
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }

    /// Records a finished request of `stream`: intended start, actual send, completion, outcome.
    pub fn record(
        &self,
        operation: Operation,
        stream: u16,
        intended: Instant,
        sent: Instant,
        done: Instant,
        outcome: Outcome,
    ) {
        let latency = micros(done.saturating_duration_since(intended));
        let service = micros(done.saturating_duration_since(sent));
        let key = SeriesKey { stream, status: outcome.status, expected: outcome.error.is_none() };
        let mut shard = self.shard().lock();
        let measured = &mut shard[operation.index()];
        let series = measured.series.entry(key).or_insert_with(Series::new);
        series.latency.saturating_record(latency);
        series.service.saturating_record(service);
        series.requests += 1;
        series.checks_failed += u64::from(!outcome.check);
        if let Some(kind) = outcome.error {
            *measured.errors_by_kind.entry(kind).or_default() += 1;
        }
    }

    /// Records `count` arrivals of `stream` coming due (open model).
    pub fn record_scheduled(&self, operation: Operation, stream: u16, count: u64) {
        let mut shard = self.shard().lock();
        shard[operation.index()].arrivals.entry(stream).or_insert_with(Arrivals::new).scheduled += count;
    }

    /// Records an arrival that no virtual user started in time, `lateness` after it was due;
    /// `pool_full` when every user of its stream was busy as it came due.
    pub fn record_dropped(&self, operation: Operation, stream: u16, lateness: Duration, pool_full: bool) {
        let mut shard = self.shard().lock();
        let arrivals = shard[operation.index()].arrivals.entry(stream).or_insert_with(Arrivals::new);
        arrivals.dropped += 1;
        arrivals.dropped_pool_full += u64::from(pool_full);
        arrivals.unserved.saturating_record(micros(lateness));
    }

    /// Takes and resets every operation's interval (every thread's share of it), and adds it to
    /// the totals.
    pub fn take_intervals(&self) -> Vec<IntervalSnapshot> {
        let mut totals = self.totals_lock();
        let mut intervals: [Measured; Operation::ALL.len()] = Default::default();
        for shard in &self.shards {
            let taken = std::mem::take(&mut *shard.lock());
            for (interval, part) in intervals.iter_mut().zip(&taken) {
                if !part.is_empty() {
                    interval.add(part);
                }
            }
        }
        Operation::ALL
            .iter()
            .zip(intervals)
            .map(|(&operation, measured)| {
                totals[operation.index()].add(&measured);
                let in_flight =
                    self.shards.iter().map(|s| s.in_flight[operation.index()].load(Ordering::Relaxed)).sum();
                IntervalSnapshot { operation, measured, in_flight }
            })
            .collect()
    }

    /// Adds what another process measured over one interval (a distributed run's worker) to
    /// this interval (and so, once taken, to the totals); the calls in flight move by
    /// `in_flight_change`.
    pub fn absorb(&self, snapshot: &IntervalSnapshot, in_flight_change: i64) {
        let shard = self.shard();
        let index = snapshot.operation.index();
        shard.lock()[index].add(&snapshot.measured);
        shard.in_flight[index].fetch_add(in_flight_change, Ordering::Relaxed);
    }

    /// Every operation's totals so far (the intervals not yet taken included).
    pub fn totals(&self) -> Vec<OperationTotals> {
        let totals = self.totals_lock();
        let mut all = totals.clone();
        for shard in &self.shards {
            for (total, part) in all.iter_mut().zip(shard.lock().iter()) {
                if !part.is_empty() {
                    total.add(part);
                }
            }
        }
        Operation::ALL.iter().zip(all).map(|(&operation, measured)| OperationTotals { operation, measured }).collect()
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
        recorder.record(Operation::Stat, 0, intended, sent, done, Outcome::ok(0));
        recorder.record(
            Operation::Stat,
            0,
            intended,
            intended,
            intended + Duration::from_millis(2),
            Outcome::failed(503, "HTTP 503"),
        );
        recorder.record_scheduled(Operation::Stat, 0, 1);
        recorder.record_dropped(Operation::Stat, 0, Duration::from_millis(300), true);
        let totals = &recorder.totals()[Operation::Stat.index()];
        assert_eq!(totals.requests(), 2);
        assert_eq!(totals.errors(), 1);
        assert_eq!(totals.checks_failed(), 1);
        assert_eq!((totals.scheduled(), totals.dropped(), totals.dropped_pool_full()), (1, 1, 1));
        assert_eq!(totals.errors_by_kind["HTTP 503"], 1);
        let max_latency = totals.latency().max() as f64;
        let max_service = totals.service().max() as f64;
        assert!((max_latency - 1_000_000.0).abs() / 1e6 < 0.001, "{max_latency}");
        assert!((max_service - 100_000.0).abs() / 1e5 < 0.001, "{max_service}");
        assert_eq!(totals.latency().len(), 1, "the failed request is kept out of the default figures");
        assert_eq!(totals.failed_latency().len(), 1);
        assert_eq!(totals.all_arrivals().len(), 3, "served, failed and dropped arrivals");
        let unserved = totals.unserved().max() as f64;
        assert!((unserved - 300_000.0).abs() / 3e5 < 0.001, "{unserved}");
        let interval = &recorder.take_intervals()[Operation::Stat.index()];
        assert_eq!((interval.requests(), interval.errors(), interval.dropped()), (2, 1, 1));
        let again = &recorder.take_intervals()[Operation::Stat.index()];
        assert!(again.is_empty(), "intervals reset");
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
