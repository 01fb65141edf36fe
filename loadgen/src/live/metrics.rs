//! loadgen's own metrics in Prometheus' text exposition format (`GET /metrics` on the dashboard's
//! port): requests, errors by kind, scheduled and dropped arrivals, calls in flight, and latency
//! histograms per operation, named as Prometheus asks (`gauntlet_` prefix, base units, `_total`
//! on counters). Counters run over the whole process (a sweep's levels add up), so Prometheus'
//! `rate()` gives each level's rate.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::engine::recorder::{IntervalSnapshot, new_histogram};

/// The latency histograms' bucket bounds, seconds.
pub const BUCKETS_S: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every metric loadgen exports, with its type and help, in the order they are written.
pub const METRICS: [(&str, &str, &str); 9] = [
    ("gauntlet_requests_total", "counter", "Requests and calls completed, by operation and outcome (ok, error)."),
    ("gauntlet_errors_total", "counter", "Failed requests and calls, by operation and kind."),
    ("gauntlet_scheduled_arrivals_total", "counter", "Arrivals the schedules released, by operation."),
    ("gauntlet_dropped_arrivals_total", "counter", "Arrivals not sent (late beyond the limit, or no free user)."),
    ("gauntlet_in_flight", "gauge", "Requests and calls in flight at the last second's end."),
    ("gauntlet_target_rate", "gauge", "The schedule's target arrival rate this second, per second."),
    (
        "gauntlet_request_duration_seconds",
        "histogram",
        "Latency from each request's intended send time (coordinated omission corrected), expected responses.",
    ),
    (
        "gauntlet_service_time_seconds",
        "histogram",
        "Time from each request's actual send to its answer, expected responses.",
    ),
    ("gauntlet_load_elapsed_seconds", "gauge", "Seconds since the current run's load began."),
];

#[derive(Debug)]
struct Operation {
    ok: u64,
    errors: BTreeMap<String, u64>,
    scheduled: u64,
    dropped: u64,
    in_flight: i64,
    target: Option<f64>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
}

impl Default for Operation {
    fn default() -> Self {
        Self {
            ok: 0,
            errors: BTreeMap::new(),
            scheduled: 0,
            dropped: 0,
            in_flight: 0,
            target: None,
            latency: new_histogram(),
            service: new_histogram(),
        }
    }
}

/// The cumulative counts behind `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    operations: BTreeMap<String, Operation>,
    elapsed_s: u64,
}

impl Counters {
    /// Adds one second of the engine's intervals.
    pub fn add(&mut self, snapshots: &[IntervalSnapshot], elapsed_s: u64) {
        self.elapsed_s = elapsed_s;
        for s in snapshots {
            let op = self.operations.entry(s.operation.name().to_owned()).or_default();
            let errors = s.errors();
            op.ok += s.requests() - errors;
            for (kind, n) in &s.errors_by_kind {
                *op.errors.entry(kind.clone()).or_default() += n;
            }
            let unnamed = errors.saturating_sub(s.errors_by_kind.values().sum());
            if unnamed > 0 {
                *op.errors.entry("other".to_owned()).or_default() += unnamed;
            }
            op.scheduled += s.scheduled();
            op.dropped += s.dropped();
            op.in_flight = s.in_flight;
            let _ = op.latency.add(s.latency());
            let _ = op.service.add(s.service());
        }
    }

