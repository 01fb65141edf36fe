//! `summary.json`: per operation, target and achieved rates, counts, and corrected and service
//! time percentiles; the thresholds' outcomes. Built from the recorder's totals and the plan, and
//! the source thresholds are evaluated against.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::StreamPlan;
use crate::observe::digest::{Database, Resources, SeriesStats};
use crate::recorder::{Operation, OperationTotals, new_histogram};
use crate::scenario::OperationKind;
use crate::threshold::{Aggregation, Metric, MetricBase, MetricSource, ThresholdResult};

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

/// One operation's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Planned arrivals per second (open model), or None (closed model, or follow-up requests).
    pub target_rate: Option<f64>,
    /// Completed requests per second of load.
    pub achieved_rate: f64,
    /// Completed requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Arrivals dropped for lack of a free virtual user.
    pub dropped: u64,
    /// `dropped / (requests + dropped)`.
    pub dropped_rate: f64,
    /// Failures by kind (`HTTP 503`, `gRPC ResourceExhausted`, `timeout`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency from the intended start (coordinated omission corrected), ms.
    pub latency_ms: Percentiles,
    /// Service time from the actual send, ms.
    pub service_time_ms: Percentiles,
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
    /// Per operation, by name; operations the run did not use are left out.
    pub operations: BTreeMap<String, OperationSummary>,
    /// Threshold outcomes.
    pub thresholds: Vec<ThresholdResult>,
    /// True when every threshold passed and the run was not interrupted.
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
}

/// Planned rate per operation: each open stream's average rate split by its operation weights.
pub fn target_rates(streams: &[StreamPlan]) -> BTreeMap<Operation, f64> {
    let mut targets = BTreeMap::new();
    for stream in streams {
        let Some(curve) = stream.executor.rate_curve() else { continue };
        let seconds = stream.executor.duration().as_secs_f64();
        if seconds <= 0.0 {
            continue;
        }
        let rate = curve.total_arrivals() as f64 / seconds;
        let total: u32 = stream.operations.values().sum();
        for (kind, weight) in &stream.operations {
            let share = rate * f64::from(*weight) / f64::from(total.max(1));
            let op = match kind {
                OperationKind::GetChallenges | OperationKind::GetThenClaim => Operation::GetChallenges,
                OperationKind::Login => Operation::Login,
                OperationKind::Stat => Operation::Stat,
                OperationKind::EndToEnd => Operation::EndToEnd,
            };
            *targets.entry(op).or_default() += share;
        }
    }
    targets
}

/// Operations a plan exercises.
pub fn used_operations(streams: &[StreamPlan]) -> Vec<Operation> {
    let mut ops: Vec<Operation> = streams
        .iter()
        .flat_map(|s| s.operations.keys())
        .flat_map(|kind| match kind {
            OperationKind::GetChallenges => vec![Operation::GetChallenges],
            OperationKind::GetThenClaim => vec![Operation::GetChallenges, Operation::Claim],
            OperationKind::Login => vec![Operation::Login],
            OperationKind::Stat => vec![Operation::Stat],
            OperationKind::EndToEnd => vec![Operation::EndToEnd],
        })
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// Builds the per-operation summaries.
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
            let summary = OperationSummary {
                target_rate: targets.get(&t.operation).copied(),
                achieved_rate: t.requests as f64 / seconds,
                requests: t.requests,
                errors: t.errors,
                error_rate: ratio(t.errors, t.requests),
                dropped: t.dropped,
                dropped_rate: ratio(t.dropped, t.requests + t.dropped),
                errors_by_kind: t.errors_by_kind.clone(),
                latency_ms: Percentiles::of(&t.latency),
                service_time_ms: Percentiles::of(&t.service),
            };
            (t.operation.name().to_owned(), summary)
        })
        .collect()
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Thresholds read the recorder's totals (and, for resource metrics, the extras given).
#[derive(Debug)]
pub struct TotalsSource<'a> {
    /// The recorder's totals.
    pub totals: &'a [OperationTotals],
    /// Other observed values by metric base (e.g. `db_pool_busy` → max).
    pub extras: BTreeMap<&'static str, f64>,
}

impl TotalsSource<'_> {
    fn selected(&self, metric: &Metric, accept: impl Fn(Operation) -> bool) -> Vec<&OperationTotals> {
        self.totals
            .iter()
            .filter(|t| accept(t.operation))
            .filter(|t| metric.operation.as_deref().is_none_or(|name| name == t.operation.name()))
            .collect()
    }
}

fn merged(parts: &[&OperationTotals], service: bool) -> Histogram<u64> {
    let mut h = new_histogram();
    for part in parts {
        let _ = h.add(if service { &part.service } else { &part.latency });
    }
    h
}

fn histogram_value(h: &Histogram<u64>, aggregation: Aggregation) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Some(match aggregation {
        Aggregation::Percentile(p) => ms(h.value_at_quantile(p / 100.0)),
        Aggregation::Avg => h.mean() / 1000.0,
        Aggregation::Min => ms(h.min()),
        Aggregation::Max => ms(h.max()),
        Aggregation::Med => ms(h.value_at_quantile(0.5)),
        Aggregation::Count => h.len() as f64,
        Aggregation::Rate => return None,
    })
}

impl MetricSource for TotalsSource<'_> {
    fn observe(&self, metric: &Metric, aggregation: Aggregation) -> Option<f64> {
        let any = |_: Operation| true;
        match metric.base {
            MetricBase::HttpReqDuration => {
                histogram_value(&merged(&self.selected(metric, Operation::is_rest), false), aggregation)
            }
            MetricBase::GrpcReqDuration => {
                histogram_value(&merged(&self.selected(metric, Operation::is_grpc), false), aggregation)
            }
            MetricBase::Latency => histogram_value(&merged(&self.selected(metric, any), false), aggregation),
            MetricBase::ServiceTime => histogram_value(&merged(&self.selected(metric, any), true), aggregation),
            MetricBase::E2eLatency => {
                histogram_value(&merged(&self.selected(metric, |o| o == Operation::EndToEnd), false), aggregation)
            }
            MetricBase::HttpReqFailed | MetricBase::GrpcReqFailed => {
                let accept =
                    if metric.base == MetricBase::HttpReqFailed { Operation::is_rest } else { Operation::is_grpc };
                let parts = self.selected(metric, accept);
                let requests: u64 = parts.iter().map(|t| t.requests).sum();
                let errors: u64 = parts.iter().map(|t| t.errors).sum();
                match aggregation {
                    Aggregation::Rate if requests > 0 => Some(errors as f64 / requests as f64),
                    Aggregation::Count => Some(errors as f64),
                    _ => None,
                }
            }
            MetricBase::DroppedIterations => {
                let parts = self.selected(metric, any);
                let arrivals: u64 = parts.iter().map(|t| t.requests + t.dropped).sum();
                let dropped: u64 = parts.iter().map(|t| t.dropped).sum();
                match aggregation {
                    Aggregation::Rate if arrivals > 0 => Some(dropped as f64 / arrivals as f64),
                    Aggregation::Count => Some(dropped as f64),
                    _ => None,
                }
            }
            MetricBase::DbPoolBusy => self.extras.get("db_pool_busy").copied(),
            MetricBase::LoadgenCpu => self.extras.get("loadgen_cpu").copied(),
        }
    }
}
