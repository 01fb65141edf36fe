//! The observed value of a metric over measured data: the whole run's totals, or the seconds
//! of one window. Tag filters select the series (stream, status, expected response) and
//! operations a metric reads.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::definition::threshold::{Aggregation, Growth, Metric, MetricBase, TagFilter};
use crate::engine::recorder::{Measured, Series, SeriesKey, new_histogram};
use crate::observe::trend::{DATABASE, Trend};
use crate::target::PLATFORM_STAND_INS;
use crate::target::operations::Operation;

/// Where thresholds read their observed values from.
pub trait MetricSource {
    /// The observed value of `aggregation` over `metric`, if there is one.
    fn observe(&self, metric: &Metric, aggregation: Aggregation) -> Option<f64>;
}

/// What thresholds read: per operation what was measured, the stream names (by index), the
/// seconds of load scheduled (what per-second rates divide by), and other observed values.
#[derive(Debug)]
pub struct Measurements<'a> {
    /// Per operation.
    pub operations: Vec<(Operation, &'a Measured)>,
    /// Stream names, by index.
    pub streams: &'a [String],
    /// Seconds of load the data covers.
    pub seconds: f64,
    /// Other observed values by metric name (`db_pool_busy` → max, `loadgen_cpu` → max).
    pub extras: BTreeMap<&'static str, f64>,
    /// Resources' growth over the steady part (`leak`).
    pub trends: &'a [Trend],
}

impl Measurements<'_> {
    fn operations_of(&self, metric: &Metric) -> impl Iterator<Item = (Operation, &Measured)> {
        let protocol: fn(Operation) -> bool = match metric.base {
            MetricBase::HttpReqDuration | MetricBase::HttpReqFailed | MetricBase::HttpReqs => Operation::is_rest,
            MetricBase::GrpcReqDuration | MetricBase::GrpcReqFailed | MetricBase::GrpcReqs => Operation::is_grpc,
            MetricBase::E2eLatency => |op| op == Operation::EndToEnd,
            MetricBase::Iterations | MetricBase::DroppedIterations | MetricBase::DroppedRatio => {
                |op| op != Operation::Claim
            }
            _ => |_| true,
        };
        let tags = &metric.tags;
        self.operations.iter().map(|(op, m)| (*op, *m)).filter(move |(op, _)| {
            protocol(*op)
                && tags.iter().all(|t| match t {
                    TagFilter::Operation(wanted) => op == wanted,
                    TagFilter::Name(name) => op.name_tag() == name,
                    _ => true,
                })
        })
    }

    fn stream_matches(&self, metric: &Metric, stream: u16) -> bool {
        metric.scenario().is_none_or(|name| self.streams.get(usize::from(stream)).is_some_and(|s| s == name))
    }

    fn series<'s>(&'s self, metric: &'s Metric) -> impl Iterator<Item = &'s Series> {
        self.operations_of(metric).flat_map(move |(_, m)| {
            m.series.iter().filter(move |(key, _)| self.key_matches(metric, key)).map(|(_, s)| s)
        })
    }

    fn key_matches(&self, metric: &Metric, key: &SeriesKey) -> bool {
        self.stream_matches(metric, key.stream)
            && metric.tags.iter().all(|t| match t {
                TagFilter::Status(status) => key.status == *status,
                TagFilter::ExpectedResponse(expected) => key.expected == *expected,
                _ => true,
            })
    }

    /// The low end of the growth interval of the trends `metric` selects (without filters, the
    /// memory of every service under test: not PostgreSQL's, not the platform's stand-ins'),
    /// the highest of them.
    fn leak(&self, metric: &Metric) -> Option<f64> {
        let (series, components) = (metric.series().unwrap_or(Growth::Memory), metric.components());
        self.trends
            .iter()
            .filter(|t| t.series == series)
            .filter(|t| match components.as_slice() {
                [] => t.component != DATABASE && !PLATFORM_STAND_INS.contains(&t.component.as_str()),
                named => named.contains(&t.component.as_str()),
            })
            .map(|t| t.per_hour_low)
            .reduce(f64::max)
    }

    fn per_second(&self, count: u64) -> Option<f64> {
        (self.seconds > 0.0).then(|| count as f64 / self.seconds)
    }
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
        Aggregation::Rate | Aggregation::Value | Aggregation::Slope => return None,
    })
}