    /// Sets the operations' target rates of the current second (None: no target now).
    pub fn set_targets(&mut self, targets: &BTreeMap<String, f64>) {
        for (name, op) in &mut self.operations {
            op.target = targets.get(name).copied();
        }
        for (name, rate) in targets {
            self.operations.entry(name.clone()).or_default().target = Some(*rate);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help) in METRICS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (operation, op) in &self.operations {
                let label = format!("operation=\"{}\"", escape(operation));
                match name {
                    "gauntlet_requests_total" => {
                        let errors: u64 = op.errors.values().sum();
                        let _ = writeln!(out, "{name}{{{label},outcome=\"ok\"}} {}", op.ok);
                        let _ = writeln!(out, "{name}{{{label},outcome=\"error\"}} {errors}");
                    }
                    "gauntlet_errors_total" => {
                        for (kind, n) in &op.errors {
                            let _ = writeln!(out, "{name}{{{label},kind=\"{}\"}} {n}", escape(kind));
                        }
                    }
                    "gauntlet_scheduled_arrivals_total" => {
                        let _ = writeln!(out, "{name}{{{label}}} {}", op.scheduled);
                    }
                    "gauntlet_dropped_arrivals_total" => {
                        let _ = writeln!(out, "{name}{{{label}}} {}", op.dropped);
                    }
                    "gauntlet_in_flight" => {
                        let _ = writeln!(out, "{name}{{{label}}} {}", op.in_flight);
                    }
                    "gauntlet_target_rate" => {
                        if let Some(rate) = op.target {
                            let _ = writeln!(out, "{name}{{{label}}} {rate}");
                        }
                    }
                    "gauntlet_request_duration_seconds" => histogram(&mut out, name, &label, &op.latency),
                    "gauntlet_service_time_seconds" => histogram(&mut out, name, &label, &op.service),
                    _ => {}
                }
            }
            if name == "gauntlet_load_elapsed_seconds" {
                let _ = writeln!(out, "{name} {}", self.elapsed_s);
            }
        }
        out
    }
}

/// A histogram's cumulative buckets from an HDR histogram of µs (counts exact at HDR's
/// precision; the sum from its mean).
fn histogram(out: &mut String, name: &str, label: &str, hdr: &Histogram<u64>) {
    for bound in BUCKETS_S {
        let count = if hdr.is_empty() { 0 } else { hdr.count_between(0, (bound * 1e6) as u64) };
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {}", hdr.len());
    let _ = writeln!(out, "{name}_sum{{{label}}} {}", hdr.mean() * hdr.len() as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{label}}} {}", hdr.len());
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::engine::recorder::{Outcome, Recorder};
    use crate::target::operations::Operation as Op;

    /// Parses `name{labels} value` lines into (series, value).
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn counts_and_buckets_add_up_over_seconds() {
        let recorder = Recorder::new();
        let mut counters = Counters::default();
        let t0 = Instant::now();
        for second in 1..=2 {
            for ms in [1u64, 20, 300] {
                recorder.record(Op::Stat, 0, t0, t0, t0 + Duration::from_millis(ms), Outcome::ok(0));
            }
            recorder.record(Op::Stat, 0, t0, t0, t0 + Duration::from_millis(2), Outcome::failed(14, "UNAVAILABLE"));
            counters.add(&recorder.take_intervals(), second);
        }
        let text = counters.render();
        let s = samples(&text);
        let op = format!("operation=\"{}\"", Op::Stat.name());
        assert_eq!(s[&format!("gauntlet_requests_total{{{op},outcome=\"ok\"}}")], 6.0, "{text}");
        assert_eq!(s[&format!("gauntlet_requests_total{{{op},outcome=\"error\"}}")], 2.0);
        assert_eq!(s[&format!("gauntlet_errors_total{{{op},kind=\"UNAVAILABLE\"}}")], 2.0);
        let bucket = |le: &str| s[&format!("gauntlet_request_duration_seconds_bucket{{{op},le=\"{le}\"}}")];
        assert_eq!(bucket("0.001"), 2.0, "le is inclusive: the 1 ms calls of both seconds");
        assert_eq!(bucket("0.0025"), 2.0, "the failed 2 ms calls are not in the latency histogram");
        assert_eq!(bucket("0.025"), 4.0);
        assert_eq!(bucket("0.5"), 6.0);
        assert_eq!(bucket("+Inf"), 6.0);
        assert_eq!(s[&format!("gauntlet_request_duration_seconds_count{{{op}}}")], 6.0);
        let sum = s[&format!("gauntlet_request_duration_seconds_sum{{{op}}}")];
        assert!((sum - 2.0 * 0.321).abs() < 0.01, "sum {sum}");
        assert_eq!(s["gauntlet_load_elapsed_seconds"], 2.0);
        for (metric, kind, _) in METRICS {
            assert!(text.contains(&format!("# TYPE {metric} {kind}\n")), "{metric}");
            assert!(metric.starts_with("gauntlet_"));
            assert_eq!(
                metric.ends_with("_total"),
                kind == "counter",
                "{metric}: counters and only counters end in _total"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
