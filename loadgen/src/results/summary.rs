//! `summary.json`: per operation, target and achieved rates, every scheduled arrival accounted
//! for (requests + dropped), corrected and service-time percentiles of the expected responses,
//! of the failed ones, of the dropped arrivals' lateness and of all arrivals; the thresholds'
//! outcomes. Built from the recorder's totals and the plan.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::definition::plan::StreamPlan;
use crate::engine::recorder::OperationTotals;
use crate::observe::digest::{Database, Resources, SeriesStats};
use crate::target::operations::Operation;

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One operation's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Planned arrivals per second (open model), or None (closed model, or follow-up requests).
    pub target_rate: Option<f64>,
    /// Completed requests per second of load scheduled.
    pub achieved_rate: f64,
    /// Arrivals that came due (open model): each one is a request or a dropped arrival.
    #[serde(default)]
    pub scheduled: Option<u64>,
    /// Completed requests.
    pub requests: u64,
    /// Of them, made as steps of another operation's arrivals (a session's login, stats, read
    /// and claim) in a stream that schedules none of this operation: not arrivals of their own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub follow_ups: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Requests whose check (expected status, body shape) failed.
    #[serde(default)]
    pub checks_failed: u64,
    /// Arrivals dropped: no virtual user started them within `max_lateness`.
    pub dropped: u64,
    /// `dropped / scheduled`.
    #[serde(alias = "dropped_rate")]
    pub dropped_ratio: f64,
    /// Of the dropped, those that came due while every virtual user of their stream was busy
    /// (the pool was exhausted; the others found a free user the generator was too slow to run).
    #[serde(default)]
    pub dropped_pool_full: u64,
    /// Failures by kind (`HTTP 503`, `gRPC ResourceExhausted`, `timeout`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency from the intended start (coordinated omission corrected) of the expected
    /// responses, ms.
    pub latency_ms: Percentiles,
    /// The expected responses' own durations, from the send, ms.
    pub service_time_ms: Percentiles,
    /// Latency of the failed requests, ms (when there were any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_latency_ms: Option<Percentiles>,
    /// How late the dropped arrivals were when dropped, ms (when there were any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unserved_ms: Option<Percentiles>,
    /// Every arrival: latency of each one served (failed or not), lateness of each one dropped,
    /// ms (open model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_arrivals_ms: Option<Percentiles>,
}

impl OperationSummary {
    /// `requests + dropped` when it differs from `scheduled` (an arrival unaccounted for).
    pub fn accounting_gap(&self) -> Option<i64> {
        let scheduled = self.scheduled?;
        let gap = scheduled as i64 - (self.requests - self.follow_ups.min(self.requests) + self.dropped) as i64;
        (gap != 0).then_some(gap)
    }
}

/// The whole run's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seconds of load measured (shorter than planned when interrupted).
    pub duration_s: f64,
    /// Seconds of load planned.
    pub planned_duration_s: f64,
    /// Why the run ended early, if it did.
    pub interrupted: Option<String>,
    /// The threshold that stopped the run (`abortOnFail`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// Per operation, by name; operations the run did not use are left out.
    pub operations: BTreeMap<String, OperationSummary>,
    /// Threshold outcomes.
    pub thresholds: Vec<ThresholdResult>,
    /// True when every threshold passed and the run was neither interrupted nor aborted.
    pub passed: bool,
    /// What the reader must not miss (a saturated generator or machine).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// CPU and memory per component (SUT services, PostgreSQL, loadgen, the machine).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// The database's view of the run.
    #[serde(default)]
    pub database: Option<Database>,
    /// Each service's scraped metrics over the run (mean, max, last).
    #[serde(default)]
    pub services: BTreeMap<String, BTreeMap<String, SeriesStats>>,
    /// CPU profiles written (`profiles/<service>.svg`), and notes on those that failed.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The SUT's books against what the harness sent (when the run audited them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<crate::integrity::Integrity>,
    /// Each injected fault: when, how the SUT answered meanwhile, how long it took to recover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::faults::FaultVerdict>,
    /// How fast each service's resources grew over the steady part (after the warm-up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trends: Vec<crate::observe::trend::Trend>,
    /// The services' heaps over the profiling window (scenario 4): sampled bytes in use at its
    /// start and end, and the allocation sites holding and growing the most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heap: Vec<crate::observe::heap::HeapSummary>,
}