/// `part / whole` as a rate, or the count of `part`.
fn share(part: u64, whole: u64, aggregation: Aggregation) -> Option<f64> {
    match aggregation {
        Aggregation::Rate if whole > 0 => Some(part as f64 / whole as f64),
        Aggregation::Count => Some(part as f64),
        _ => None,
    }
}

impl MetricSource for Measurements<'_> {
    fn observe(&self, metric: &Metric, aggregation: Aggregation) -> Option<f64> {
        match metric.base {
            MetricBase::Latency | MetricBase::E2eLatency => {
                let mut h = new_histogram();
                for s in self.series(metric) {
                    let _ = h.add(&s.latency);
                }
                histogram_value(&h, aggregation)
            }
            MetricBase::HttpReqDuration | MetricBase::GrpcReqDuration | MetricBase::ServiceTime => {
                let mut h = new_histogram();
                for s in self.series(metric) {
                    let _ = h.add(&s.service);
                }
                histogram_value(&h, aggregation)
            }
            MetricBase::HttpReqFailed | MetricBase::GrpcReqFailed => {
                let (mut requests, mut failed) = (0, 0);
                for (_, m) in self.operations_of(metric) {
                    for (key, s) in m.series.iter().filter(|(key, _)| self.key_matches(metric, key)) {
                        requests += s.requests;
                        failed += if key.expected { 0 } else { s.requests };
                    }
                }
                share(failed, requests, aggregation)
            }
            MetricBase::Checks => {
                let (requests, failed) =
                    self.series(metric).fold((0, 0), |(r, f), s| (r + s.requests, f + s.checks_failed));
                share(requests - failed, requests, aggregation)
            }
            MetricBase::HttpReqs | MetricBase::GrpcReqs | MetricBase::Iterations => {
                let count: u64 = self.series(metric).map(|s| s.requests).sum();
                match aggregation {
                    Aggregation::Count => Some(count as f64),
                    _ => self.per_second(count),
                }
            }
            MetricBase::DroppedIterations | MetricBase::DroppedRatio => {
                let (mut scheduled, mut dropped) = (0, 0);
                for (_, m) in self.operations_of(metric) {
                    for (stream, a) in &m.arrivals {
                        if self.stream_matches(metric, *stream) {
                            scheduled += a.scheduled;
                            dropped += a.dropped;
                        }
                    }
                }
                match (metric.base, aggregation) {
                    (_, Aggregation::Count) => Some(dropped as f64),
                    (MetricBase::DroppedIterations, _) => self.per_second(dropped),
                    // No arrival came due: none was dropped.
                    _ => Some(if scheduled == 0 { 0.0 } else { dropped as f64 / scheduled as f64 }),
                }
            }
            MetricBase::Leak => self.leak(metric),
            MetricBase::DbPoolBusy => self.extras.get("db_pool_busy").copied(),
            MetricBase::LoadgenCpu => self.extras.get("loadgen_cpu").copied(),
            MetricBase::EventsLost
            | MetricBase::EventsDoubleApplied
            | MetricBase::ClaimsDoubleGranted
            | MetricBase::GoalsClaimedWithoutGrant => {
                let name = crate::definition::threshold::METRIC_NAMES.iter().find(|(_, b)| *b == metric.base)?.0;
                let count = *self.extras.get(name)?;
                match aggregation {
                    Aggregation::Count => Some(count),
                    _ => self.per_second(count as u64),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::definition::threshold::ThresholdExpr;
    use crate::engine::recorder::{Outcome, Recorder};

    fn observe(source: &Measurements<'_>, metric: &str, expr: &str) -> Option<f64> {
        let expr = ThresholdExpr::parse(expr).unwrap();
        source.observe(&Metric::parse(metric).unwrap(), expr.aggregation)
    }

    #[test]
    fn leak_reads_the_low_end_of_the_services_under_tests_growth_unless_filtered() {
        let trend = |component: &str, series: Growth, low: f64| Trend {
            component: component.into(),
            series,
            samples: 100,
            from_s: 30,
            to_s: 130,
            start: 0.0,
            per_hour: low + 1.0,
            per_hour_low: low,
            per_hour_high: low + 2.0,
            r_squared: 0.5,
        };
        let trends = [
            trend("challenge-service", Growth::Memory, 5e6),
            trend("event-handler", Growth::Memory, -1e6),
            trend("event-handler", Growth::Heap, 7e6),
            trend("reward-mock", Growth::Memory, 9e7),
            trend("postgres", Growth::Connections, 3.0),
        ];
        let source = Measurements {
            operations: Vec::new(),
            streams: &[],
            seconds: 60.0,
            extras: BTreeMap::new(),
            trends: &trends,
        };
        assert_eq!(observe(&source, "leak", "slope<1MB/h"), Some(5e6), "the services' memory, the mock's left out");
        assert_eq!(observe(&source, "leak{component:reward-mock}", "slope<1MB/h"), Some(9e7), "unless named");
        assert_eq!(observe(&source, "leak{series:heap}", "slope<1MB/h"), Some(7e6));
        assert_eq!(observe(&source, "leak{component:postgres,series:connections}", "slope<1/h"), Some(3.0));
        assert_eq!(observe(&source, "leak{series:tasks}", "slope<1/h"), None, "nothing fitted, nothing observed");
    }

    #[test]
    fn k6_names_read_k6_meanings() {
        let recorder = Recorder::new();
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        // Stream 0 ("api"): 3 GETs queued 100 ms before a 10 ms send, one an instant 503.
        for _ in 0..2 {
            recorder.record(Operation::GetChallenges, 0, t0, t0 + ms(100), t0 + ms(110), Outcome::ok(200));
        }
        recorder.record(Operation::GetChallenges, 0, t0, t0 + ms(100), t0 + ms(101), Outcome::failed(503, "HTTP 503"));
        for _ in 0..4 {
            recorder.record_scheduled(Operation::GetChallenges, 0, 1);
        }
        recorder.record_dropped(Operation::GetChallenges, 0, ms(60), true);
        // Stream 1 ("events"): one stat call.
        recorder.record(Operation::Stat, 1, t0, t0, t0 + ms(2), Outcome::ok(0));
        recorder.record_scheduled(Operation::Stat, 1, 1);
        let totals = recorder.totals();
        let streams = ["api".to_owned(), "events".to_owned()];
        let source = Measurements {
            operations: totals.iter().map(|t| (t.operation, &t.measured)).collect(),
            streams: &streams,
            seconds: 2.0,
            extras: BTreeMap::new(),
            trends: &[],
        };
        // HDR values are within 0.1% (3 significant digits).
        let rounded = |v: Option<f64>| v.map(f64::round);
        assert_eq!(rounded(observe(&source, "http_req_duration", "max<1")), Some(10.0), "the request's own time");
        let corrected = observe(&source, "latency{scenario:api}", "max<1");
        assert_eq!(rounded(corrected), Some(110.0), "from the intended start");
        let ok_min = observe(&source, "http_req_duration{expected_response:true}", "min<1");
        assert_eq!(rounded(ok_min), Some(10.0), "the instant 503 is kept out");
        assert_eq!(rounded(observe(&source, "http_req_duration", "min<1")), Some(1.0), "but counts without the filter");
        assert_eq!(observe(&source, "http_req_duration{status:503}", "count<1"), Some(1.0));
        assert_eq!(observe(&source, "http_req_failed", "rate<1"), Some(1.0 / 3.0));
        assert_eq!(observe(&source, "http_reqs", "rate<1"), Some(1.5), "per second");
        assert_eq!(observe(&source, "iterations", "count<1"), Some(4.0));
        assert_eq!(observe(&source, "dropped_iterations", "count<1"), Some(1.0));
        assert_eq!(observe(&source, "dropped_iterations", "rate<1"), Some(0.5), "per second, as in k6");
        assert_eq!(observe(&source, "dropped_ratio", "rate<1"), Some(0.2), "1 of 5 arrivals");
        assert_eq!(observe(&source, "dropped_ratio{scenario:events}", "rate<1"), Some(0.0));
        assert_eq!(observe(&source, "checks{operation:GET /v1/challenges}", "rate<1"), Some(2.0 / 3.0));
        assert_eq!(observe(&source, "grpc_req_duration{scenario:api}", "max<1"), None, "no gRPC in api");
    }
}