/// Planned rate per operation: each open stream's average rate split by its operation weights.
pub fn target_rates(streams: &[StreamPlan]) -> BTreeMap<Operation, f64> {
    let mut targets = BTreeMap::new();
    for stream in streams {
        let Some(curve) = stream.executor.rate_curve().map(|c| c.striped(stream.segment)) else { continue };
        let seconds = stream.executor.duration().as_secs_f64();
        if seconds <= 0.0 {
            continue;
        }
        let rate = curve.total_arrivals() as f64 / seconds;
        let total: u32 = stream.operations.values().sum();
        for (kind, weight) in &stream.operations {
            let share = rate * f64::from(*weight) / f64::from(total.max(1));
            *targets.entry(kind.counted_as()).or_default() += share;
        }
    }
    targets
}

/// Operations a plan exercises.
pub fn used_operations(streams: &[StreamPlan]) -> Vec<Operation> {
    let mut ops: Vec<Operation> =
        streams.iter().flat_map(|s| s.operations.keys()).flat_map(|kind| kind.records().iter().copied()).collect();
    ops.sort();
    ops.dedup();
    ops
}

/// Builds the per-operation summaries; rates divide by the seconds of load scheduled.
pub fn operations(
    totals: &[OperationTotals],
    used: &[Operation],
    targets: &BTreeMap<Operation, f64>,
    elapsed: Duration,
) -> BTreeMap<String, OperationSummary> {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    totals
        .iter()
        .filter(|t| used.contains(&t.operation))
        .map(|t| {
            let (requests, errors, dropped, scheduled) = (t.requests(), t.errors(), t.dropped(), t.scheduled());
            let open = !t.arrivals.is_empty();
            let follow_ups: u64 = if open {
                t.series.iter().filter(|(key, _)| !t.arrivals.contains_key(&key.stream)).map(|(_, s)| s.requests).sum()
            } else {
                0
            };
            let summary = OperationSummary {
                target_rate: targets.get(&t.operation).copied(),
                achieved_rate: requests as f64 / seconds,
                scheduled: open.then_some(scheduled),
                requests,
                follow_ups,
                errors,
                error_rate: ratio(errors, requests),
                checks_failed: t.checks_failed(),
                dropped,
                dropped_ratio: ratio(dropped, scheduled),
                dropped_pool_full: t.dropped_pool_full(),
                errors_by_kind: t.errors_by_kind.clone(),
                latency_ms: Percentiles::of(&t.latency()),
                service_time_ms: Percentiles::of(&t.service()),
                failed_latency_ms: (errors > 0).then(|| Percentiles::of(&t.failed_latency())),
                unserved_ms: (dropped > 0).then(|| Percentiles::of(&t.unserved())),
                all_arrivals_ms: open.then(|| Percentiles::of(&t.all_arrivals())),
            };
            (t.operation.name().to_owned(), summary)
        })
        .collect()
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// What the reader must not miss about the load itself: an arrival unaccounted for, and a
/// generator pool that ran out of virtual users.
pub fn load_warnings(operations: &BTreeMap<String, OperationSummary>, streams: &[StreamPlan]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, op) in operations {
        if let Some(gap) = op.accounting_gap() {
            warnings.push(format!(
                "ARRIVALS UNACCOUNTED FOR: {name}: {} scheduled but {} requests + {} dropped ({gap:+})",
                op.scheduled.unwrap_or_default(),
                op.requests,
                op.dropped
            ));
        }
        if op.dropped_pool_full > 0 {
            let pools: Vec<String> = streams
                .iter()
                .filter(|s| s.executor.is_open())
                .map(|s| format!("{} {}", s.name, s.executor.pool_size()))
                .collect();
            warnings.push(format!(
                "GENERATOR POOL EXHAUSTED: {name}: {} of {} dropped arrivals came due with every virtual user \
                 busy (pools: {}; p95 {:.0} ms). If the target kept its latency limit, these drops measure the \
                 pool, not the target: raise max_vus or give max_vus: auto",
                op.dropped_pool_full,
                op.dropped,
                pools.join(", "),
                op.latency_ms.p95
            ));
        }
    }
    warnings
}

/// The outcome of one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The metric as written.
    pub metric: String,
    /// The expression as written.
    pub expression: String,
    /// What was observed: over the run, or for a windowed expression the worst window (None: the
    /// run has no data for it, which fails the threshold).
    pub value: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
    /// True when this threshold stopped the run (`abortOnFail`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}
